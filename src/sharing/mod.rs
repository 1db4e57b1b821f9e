//! Shares: a two-way (read-write) or one-way (read-only) selective replication with a peer,
//! managed as one object. Underneath are the documents a CouchDB user would write by hand
//! (the sharing seed): replication documents in `_replicator` with source and target swapped,
//! and a `db_sharing-<local uuid>--<remote uuid>` marker document included in the selector.
//!
//! A share is stored in its replication documents (`share-<id>-push`, `share-<id>-pull`), in a
//! `settee_share` member the replicator ignores, so there is no second place to keep in sync.
//!
//! Stopping with purge removes what arrived only through the share with `_purge` (never a
//! deletion, so nothing is deleted on the peer if replication resumes) and forgets this side's
//! checkpoints, so re-creating the share brings those documents back.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::mango::Selector;
use crate::replicator::id::replication_id;
use crate::replicator::peer::Peer;
use crate::replicator::{Env, Spec};
use crate::scheduler::docs::REPLICATOR_DB;
use crate::scheduler::{status, Scheduler};
use crate::store::{ReadOpts, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

type Res<T> = Result<T, ShareError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    ReadOnly,
    ReadWrite,
}

impl Mode {
    fn parse(v: Option<&Value>) -> Res<Mode> {
        match v.and_then(Value::as_str) {
            None | Some("read-only") => Ok(Mode::ReadOnly),
            Some("read-write") => Ok(Mode::ReadWrite),
            Some(m) => Err(ShareError::BadRequest(format!(
                "`mode` must be \"read-only\" or \"read-write\", not {m:?}"
            ))),
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Mode::ReadOnly => "read-only",
            Mode::ReadWrite => "read-write",
        }
    }
}

/// What `DELETE /_sharing/{id}` purges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purge {
    No,
    /// Documents that exist only because of the share (never edited here).
    Received,
    /// Every document matching the share's selector.
    All,
}

pub struct Sharing {
    store: Arc<Store>,
    scheduler: Arc<Scheduler>,
    env: Env,
}

fn push_id(id: &str) -> String {
    format!("share-{id}-push")
}
fn pull_id(id: &str) -> String {
    format!("share-{id}-pull")
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

/// An application's configuration UUID as the seed's marker id holds it.
fn valid_uuid(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !u.contains("--")
}

impl Sharing {
    pub fn new(store: Arc<Store>, scheduler: Arc<Scheduler>) -> Sharing {
        let env = scheduler.env.clone();
        Sharing {
            store,
            scheduler,
            env,
        }
    }

    /// The share documents currently in `_replicator`, by direction.
    fn share_docs(&self, id: &str) -> Res<Vec<Value>> {
        let db = self.store.ensure_db(REPLICATOR_DB)?;
        let mut out = Vec::new();
        for doc_id in [push_id(id), pull_id(id)] {
            if let Ok(d) = db.get(&doc_id, None, &ReadOpts::default()) {
                if d.get("settee_share").is_some() {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    fn share_ids(&self) -> Res<Vec<String>> {
        let db = self.store.ensure_db(REPLICATOR_DB)?;
        let mut ids = Vec::new();
        for item in db.docs_from("share-", false) {
            let (doc_id, rec) = item?;
            if !doc_id.starts_with("share-") {
                break;
            }
            if rec.is_deleted() {
                continue;
            }
            if let Some(id) = doc_id
                .strip_prefix("share-")
                .and_then(|r| r.strip_suffix("-push").or_else(|| r.strip_suffix("-pull")))
            {
                if ids.last() != Some(&id.to_owned()) {
                    ids.push(id.to_owned());
                }
            }
        }
        ids.dedup();
        Ok(ids)
    }

    /// `POST /_sharing`: validates everything first, then writes the marker and the
    /// replication documents (the latter in one atomic batch), so a refused share leaves
    /// nothing behind.
    pub async fn create(&self, body: &Value) -> Res<Value> {
        let o = body
            .as_object()
            .ok_or_else(|| ShareError::BadRequest("the share must be a JSON object".into()))?;
        let id = o.get("id").and_then(Value::as_str).ok_or_else(|| {
            ShareError::BadRequest(
                "`id` is missing: name the share (lowercase letters, digits, - and _)".into(),
            )
        })?;
        if !valid_id(id) {
            return Err(ShareError::BadRequest(format!(
                "share id {id:?} must be 1-64 lowercase letters, digits, - or _"
            )));
        }
        if !self.share_docs(id)?.is_empty() {
            return Err(ShareError::Conflict(format!(
                "a share named {id:?} already exists"
            )));
        }
        let mode = Mode::parse(o.get("mode"))?;
        let plan = self.plan(id, o, mode).await?;
        self.apply(plan.clone(), Vec::new()).await?;
        Ok(
            json!({"ok": true, "id": id, "mode": mode.as_str(), "replications": plan.docs.iter().map(|d| d["_id"].clone()).collect::<Vec<_>>(), "marker": plan.marker}),
        )
    }

    /// Checks a share definition against both databases and builds its documents.
    async fn plan(&self, id: &str, o: &Map<String, Value>, mode: Mode) -> Res<Plan> {
        let local = o.get("local").and_then(Value::as_str).ok_or_else(|| {
            ShareError::BadRequest("`local` must name a database of this server".into())
        })?;
        self.store.db(local).map_err(|_| {
            ShareError::NotFound(format!("local database {local:?} does not exist"))
        })?;
        let remote = o.get("remote").filter(|r| !r.is_null()).ok_or_else(|| {
            ShareError::BadRequest(
                "`remote` is missing: the peer database's URL (or {\"url\", \"auth\"})".into(),
            )
        })?;
        let selector = match o.get("selector") {
            None | Some(Value::Null) => {
                return Err(ShareError::BadRequest(
                    "`selector` is missing: a share without one would copy (and for read-write, overwrite) the whole database; give a Mango selector of what to share".into(),
                ))
            }
            Some(s) if !s.is_object() => return Err(ShareError::BadRequest("`selector` must be a JSON object (a Mango selector)".into())),
            Some(s) => s.clone(),
        };
        let parsed = Selector::parse(&selector)
            .map_err(|e| ShareError::BadRequest(format!("`selector` is invalid: {e}")))?;
        let all = match o.get("all") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(ShareError::BadRequest(format!(
                    "`all` must be true or false, not {v}"
                )))
            }
        };
        // A selector that a document with nothing but an `_id` satisfies does not look at
        // content at all (`{}`, `{"_id": {"$gt": null}}`): it would share every document,
        // user records with their password hashes included. Only an explicit `all` does that.
        if !all && parsed.matches(&json!({"_id": "any"})) {
            return Err(ShareError::BadRequest(
                "`selector` matches every document (even one with nothing but an `_id`): a share of the whole database needs \"all\": true (settee share create --all); otherwise name what to share, e.g. {\"type\": {\"$in\": [\"collection\", \"item\"]}}".into(),
            ));
        }
        let probe = Spec::parse(&json!({"source": remote, "target": local}))
            .map_err(|e| ShareError::BadRequest(e.to_string()))?;
        if !matches!(probe.source, crate::replicator::Endpoint::Remote(_)) {
            return Err(ShareError::BadRequest(
                "`remote` must be an http(s) URL of the peer's database".into(),
            ));
        }
        let (peer, _) = Peer::open(&probe.source, &self.env, &probe, false)
            .await
            .map_err(|e| {
                ShareError::Unreachable(format!("the remote database cannot be used: {e}"))
            })?;
        // The seed's applications look for their own configuration UUIDs in the marker's id:
        // a share may name them; otherwise the servers' uuids are used.
        let uuid = |k: &str| -> Res<Option<String>> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(u)) if valid_uuid(u) => Ok(Some(u.clone())),
                Some(v) => Err(ShareError::BadRequest(format!(
                    "`{k}` must be 1-64 letters, digits, - or _ (an application's configuration UUID), not {v}"
                ))),
            }
        };
        let (given_local, given_remote) = (uuid("local_uuid")?, uuid("remote_uuid")?);
        let remote_uuid = match given_remote {
            Some(u) => u,
            None => peer.server_uuid().await.unwrap_or_else(|| "unknown".into()),
        };
        let local_uuid = given_local.unwrap_or_else(|| self.store.uuid().to_owned());
        let fields = o.get("fields").filter(|f| !f.is_null()).cloned();
        if fields.is_some() && mode == Mode::ReadWrite {
            return Err(ShareError::BadRequest(
                "a read-write share cannot have `fields`: each side would receive projections of its own documents back as conflicts. Use a read-only share (or one replication document per direction on different field sets); see the README (\"Field lists in both directions\")".into(),
            ));
        }
        let unmatched = o.get("unmatched").filter(|u| !u.is_null()).cloned();
        let marker =
            (mode == Mode::ReadWrite).then(|| format!("db_sharing-{local_uuid}--{remote_uuid}"));
        let combined = match &marker {
            Some(m) => json!({"$or": [{"_id": m}, selector]}),
            None => selector.clone(),
        };
        let meta = json!({
            "id": id,
            "mode": mode.as_str(),
            "local": local,
            "selector": selector,
            "all": all,
            "fields": fields,
            "unmatched": unmatched,
            "marker": marker,
            "local_uuid": local_uuid,
            "remote_uuid": remote_uuid,
        });
        let mut docs = vec![
            json!({"_id": push_id(id), "source": local, "target": remote, "continuous": true, "selector": combined, "settee_share": meta}),
        ];
        if mode == Mode::ReadWrite {
            docs.push(json!({"_id": pull_id(id), "source": remote, "target": local, "continuous": true, "selector": combined, "settee_share": meta}));
        }
        for d in &mut docs {
            if let Some(f) = &fields {
                d["fields"] = f.clone();
            }
            if let Some(u) = &unmatched {
                d["unmatched"] = u.clone();
            }
        }
        for d in &docs {
            Spec::parse(d).map_err(|e| ShareError::BadRequest(e.to_string()))?;
        }
        Ok(Plan {
            local: local.to_owned(),
            marker,
            docs,
        })
    }

    /// Writes the marker (if any) and the replication documents (with `old`, also removing
    /// the previous documents the new plan does not keep), on a blocking thread: store
    /// writes wait for a flush.
    async fn apply(&self, plan: Plan, old: Vec<Value>) -> Res<()> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || apply(&store, &plan, &old))
            .await
            .map_err(|e| ShareError::BadRequest(format!("writing the share: {e}")))?
    }
}

/// See [`Sharing::apply`].
fn apply(store: &Store, plan: &Plan, old: &[Value]) -> Res<()> {
    if let Some(m) = &plan.marker {
        let db = store.db(&plan.local)?;
        if db.get(m, None, &ReadOpts::default()).is_err() {
            let perms = json!({"_id": m, "data": {"permissions": ["read", "write"]}});
            let out = db.bulk_docs(vec![perms], true)?;
            if let Some(Err(e)) = out.into_iter().next().map(|o| o.result) {
                return Err(ShareError::BadRequest(format!(
                    "could not write the marker document {m}: {e}"
                )));
            }
        }
    }
    let rdb = store.ensure_db(REPLICATOR_DB)?;
    let mut writes = Vec::new();
    for d in &plan.docs {
        let mut d = d.clone();
        if let Some(prev) = old.iter().find(|o| o["_id"] == d["_id"]) {
            d["_rev"] = prev["_rev"].clone();
        }
        writes.push(d);
    }
    for prev in old {
        if !plan.docs.iter().any(|d| d["_id"] == prev["_id"]) {
            writes.push(json!({"_id": prev["_id"], "_rev": prev["_rev"], "_deleted": true}));
        }
    }
    let out = rdb.bulk_docs(writes, true)?;
    if let Some(e) = out.iter().find_map(|o| o.result.as_ref().err()) {
        return Err(ShareError::Conflict(format!(
            "could not write the replication documents: {e}"
        )));
    }
    Ok(())
}

impl Sharing {
    /// `PUT /_sharing/{id}`: a new selector and/or mode; both replication documents change
    /// together.
    pub async fn update(&self, id: &str, body: &Value) -> Res<Value> {
        let old = self.share_docs(id)?;
        let first = old
            .first()
            .ok_or_else(|| ShareError::NotFound(format!("no share named {id:?}")))?;
        let meta = &first["settee_share"];
        let o = body
            .as_object()
            .ok_or_else(|| ShareError::BadRequest("the change must be a JSON object".into()))?;
        let mut merged = Map::new();
        merged.insert("local".into(), meta["local"].clone());
        let remote = old
            .iter()
            .find(|d| d["_id"] == push_id(id))
            .map(|d| d["target"].clone())
            .unwrap_or(Value::Null);
        merged.insert("remote".into(), remote);
        merged.insert(
            "selector".into(),
            o.get("selector")
                .cloned()
                .unwrap_or_else(|| meta["selector"].clone()),
        );
        for k in ["all", "fields", "unmatched"] {
            merged.insert(
                k.into(),
                o.get(k).cloned().unwrap_or_else(|| meta[k].clone()),
            );
        }
        // The marker keeps its id.
        for k in ["local_uuid", "remote_uuid"] {
            merged.insert(k.into(), meta[k].clone());
        }
        let mode = Mode::parse(o.get("mode").or(meta.get("mode")))?;
        for k in o.keys() {
            if !["selector", "mode", "id", "all", "fields", "unmatched"].contains(&k.as_str()) {
                return Err(ShareError::BadRequest(format!(
                    "`{k}` cannot be changed; stop the share and create a new one"
                )));
            }
        }
        let plan = self.plan(id, &merged, mode).await?;
        self.apply(plan, old).await?;
        Ok(json!({"ok": true, "id": id, "mode": mode.as_str()}))
    }

    /// Deletes the marker here (a tombstone the running push carries over) and waits up to
    /// 20 s until the peer holds no live revision of it. Returns whether it saw that.
    async fn delete_marker(
        &self,
        db: Arc<crate::store::Database>,
        marker: &str,
        remote: &Value,
    ) -> Res<bool> {
        let m = marker.to_owned();
        let deleted = tokio::task::spawn_blocking(move || -> Res<bool> {
            let Ok(cur) = db.get(&m, None, &ReadOpts::default()) else {
                return Ok(false);
            };
            let tomb = json!({"_id": m, "_rev": cur["_rev"], "_deleted": true});
            Ok(db
                .bulk_docs(vec![tomb], true)?
                .into_iter()
                .all(|o| o.result.is_ok()))
        })
        .await
        .map_err(|e| ShareError::BadRequest(format!("deleting the marker: {e}")))??;
        if !deleted {
            return Ok(false);
        }
        let Ok(probe) = Spec::parse(&json!({"source": remote, "target": "_replicator"})) else {
            return Ok(false);
        };
        let Ok((peer, _)) = Peer::open(&probe.source, &self.env, &probe, false).await else {
            return Ok(false);
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if let Ok(held) = peer.leaves(vec![marker.to_owned()]).await {
                if held.values().flatten().all(|l| l.deleted) {
                    return Ok(true);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(false)
    }

    /// `GET /_sharing/{id}/pending`: what each direction would send now (a preview of each
    /// replication from its own checkpoint; nothing is written).
    pub async fn pending(&self, id: &str, limit: usize) -> Res<Value> {
        let docs = self.share_docs(id)?;
        if docs.is_empty() {
            return Err(ShareError::NotFound(format!("no share named {id:?}")));
        }
        let mut out = Map::new();
        for d in docs {
            let direction = if d["_id"] == push_id(id) {
                "push"
            } else {
                "pull"
            };
            let mut one_shot = crate::scheduler::docs::definition(&d);
            one_shot["continuous"] = json!(false);
            let spec = Spec::parse(&one_shot).map_err(|e| ShareError::BadRequest(e.to_string()))?;
            let p = crate::replicator::preview::preview(&spec, &self.env, None, limit)
                .await
                .map_err(|e| ShareError::Unreachable(e.to_string()))?;
            out.insert(direction.into(), p);
        }
        Ok(Value::Object(out))
    }

    /// `GET /_sharing` / `GET /_sharing/{id}`.
    pub fn describe(&self, id: &str) -> Res<Value> {
        let docs = self.share_docs(id)?;
        let first = docs
            .first()
            .ok_or_else(|| ShareError::NotFound(format!("no share named {id:?}")))?;
        let meta = &first["settee_share"];
        let directions: Vec<Value> = docs
            .iter()
            .map(|d| {
                let doc_id = d["_id"].as_str().unwrap_or_default();
                let st = self
                    .scheduler
                    .with_state(|st| st.docs.get(doc_id).map(|e| status::doc_json(st, e)));
                let st = st.unwrap_or_else(|| json!({"state": "initializing", "info": null}));
                let redact = |k: &str| {
                    crate::replicator::Endpoint::parse(&d[k], k)
                        .map(|e| e.redacted())
                        .ok()
                };
                json!({
                    "direction": if doc_id.ends_with("-push") { "push" } else { "pull" },
                    "doc_id": doc_id,
                    "source": redact("source"),
                    "target": redact("target"),
                    "state": st["state"],
                    "docs_written": st["info"].get("docs_written").cloned().unwrap_or(json!(0)),
                    "error": st["info"].get("error").cloned().unwrap_or(Value::Null),
                })
            })
            .collect();
        let last_error = directions
            .iter()
            .find_map(|d| d["error"].as_str().map(str::to_owned));
        let (shared, conflicts) = self.scan_local(meta)?;
        Ok(json!({
            "id": id,
            "mode": meta["mode"],
            "local": meta["local"],
            "remote": directions.iter().find(|d| d["direction"] == "push").map(|d| d["target"].clone()),
            "selector": meta["selector"],
            "marker": meta["marker"],
            "local_uuid": meta["local_uuid"],
            "remote_uuid": meta["remote_uuid"],
            "directions": directions,
            "docs_shared": shared,
            "last_error": last_error,
            "conflicts": conflicts,
        }))
    }

    pub fn list(&self) -> Res<Vec<Value>> {
        self.share_ids()?
            .iter()
            .map(|id| self.describe(id))
            .collect()
    }

    /// Local documents in the share (live ones) and those with conflicts.
    fn scan_local(&self, meta: &Value) -> Res<(u64, Vec<String>)> {
        let Some(local) = meta["local"].as_str() else {
            return Ok((0, Vec::new()));
        };
        let Ok(db) = self.store.db(local) else {
            return Ok((0, Vec::new()));
        };
        let sel = Selector::parse(&meta["selector"])
            .map_err(|e| ShareError::BadRequest(e.to_string()))?;
        let mut shared = 0;
        let mut conflicts = Vec::new();
        for item in db.docs_from("", false) {
            let (id, rec) = item?;
            if rec.is_deleted() || id.starts_with("_design/") {
                continue;
            }
            let Some(w) = rec.winner() else { continue };
            let doc = db.doc_json(&id, &rec, w, &ReadOpts::default())?;
            if !sel.matches(&doc) {
                continue;
            }
            shared += 1;
            let live_leaves = rec.live_leaves().len();
            if live_leaves > 1 && conflicts.len() < 1000 {
                conflicts.push(id);
            }
        }
        Ok((shared, conflicts))
    }

    /// `DELETE /_sharing/{id}`: removes the replication documents and the marker; with
    /// `purge`, purges what arrived through the share (see [`Purge`]); with `dry_run`, only
    /// reports what it would do.
    pub async fn stop(&self, id: &str, purge: Purge, dry_run: bool) -> Res<Value> {
        let docs = self.share_docs(id)?;
        let first = docs
            .first()
            .ok_or_else(|| ShareError::NotFound(format!("no share named {id:?}")))?
            .clone();
        let meta = &first["settee_share"];
        let local = meta["local"].as_str().unwrap_or_default().to_owned();
        let db = self.store.db(&local).ok();
        let marker = meta["marker"].as_str().map(str::to_owned);
        // What to purge, decided before anything changes.
        let mut purge_list: Vec<(String, Vec<crate::store::Rev>)> = Vec::new();
        let mut kept = Vec::new();
        if let (Some(db), true) = (&db, purge != Purge::No) {
            let sel = Selector::parse(&meta["selector"])
                .map_err(|e| ShareError::BadRequest(e.to_string()))?;
            for item in db.docs_from("", false) {
                let (doc_id, rec) = item?;
                if Some(&doc_id) == marker.as_ref() {
                    continue;
                }
                let leaves = rec.leaves();
                let mut matches = false;
                for &leaf in &leaves {
                    if sel.matches(&db.doc_json(&doc_id, &rec, leaf, &ReadOpts::default())?) {
                        matches = true;
                        break;
                    }
                }
                if !matches {
                    continue;
                }
                if purge == Purge::Received && rec.edited_locally() {
                    kept.push(json!({"id": doc_id, "reason": "edited or created on this server; use purge=all to purge it too"}));
                    continue;
                }
                purge_list.push((doc_id, leaves.iter().map(|l| l.rev().clone()).collect()));
            }
        }
        let stopped: Vec<Value> = docs.iter().map(|d| d["_id"].clone()).collect();
        let purged: Vec<&String> = purge_list.iter().map(|(id, _)| id).collect();
        let mut report = json!({"ok": true, "id": id, "dry_run": dry_run, "stopped": stopped, "marker": marker, "purged": purged, "kept": kept});
        if dry_run {
            return Ok(report);
        }
        // 1. The marker is deleted while the push still runs, and the stop waits (a while)
        //    for its tombstone to reach the peer: the peer's application then stops showing
        //    the data as shared. The received documents are still purged below, never deleted.
        if let (Some(db), Some(m)) = (&db, &marker) {
            let push = docs.iter().find(|d| d["_id"] == push_id(id));
            let reached = match push {
                Some(push) => self.delete_marker(db.clone(), m, &push["target"]).await?,
                None => false,
            };
            report["marker_deleted_on_peer"] = json!(reached);
        }
        // 2. Stop both directions and wait until nothing is still writing.
        let rdb = self.store.ensure_db(REPLICATOR_DB)?;
        let dels: Vec<Value> = docs
            .iter()
            .map(|d| json!({"_id": d["_id"], "_rev": d["_rev"], "_deleted": true}))
            .collect();
        tokio::task::spawn_blocking(move || rdb.bulk_docs(dels, true))
            .await
            .map_err(|e| ShareError::BadRequest(format!("stopping the share: {e}")))??;
        let doc_ids: Vec<String> = docs
            .iter()
            .filter_map(|d| d["_id"].as_str().map(str::to_owned))
            .collect();
        self.scheduler
            .wait_stopped(&doc_ids, Duration::from_secs(30))
            .await;
        if let Some(db) = db {
            // 3. The received documents go without a tombstone, so nothing flows back, and
            //    this side's checkpoints are forgotten, so a new share re-checks every one.
            let checkpoints: Vec<String> = if purge == Purge::No {
                Vec::new()
            } else {
                docs.iter()
                    .filter_map(|d| Spec::parse(d).ok())
                    .map(|spec| {
                        format!(
                            "_local/{}",
                            replication_id(&spec, &self.env.server_uuid).base
                        )
                    })
                    .collect()
            };
            tokio::task::spawn_blocking(move || -> Res<()> {
                if !purge_list.is_empty() {
                    db.purge(purge_list)?;
                }
                for lid in checkpoints {
                    if let Ok(Some(cur)) = db.get_local(&lid) {
                        let del = json!({"_id": lid, "_rev": cur["_rev"], "_deleted": true});
                        let _ = db.bulk_docs(vec![del], true);
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| ShareError::BadRequest(format!("purging: {e}")))??;
        }
        Ok(report)
    }
}

#[derive(Clone)]
struct Plan {
    local: String,
    marker: Option<String>,
    docs: Vec<Value>,
}
