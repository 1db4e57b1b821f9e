//! One CouchDB database inside a sled tree: writes (interactive and replicated), reads,
//! the by-sequence changes index, `_revs_diff`, `_local` documents, purge and metadata.
//!
//! Invariants:
//! - every sled batch leaves the database consistent: a document's record (with its bodies),
//!   its by-seq entry, the attachment data it refers to and the counters change together or
//!   not at all. A write request is one batch, except a big interactive one, which the writer
//!   hands over in chunks to an applier thread (see [`Applier`]); none of it is acknowledged
//!   before all of it is on disk, as with CouchDB, whose `_bulk_docs` is not atomic either;
//! - writers are serialized by `meta`'s mutex; readers never take it;
//! - a body is stored, inside the document record, for every leaf revision and no other;
//! - the by-seq index holds exactly one entry per document, at its record's `seq`;
//! - a write is acknowledged only after the group commit put it on disk.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::codec::{self, DocRecord};
use super::doc::{AttInput, DocUpdate};
use super::durability::GroupCommit;
use super::error::{DocError, Result, StoreError};
use super::rev::Rev;
use super::rev_tree::{Merge, RevTree};

pub const DEFAULT_REVS_LIMIT: u64 = 1000;
pub const DEFAULT_PURGED_INFOS_LIMIT: u64 = 1000;

/// Counters and limits, persisted under `m meta` in every write batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    update_seq: u64,
    purge_seq: u64,
    doc_count: u64,
    del_count: u64,
    revs_limit: u64,
    purged_infos_limit: u64,
    /// Bytes of leaf bodies and attachment data: CouchDB's `sizes.external`.
    external: u64,
}

impl Default for Meta {
    fn default() -> Meta {
        Meta {
            update_seq: 0,
            purge_seq: 0,
            doc_count: 0,
            del_count: 0,
            revs_limit: DEFAULT_REVS_LIMIT,
            purged_infos_limit: DEFAULT_PURGED_INFOS_LIMIT,
            external: 0,
        }
    }
}

/// Up to this many, [`Database::pending`] counts exactly.
pub const PENDING_EXACT: usize = 1000;

/// `GET /db` in store terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbInfo {
    pub name: String,
    pub update_seq: u64,
    pub purge_seq: u64,
    pub doc_count: u64,
    pub doc_del_count: u64,
    pub external_size: u64,
    pub instance_start_time: String,
}

/// The answer for one document of a write batch.
#[derive(Clone, Debug, PartialEq)]
pub struct DocOutcome {
    pub id: String,
    /// The new revision, or for a replicated write the revision it carried.
    pub result: std::result::Result<String, DocError>,
}

/// Which attachment bodies a read includes (the rest are stubs).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum AttMode {
    #[default]
    Stubs,
    All,
    /// Data only for attachments newer than the newest of these revisions the doc descends from.
    Since(Vec<Rev>),
}

#[derive(Clone, Debug, Default)]
pub struct ReadOpts {
    pub revs: bool,
    pub revs_info: bool,
    pub conflicts: bool,
    pub deleted_conflicts: bool,
    pub local_seq: bool,
    pub attachments: AttMode,
}

/// How a read turns one leaf revision into its answer: a JSON value or JSON bytes.
type Render<T> = fn(&Database, &str, &DocRecord, usize, &ReadOpts) -> Result<T>;

/// A sled range, forwards or reversed.
type KvIter = Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>>;

/// A document id with some of its revisions (purge requests and answers).
pub type IdRevs = (String, Vec<Rev>);

/// One row of `_revs_diff`.
#[derive(Clone, Debug, PartialEq)]
pub struct RevsDiff {
    pub id: String,
    pub missing: Vec<Rev>,
    pub possible_ancestors: Vec<Rev>,
}

/// One entry of the changes feed: a document at its latest sequence.
#[derive(Clone, Debug)]
pub struct Change {
    pub seq: u64,
    pub id: String,
    pub record: DocRecord,
}

/// Attachment metadata as stored in a body's `_attachments` (always in stub form).
#[derive(Clone, Debug)]
pub struct AttMeta {
    pub content_type: String,
    pub digest: String,
    pub length: u64,
    pub revpos: u64,
}

pub struct Database {
    name: String,
    tree: sled::Tree,
    instance_start_time: String,
    meta: Mutex<Meta>,
    commit: Arc<GroupCommit>,
    updates: watch::Sender<u64>,
    dropped: AtomicBool,
    /// Whether the log already says this database holds a `validate_doc_update` settee
    /// does not run (once per database and process).
    vdu_warned: AtomicBool,
}

impl Database {
    pub(super) fn open(
        name: String,
        tree: sled::Tree,
        instance_start_time: String,
        commit: Arc<GroupCommit>,
    ) -> Result<Database> {
        let meta: Meta = match tree.get(codec::meta_key("meta"))? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("database meta: {e}")))?,
            None => Meta::default(),
        };
        let (updates, _) = watch::channel(meta.update_seq);
        Ok(Database {
            name,
            tree,
            instance_start_time,
            meta: Mutex::new(meta),
            commit,
            updates,
            dropped: AtomicBool::new(false),
            vdu_warned: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn instance_start_time(&self) -> &str {
        &self.instance_start_time
    }

    /// Marks the database deleted and wakes every subscriber, so open feeds and longpolls
    /// notice at once (they find it dropped) instead of waiting for a change that never comes.
    pub(super) fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::SeqCst);
        self.updates.send_modify(|_| {});
    }

    /// `true` once the database was deleted: this handle answers nothing any more, and one
    /// created later under the same name is another database.
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Meta>> {
        if self.dropped.load(Ordering::SeqCst) {
            return Err(StoreError::DbNotFound);
        }
        Ok(self.meta.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Wakes up on every committed change of `update_seq`.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.updates.subscribe()
    }

    pub fn update_seq(&self) -> u64 {
        *self.updates.borrow()
    }

    pub fn info(&self) -> Result<DbInfo> {
        let m = self.lock()?.clone();
        Ok(DbInfo {
            name: self.name.clone(),
            update_seq: m.update_seq,
            purge_seq: m.purge_seq,
            doc_count: m.doc_count,
            doc_del_count: m.del_count,
            external_size: m.external,
            instance_start_time: self.instance_start_time.clone(),
        })
    }

    // ---------------------------------------------------------------- writes

    /// `_bulk_docs`: parses and writes a batch atomically, one outcome per input, in order.
    pub fn bulk_docs(&self, docs: Vec<Value>, new_edits: bool) -> Result<Vec<DocOutcome>> {
        self.warn_of_validation(&docs);
        let parsed = docs
            .into_iter()
            .map(|d| {
                let hint = d.get("_id").and_then(Value::as_str).map(str::to_owned);
                let default_id = new_edits.then(new_uuid);
                (hint, DocUpdate::from_json(d, default_id))
            })
            .collect();
        self.write(parsed, new_edits)
    }

    /// Design documents with `validate_doc_update` are stored and replicated as they are
    /// (design documents must interoperate) but never run: the operator is told once.
    fn warn_of_validation(&self, docs: &[Value]) {
        if self.vdu_warned.load(Ordering::Relaxed) {
            return;
        }
        let found = docs.iter().find(|d| {
            d.get("validate_doc_update").is_some()
                && d.get("_id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.starts_with("_design/"))
        });
        if let Some(d) = found {
            if !self.vdu_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    db = %self.name,
                    ddoc = %d["_id"].as_str().unwrap_or_default(),
                    "this design document has a validate_doc_update function: settee stores and replicates it but does not run it, so writes it would refuse are accepted"
                );
            }
        }
    }

    /// Writes already-parsed documents (the multipart path parses attachments itself).
    /// Each entry carries the id to report if parsing failed.
    pub fn write(
        &self,
        docs: Vec<(Option<String>, std::result::Result<DocUpdate, DocError>)>,
        new_edits: bool,
    ) -> Result<Vec<DocOutcome>> {
        let mut meta = self.lock()?;
        let mut w = Writer::new(self, meta.clone(), docs.len());
        let outcomes = if new_edits && docs.len() >= PREPARE_MIN {
            // Revision ids and body bytes on a second thread, while this one looks documents
            // up and grows their trees: the two halves of a big interactive write overlap.
            let mut docs = docs;
            let jobs: Vec<_> = docs.iter_mut().map(|(_, d)| Prepared::job(d)).collect();
            // Borrowed by the helper, so that if it cannot start the jobs are still here.
            let jobs = Mutex::new(jobs);
            let take = || std::mem::take(&mut *jobs.lock().unwrap_or_else(|e| e.into_inner()));
            std::thread::scope(|s| {
                // In groups: a channel message per document cost more in wake-ups than the
                // hashing it carried.
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Result<Option<Prepared>>>>(8);
                let helper = std::thread::Builder::new()
                    .name("settee-hash".into())
                    .spawn_scoped(s, move || {
                        let mut group = Vec::with_capacity(PREPARE_GROUP);
                        for job in take() {
                            group.push(job.map(Prepared::compute).transpose());
                            if group.len() == PREPARE_GROUP {
                                let full = std::mem::replace(
                                    &mut group,
                                    Vec::with_capacity(PREPARE_GROUP),
                                );
                                if tx.send(full).is_err() {
                                    return;
                                }
                            }
                        }
                        if !group.is_empty() {
                            let _ = tx.send(group);
                        }
                    });
                if helper.is_err() {
                    let inline = take()
                        .into_iter()
                        .map(|j| j.map(Prepared::compute).transpose());
                    let out = w.apply(docs, new_edits, inline)?;
                    return Ok((out, w.finish()?));
                }
                let mut group = Vec::new().into_iter();
                let prepared = std::iter::from_fn(move || loop {
                    if let Some(p) = group.next() {
                        return Some(p);
                    }
                    match rx.recv() {
                        Ok(g) => group = g.into_iter(),
                        Err(_) => {
                            return Some(Err(StoreError::Corrupt(
                                "revision hashing thread stopped".into(),
                            )))
                        }
                    }
                });
                // sled applies one batch on one thread at a time; while it applies a chunk,
                // this thread builds the next one and the helper hashes further ahead. Reads
                // wait for sled's batches (a lock inside sled), so every record this write
                // needs is read first, while the helper starts hashing.
                for (_, d) in &docs {
                    if let Ok(u) = d {
                        if !u.is_local() {
                            w.state(&u.id)?;
                        }
                    }
                }
                w.pipe = Applier::start(s, &self.tree);
                let res = w
                    .apply(docs, new_edits, prepared)
                    .and_then(|out| Ok((out, w.finish()?)));
                let applied = w.pipe.take().and_then(Applier::stop);
                if res.is_err() {
                    // Chunks sled applied before the failure are in the tree: later writes
                    // must number after them.
                    if let Some(m) = applied {
                        *meta = m;
                    }
                }
                res
            })
        } else {
            w.apply(docs, new_edits, std::iter::repeat_with(|| Ok(None)))
                .and_then(|out| Ok((out, w.finish()?)))
        };
        let (outcomes, changed) = outcomes?;
        *meta = w.meta;
        let seq = meta.update_seq;
        drop(meta);
        if changed {
            self.publish(seq)?;
        }
        Ok(outcomes)
    }

    /// Makes an applied batch durable, then wakes changes listeners: a feed never shows a
    /// write that could still be lost.
    fn publish(&self, seq: u64) -> Result<()> {
        self.commit.commit()?;
        self.updates.send_if_modified(|s| {
            let bumped = *s < seq;
            *s = (*s).max(seq);
            bumped
        });
        Ok(())
    }

    /// A single interactive write (`PUT /db/doc`), surfacing the per-doc error.
    pub fn put(&self, doc: DocUpdate) -> Result<String> {
        let out = self.write(vec![(Some(doc.id.clone()), Ok(doc))], true)?;
        out.into_iter()
            .next()
            .map(|o| o.result.map_err(StoreError::Doc))
            .unwrap_or_else(|| Err(StoreError::Corrupt("empty write result".into())))
    }

    // ---------------------------------------------------------------- reads

    pub fn record(&self, id: &str) -> Result<Option<DocRecord>> {
        match self.tree.get(codec::doc_key(id))? {
            Some(bytes) => Ok(Some(DocRecord::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The stored body of leaf `idx`: a JSON object of the document's members without `_id`,
    /// `_rev` and `_deleted` (attachment stubs are under `_attachments` as stored, not as
    /// [`Database::doc_json`] shows them), which a selector filter decodes only as far as it
    /// reads.
    pub fn leaf_body<'r>(&self, id: &str, rec: &'r DocRecord, idx: usize) -> Result<&'r [u8]> {
        Ok(body_bytes(id, rec, &rec.tree.node(idx).rev)?)
    }

    /// `GET /db/doc[?rev=]`: the winner (404 `deleted` if it is a tombstone) or a given leaf.
    pub fn get(&self, id: &str, rev: Option<&Rev>, opts: &ReadOpts) -> Result<Value> {
        self.get_with(id, rev, opts, Database::doc_json)
    }

    /// [`Database::get`] as JSON bytes, the body spliced in ([`Database::write_doc`]).
    pub fn get_bytes(&self, id: &str, rev: Option<&Rev>, opts: &ReadOpts) -> Result<Vec<u8>> {
        self.get_with(id, rev, opts, Database::doc_bytes)
    }

    fn get_with<T>(
        &self,
        id: &str,
        rev: Option<&Rev>,
        opts: &ReadOpts,
        render: Render<T>,
    ) -> Result<T> {
        let rec = self.record(id)?.ok_or(StoreError::NotFound("missing"))?;
        let idx = match rev {
            None => {
                let w = rec.tree.winner().ok_or(StoreError::NotFound("missing"))?;
                if rec.tree.node(w).deleted {
                    return Err(StoreError::NotFound("deleted"));
                }
                w
            }
            Some(r) => match rec.tree.find(r) {
                Some(i) if rec.tree.is_leaf(i) => i,
                _ => return Err(StoreError::NotFound("missing")),
            },
        };
        render(self, id, &rec, idx, opts)
    }

    /// `open_revs`: all leaves (`None`) or the given revisions; with `latest`, a non-leaf
    /// revision resolves to its descendant leaves. `Err(rev)` marks a missing revision.
    pub fn open_revs(
        &self,
        id: &str,
        revs: Option<&[Rev]>,
        latest: bool,
        opts: &ReadOpts,
    ) -> Result<Vec<std::result::Result<Value, String>>> {
        self.open_revs_with(id, revs, latest, opts, Database::doc_json)
    }

    /// [`Database::open_revs`] as JSON bytes, the bodies spliced in (`_bulk_get`).
    pub fn open_revs_bytes(
        &self,
        id: &str,
        revs: Option<&[Rev]>,
        latest: bool,
        opts: &ReadOpts,
    ) -> Result<Vec<std::result::Result<Vec<u8>, String>>> {
        self.open_revs_with(id, revs, latest, opts, Database::doc_bytes)
    }

    fn open_revs_with<T>(
        &self,
        id: &str,
        revs: Option<&[Rev]>,
        latest: bool,
        opts: &ReadOpts,
        render: Render<T>,
    ) -> Result<Vec<std::result::Result<T, String>>> {
        let rec = self.record(id)?;
        let mut out = Vec::new();
        match (revs, rec) {
            (None, None) => return Err(StoreError::NotFound("missing")),
            (None, Some(rec)) => {
                for leaf in rec.tree.leaves() {
                    out.push(Ok(render(self, id, &rec, leaf, opts)?));
                }
            }
            (Some(revs), rec) => {
                let mut seen = HashSet::new();
                for r in revs {
                    let found = rec
                        .as_ref()
                        .and_then(|rec| rec.tree.find(r).map(|i| (rec, i)));
                    match found {
                        Some((rec, i)) if rec.tree.is_leaf(i) => {
                            if seen.insert(i) {
                                out.push(Ok(render(self, id, rec, i, opts)?));
                            }
                        }
                        Some((rec, i)) if latest => {
                            for leaf in rec.tree.leaves_under(i) {
                                if seen.insert(leaf) {
                                    out.push(Ok(render(self, id, rec, leaf, opts)?));
                                }
                            }
                        }
                        _ => out.push(Err(r.to_string())),
                    }
                }
            }
        }
        Ok(out)
    }

    fn doc_bytes(&self, id: &str, rec: &DocRecord, idx: usize, opts: &ReadOpts) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(1024);
        self.write_doc(&mut out, id, rec, idx, opts)?;
        Ok(out)
    }

    /// Builds the JSON CouchDB returns for one leaf revision.
    pub fn doc_json(
        &self,
        id: &str,
        rec: &DocRecord,
        idx: usize,
        opts: &ReadOpts,
    ) -> Result<Value> {
        let tree = &rec.tree;
        let node = tree.node(idx);
        let mut body = parse_body(id, &node.rev, body_bytes(id, rec, &node.rev)?)?;
        let mut m = Map::with_capacity(body.len() + 4);
        m.insert("_id".into(), Value::String(id.to_owned()));
        m.insert("_rev".into(), Value::String(node.rev.to_string()));
        let atts = body.shift_remove("_attachments");
        m.extend(body);
        if node.deleted {
            m.insert("_deleted".into(), Value::Bool(true));
        }
        if let Some(Value::Object(mut atts)) = atts {
            let since = match &opts.attachments {
                AttMode::Stubs => Some(u64::MAX),
                AttMode::All => None,
                AttMode::Since(revs) => {
                    let path = tree.path(idx);
                    Some(
                        revs.iter()
                            .filter(|r| path.contains(r))
                            .map(|r| r.pos)
                            .max()
                            .unwrap_or(0),
                    )
                }
            };
            for (_, att) in atts.iter_mut() {
                let revpos = att.get("revpos").and_then(Value::as_u64).unwrap_or(0);
                if since.is_some_and(|s| revpos <= s) {
                    continue;
                }
                let digest = att.get("digest").and_then(Value::as_str).unwrap_or("");
                let data = self
                    .attachment_data(digest)?
                    .ok_or_else(|| StoreError::Corrupt(format!("attachment {digest}")))?;
                if let Value::Object(a) = att {
                    // As CouchDB (`couch_att:to_json`): `length` goes with stubs only; inline
                    // data says its length itself.
                    a.shift_remove("stub");
                    a.shift_remove("length");
                    a.insert(
                        "data".into(),
                        Value::String(base64::engine::general_purpose::STANDARD.encode(&data)),
                    );
                }
            }
            m.insert("_attachments".into(), Value::Object(atts));
        }
        m.extend(self.extras(rec, idx, opts).map(|(k, v)| (k.to_owned(), v)));
        Ok(Value::Object(m))
    }

    /// Appends to `out` the JSON [`Database::doc_json`] builds, as bytes. The stored body is
    /// spliced in as it is (no parse, no map, no reserialization) unless attachment data must
    /// be inlined into it: feeds, `_all_docs` and `_bulk_get` send thousands of bodies, and
    /// rebuilding each one was most of their cost. Equal to `doc_json` as JSON; only the
    /// position of `_attachments` among the members may differ.
    pub fn write_doc(
        &self,
        out: &mut Vec<u8>,
        id: &str,
        rec: &DocRecord,
        idx: usize,
        opts: &ReadOpts,
    ) -> Result<()> {
        let node = rec.tree.node(idx);
        let bytes = body_bytes(id, rec, &node.rev)?;
        let inline_atts = opts.attachments != AttMode::Stubs
            && memchr::memmem::find(bytes, b"\"_attachments\":").is_some();
        let inner = bytes.strip_prefix(b"{").and_then(|b| b.strip_suffix(b"}"));
        let Some(inner) = inner.filter(|_| !inline_atts) else {
            return write_json(out, &self.doc_json(id, rec, idx, opts)?);
        };
        out.extend_from_slice(b"{\"_id\":");
        write_json(out, id)?;
        out.extend_from_slice(b",\"_rev\":\"");
        out.extend_from_slice(node.rev.to_string().as_bytes());
        out.push(b'"');
        if !inner.is_empty() {
            out.push(b',');
            out.extend_from_slice(inner);
        }
        if node.deleted {
            out.extend_from_slice(b",\"_deleted\":true");
        }
        for (k, v) in self.extras(rec, idx, opts) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            write_json(out, &v)?;
        }
        out.push(b'}');
        Ok(())
    }

    /// The members a read adds after the body: `_conflicts`, `_deleted_conflicts`,
    /// `_local_seq`, `_revs_info`, `_revisions`, as the options ask.
    fn extras(
        &self,
        rec: &DocRecord,
        idx: usize,
        opts: &ReadOpts,
    ) -> impl Iterator<Item = (&'static str, Value)> {
        let tree = &rec.tree;
        let node = tree.node(idx);
        let mut m = Vec::new();
        let winner = tree.winner();
        if opts.conflicts && winner == Some(idx) {
            let c = self.other_leaves(tree, idx, false);
            if !c.is_empty() {
                m.push(("_conflicts", json!(c)));
            }
        }
        if opts.deleted_conflicts && winner == Some(idx) {
            let c = self.other_leaves(tree, idx, true);
            if !c.is_empty() {
                m.push(("_deleted_conflicts", json!(c)));
            }
        }
        if opts.local_seq {
            m.push(("_local_seq", json!(rec.seq)));
        }
        if opts.revs_info {
            let info: Vec<Value> = tree
                .path(idx)
                .into_iter()
                .map(|r| {
                    let i = tree.find(&r);
                    let status = match i {
                        Some(i) if tree.is_leaf(i) && tree.node(i).deleted => "deleted",
                        Some(i) if tree.is_leaf(i) => "available",
                        _ => "missing",
                    };
                    json!({"rev": r.to_string(), "status": status})
                })
                .collect();
            m.push(("_revs_info", Value::Array(info)));
        }
        if opts.revs {
            let path = tree.path(idx);
            let ids: Vec<&str> = path.iter().map(|r| r.hash.as_str()).collect();
            m.push(("_revisions", json!({"start": node.rev.pos, "ids": ids})));
        }
        m.into_iter()
    }

    fn other_leaves(&self, tree: &RevTree, winner: usize, deleted: bool) -> Vec<String> {
        tree.leaves()
            .into_iter()
            .filter(|&i| i != winner && tree.node(i).deleted == deleted)
            .map(|i| tree.node(i).rev.to_string())
            .collect()
    }

    pub fn attachment_data(&self, digest: &str) -> Result<Option<sled::IVec>> {
        Ok(self.tree.get(codec::att_key(digest))?)
    }

    /// `GET /db/doc/att`: the attachment's metadata and bytes, from the winner or a given rev.
    pub fn attachment(
        &self,
        id: &str,
        rev: Option<&Rev>,
        name: &str,
    ) -> Result<(AttMeta, sled::IVec)> {
        let doc = self.get(id, rev, &ReadOpts::default())?;
        let att = doc
            .get("_attachments")
            .and_then(|a| a.get(name))
            .ok_or(StoreError::NotFound("Document is missing attachment"))?;
        let meta = AttMeta {
            content_type: att
                .get("content_type")
                .and_then(Value::as_str)
                .unwrap_or("application/octet-stream")
                .to_owned(),
            digest: att
                .get("digest")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            length: att.get("length").and_then(Value::as_u64).unwrap_or(0),
            revpos: att.get("revpos").and_then(Value::as_u64).unwrap_or(0),
        };
        let data = self
            .attachment_data(&meta.digest)?
            .ok_or_else(|| StoreError::Corrupt(format!("attachment {}", meta.digest)))?;
        Ok((meta, data))
    }

    /// Documents in id order (raw byte order, as CouchDB's `_all_docs`), from `start`
    /// inclusive, deleted ones included (callers filter on the record).
    pub fn docs_from(
        &self,
        start: &str,
        descending: bool,
    ) -> impl Iterator<Item = Result<(String, DocRecord)>> + '_ {
        use std::ops::Bound::{Excluded, Included};
        let end = Excluded(vec![codec::DOC + 1]);
        let iter: KvIter = match (descending, start.is_empty()) {
            (false, _) => Box::new(self.tree.range((Included(codec::doc_key(start)), end))),
            (true, true) => Box::new(self.tree.range((Included(vec![codec::DOC]), end)).rev()),
            (true, false) => Box::new(
                self.tree
                    .range((Included(vec![codec::DOC]), Included(codec::doc_key(start))))
                    .rev(),
            ),
        };
        iter.map(|kv| {
            let (k, v) = kv?;
            let id = String::from_utf8(k[1..].to_vec())
                .map_err(|_| StoreError::Corrupt("doc id".into()))?;
            Ok((id, DocRecord::decode(&v)?))
        })
    }

    /// The changes feed: each document once, at its latest sequence, after `since`.
    pub fn changes(
        &self,
        since: u64,
        descending: bool,
    ) -> impl Iterator<Item = Result<Change>> + '_ {
        // A descending feed starts from the newest change whatever `since` says, as CouchDB.
        let after = if descending { 0 } else { since };
        self.seq_items(after, descending).filter_map(move |item| {
            let res = (|| {
                let (seq, id) = item?;
                // A document updated since this entry was read shows up again at its new seq.
                Ok(self
                    .record(&id)?
                    .filter(|r| r.seq == seq)
                    .map(|record| Change { seq, id, record }))
            })();
            res.transpose()
        })
    }

    /// The by-sequence index's (seq, id) pairs after `after`, in order (reversed when
    /// `descending`), read run by run ([`codec::Run`]).
    fn seq_items(
        &self,
        after: u64,
        descending: bool,
    ) -> impl Iterator<Item = Result<(u64, String)>> + '_ {
        let first = after.saturating_add(1);
        // The run that may hold `first` starts at or before it.
        let start = match self
            .tree
            .range(codec::seq_key(0)..=codec::seq_key(first))
            .next_back()
        {
            Some(Ok((k, _))) => codec::key_seq(&k),
            Some(Err(e)) => Err(e.into()),
            None => Ok(first),
        };
        let (iter, failed): (KvIter, _) = match start {
            Ok(from) => {
                let range = self
                    .tree
                    .range(codec::seq_key(from)..=codec::seq_key(u64::MAX));
                if descending {
                    (Box::new(range.rev()), None)
                } else {
                    (Box::new(range), None)
                }
            }
            Err(e) => (Box::new(std::iter::empty()), Some(Err(e))),
        };
        failed.into_iter().chain(iter.flat_map(move |kv| {
            let run = kv
                .map_err(StoreError::from)
                .and_then(|(k, v)| codec::Run::decode(codec::key_seq(&k)?, &v));
            let items: Vec<Result<(u64, String)>> = match run {
                Ok(mut run) => {
                    run.items.retain(|(seq, _)| *seq > after);
                    if descending {
                        run.items.reverse();
                    }
                    run.items.into_iter().map(Ok).collect()
                }
                Err(e) => vec![Err(e)],
            };
            items
        }))
    }

    /// Whether any revision of this document was written here by an interactive edit (rather
    /// than only arriving by replication): what "received only" means when a share is
    /// stopped with purge.
    /// Documents with more than one live leaf, in id order after `after`, at most `limit`:
    /// each with its winning revision first and then the losing live leaves, as documents
    /// (attachments as stubs). Deleted leaves are not conflicts, as in CouchDB's `_conflicts`.
    pub fn conflicts(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Value>)>> {
        let mut out = Vec::new();
        for item in self.docs_from(after.unwrap_or(""), false) {
            let (id, rec) = item?;
            if Some(id.as_str()) == after {
                continue;
            }
            // `leaves()` lists the winner first.
            let live: Vec<usize> = rec
                .tree
                .leaves()
                .into_iter()
                .filter(|&i| !rec.tree.node(i).deleted)
                .collect();
            if live.len() < 2 {
                continue;
            }
            let docs = live
                .into_iter()
                .map(|i| self.doc_json(&id, &rec, i, &ReadOpts::default()))
                .collect::<Result<Vec<_>>>()?;
            out.push((id, docs));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn edited_locally(&self, id: &str) -> Result<bool> {
        Ok(self.record(id)?.is_some_and(|r| r.edited))
    }

    /// How many documents changed after `since` (CouchDB's `pending`), exact up to
    /// [`PENDING_EXACT`]; beyond, the number of updates since, an upper bound that is exact
    /// unless a document changed twice. Counting every key made each `_changes` batch of a
    /// large replication cost O(rest of the database): 44% of a source server's CPU.
    pub fn pending(&self, since: u64) -> u64 {
        let n = self.seq_items(since, false).take(PENDING_EXACT + 1).count();
        if n <= PENDING_EXACT {
            n as u64
        } else {
            self.update_seq().saturating_sub(since).max(n as u64)
        }
    }

    /// `_revs_diff`: for each id, the revisions this database does not have.
    pub fn revs_diff(&self, req: Vec<(String, Vec<Rev>)>) -> Result<Vec<RevsDiff>> {
        let mut out = Vec::new();
        for (id, revs) in req {
            let rec = self.record(&id)?;
            let missing: Vec<Rev> = revs
                .into_iter()
                .filter(|r| !rec.as_ref().is_some_and(|rec| rec.tree.contains(r)))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let possible_ancestors = rec
                .map(|rec| rec.tree.possible_ancestors(&missing))
                .unwrap_or_default();
            out.push(RevsDiff {
                id,
                missing,
                possible_ancestors,
            });
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- _local docs

    pub fn get_local(&self, id: &str) -> Result<Option<Value>> {
        match self.tree.get(codec::local_key(id))? {
            Some(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).map_err(|_| {
                    StoreError::Corrupt(format!("local doc {id}"))
                })?))
            }
            None => Ok(None),
        }
    }

    /// Every `_local` document, in id order (`GET /{db}/_local_docs`).
    pub fn local_docs(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([codec::LOCAL]) {
            let (k, bytes) = kv?;
            let doc = serde_json::from_slice(&bytes).map_err(|_| {
                StoreError::Corrupt(format!("local doc {}", String::from_utf8_lossy(&k[1..])))
            })?;
            out.push(doc);
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- purge

    /// Removes the given leaf revisions as if they had never been written. Returns the new
    /// purge sequence and, per id, the revisions actually purged.
    pub fn purge(&self, req: Vec<(String, Vec<Rev>)>) -> Result<(u64, Vec<IdRevs>)> {
        let mut meta = self.lock()?;
        let mut w = Writer::new(self, meta.clone(), req.len());
        let mut out = Vec::with_capacity(req.len());
        for (id, revs) in req {
            let purged = w.purge(&id, &revs)?;
            out.push((id, purged));
        }
        let changed = w.finish()?;
        *meta = w.meta;
        let (seq, purge_seq) = (meta.update_seq, meta.purge_seq);
        drop(meta);
        if changed {
            self.publish(seq)?;
        }
        Ok((purge_seq, out))
    }

    /// Purge infos with a purge sequence above `since`, oldest first.
    pub fn purged_infos(&self, since: u64) -> Result<Vec<(u64, Value)>> {
        self.tree
            .range(codec::purge_key(since.saturating_add(1))..=codec::purge_key(u64::MAX))
            .map(|kv| {
                let (k, v) = kv?;
                let info = serde_json::from_slice(&v)
                    .map_err(|_| StoreError::Corrupt("purge info".into()))?;
                Ok((codec::key_seq(&k)?, info))
            })
            .collect()
    }

    // ---------------------------------------------------------------- settings

    pub fn revs_limit(&self) -> Result<u64> {
        Ok(self.lock()?.revs_limit)
    }

    pub fn set_revs_limit(&self, limit: u64) -> Result<()> {
        self.set_meta(|m| m.revs_limit = limit.max(1))
    }

    pub fn purged_infos_limit(&self) -> Result<u64> {
        Ok(self.lock()?.purged_infos_limit)
    }

    pub fn set_purged_infos_limit(&self, limit: u64) -> Result<()> {
        self.set_meta(|m| m.purged_infos_limit = limit.max(1))
    }

    fn set_meta(&self, f: impl FnOnce(&mut Meta)) -> Result<()> {
        let mut meta = self.lock()?;
        let mut next = meta.clone();
        f(&mut next);
        self.tree
            .insert(codec::meta_key("meta"), encode_meta(&next)?)?;
        *meta = next;
        drop(meta);
        self.commit.commit()
    }

    /// The `_security` object, if one was ever set.
    pub fn security(&self) -> Result<Option<Value>> {
        match self.tree.get(codec::meta_key("security"))? {
            Some(b) => {
                Ok(Some(serde_json::from_slice(&b).map_err(|_| {
                    StoreError::Corrupt("security object".into())
                })?))
            }
            None => Ok(None),
        }
    }

    pub fn set_security(&self, sec: &Value) -> Result<()> {
        let _guard = self.lock()?;
        self.tree.insert(
            codec::meta_key("security"),
            super::error::encode("_security", sec)?,
        )?;
        drop(_guard);
        self.commit.commit()
    }

    /// Drops attachment data no leaf refers to any more. Returns how many were removed.
    pub fn compact(&self) -> Result<usize> {
        let mut meta = self.lock()?;
        let mut referenced = HashSet::new();
        for r in self.docs_from("", false) {
            let (_, rec) = r?;
            for v in rec.bodies() {
                if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(v) {
                    if let Some(Value::Object(atts)) = body.get("_attachments") {
                        for att in atts.values() {
                            if let Some(d) = att.get("digest").and_then(Value::as_str) {
                                referenced.insert(d.to_owned());
                            }
                        }
                    }
                }
            }
        }
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        let mut freed = 0u64;
        for kv in self.tree.scan_prefix([codec::ATT]) {
            let (k, v) = kv?;
            let digest = String::from_utf8_lossy(&k[1..]).into_owned();
            if !referenced.contains(&digest) {
                batch.remove(k);
                removed += 1;
                freed += v.len() as u64;
            }
        }
        if removed > 0 {
            let mut next = meta.clone();
            next.external = next.external.saturating_sub(freed);
            batch.insert(codec::meta_key("meta"), encode_meta(&next)?);
            self.tree.apply_batch(batch)?;
            *meta = next;
            drop(meta);
            self.commit.commit()?;
        }
        Ok(removed)
    }
}

fn encode_meta(m: &Meta) -> Result<Vec<u8>> {
    super::error::encode("database meta", m)
}

/// The stored body of a leaf revision as a JSON object.
fn parse_body(id: &str, rev: &Rev, bytes: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(StoreError::Corrupt(format!("body of {id} {rev}"))),
    }
}

/// The stored body bytes of a leaf revision: every leaf has one (a record invariant).
fn body_bytes<'r>(id: &str, rec: &'r DocRecord, rev: &Rev) -> Result<&'r sled::IVec> {
    rec.body(rev)
        .ok_or_else(|| StoreError::Corrupt(format!("missing body of {id} {rev}")))
}

fn write_json(out: &mut Vec<u8>, v: &(impl serde::Serialize + ?Sized)) -> Result<()> {
    serde_json::to_writer(out, v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A random 32-hex id, as CouchDB's `_uuids` gives.
pub fn new_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    super::rev::hex(&bytes)
}

/// `md5-<base64>` of attachment bytes, CouchDB's digest form.
pub fn att_digest(data: &[u8]) -> String {
    format!(
        "md5-{}",
        base64::engine::general_purpose::STANDARD.encode(Md5::digest(data))
    )
}

// -------------------------------------------------------------------- the writer

/// Interactive writes of at least this many documents hash revisions on a second thread.
const PREPARE_MIN: usize = 64;
/// Documents the hashing thread hands over at a time.
const PREPARE_GROUP: usize = 32;

/// What an interactive edit without attachments needs no database state for: its revision id,
/// given the parent the client named, and its body as stored.
struct Prepared {
    parent: Option<Rev>,
    rev: Rev,
    bytes: Vec<u8>,
    /// Kept for the rare edit whose real parent differs from the named one.
    body: Map<String, Value>,
}

impl Prepared {
    /// Takes the body out of an edit that qualifies, for [`Prepared::compute`] on another
    /// thread; [`Writer::apply`] hands it back.
    fn job(
        doc: &mut std::result::Result<DocUpdate, DocError>,
    ) -> Option<(Option<Rev>, bool, Map<String, Value>)> {
        match doc {
            Ok(u) if !u.is_local() && u.attachments.is_empty() => {
                Some((u.rev.clone(), u.deleted, std::mem::take(&mut u.body)))
            }
            _ => None,
        }
    }

    fn compute(
        (parent, deleted, body): (Option<Rev>, bool, Map<String, Value>),
    ) -> Result<Prepared> {
        let body = Value::Object(body);
        let rev = Rev::for_edit(parent.as_ref(), deleted, &body);
        let bytes = super::error::encode("a document body", &body)?;
        let Value::Object(body) = body else {
            unreachable!("built as an object above")
        };
        Ok(Prepared {
            parent,
            rev,
            bytes,
            body,
        })
    }
}

/// The state of one write batch: documents as they will be after the batch, and the sled
/// operations that get them there. Nothing touches sled until `finish`.
struct Writer<'a> {
    db: &'a Database,
    meta: Meta,
    docs: HashMap<String, DocState>,
    /// Ids in the order they were first changed: the order their sequences are assigned in.
    order: Vec<String>,
    atts: HashMap<String, Vec<u8>>,
    locals: HashMap<String, Option<Value>>,
    purge_infos: Vec<Value>,
    changed: bool,
    /// Where chunks of a big write go to be applied (`None`: one batch at `finish`).
    pipe: Option<Applier>,
    /// Attachment data already handed to the applier in an earlier chunk.
    atts_sent: HashSet<String>,
}

/// What a document was when this write last saw it in sled (or handed it to the applier).
#[derive(Clone, Copy)]
struct Stored {
    seq: u64,
    deleted: bool,
}

struct DocState {
    original: Option<Stored>,
    current: Option<DocRecord>,
    dirty: bool,
}

impl DocState {
    /// The record being built, made empty if the document does not exist yet.
    fn record_mut(&mut self) -> &mut DocRecord {
        self.current
            .get_or_insert_with(|| DocRecord::new(0, RevTree::default()))
    }
}

type DocResult = std::result::Result<String, DocError>;

impl<'a> Writer<'a> {
    /// A writer for a batch of about `docs` documents (sized up front: growing the map
    /// while writing was a tenth of a `_bulk_docs` call's time).
    fn new(db: &'a Database, meta: Meta, docs: usize) -> Writer<'a> {
        Writer {
            db,
            meta,
            pipe: None,
            atts_sent: HashSet::new(),
            docs: HashMap::with_capacity(docs),
            order: Vec::with_capacity(docs),
            atts: HashMap::new(),
            locals: HashMap::new(),
            purge_infos: Vec::new(),
            changed: false,
        }
    }

    fn state(&mut self, id: &str) -> Result<&mut DocState> {
        if !self.docs.contains_key(id) {
            let current = self.db.record(id)?;
            self.docs.insert(
                id.to_owned(),
                DocState {
                    original: current.as_ref().map(|r| Stored {
                        seq: r.seq,
                        deleted: r.tree.is_deleted(),
                    }),
                    current,
                    dirty: false,
                },
            );
        }
        Ok(self.docs.get_mut(id).expect("inserted above"))
    }

    /// A leaf's body as the batch has it so far (the document's state was loaded first).
    fn body(&self, id: &str, rev: &Rev) -> Result<Map<String, Value>> {
        let rec = self
            .docs
            .get(id)
            .and_then(|st| st.current.as_ref())
            .ok_or_else(|| StoreError::Corrupt(format!("no record for {id}")))?;
        parse_body(id, rev, body_bytes(id, rec, rev)?)
    }

    /// The record this batch is building for a document.
    fn current(&mut self, id: &str) -> Result<&mut DocRecord> {
        Ok(self.state(id)?.record_mut())
    }

    fn put_body(&mut self, id: &str, rev: &Rev, body: &Value) -> Result<()> {
        let bytes = super::error::encode("a document body", body)?;
        self.put_body_bytes(id, rev, bytes)
    }

    fn put_body_bytes(&mut self, id: &str, rev: &Rev, bytes: Vec<u8>) -> Result<()> {
        self.meta.external += bytes.len() as u64;
        self.current(id)?.set_body(rev.clone(), bytes.into());
        Ok(())
    }

    fn remove_body(&mut self, id: &str, rev: &Rev) -> Result<()> {
        if let Some(b) = self.current(id)?.remove_body(rev) {
            self.meta.external = self.meta.external.saturating_sub(b.len() as u64);
        }
        Ok(())
    }

    fn mark_edited(&mut self, id: &str) {
        if let Some(rec) = self.docs.get_mut(id).and_then(|st| st.current.as_mut()) {
            rec.edited = true;
        }
    }

    fn att_known(&self, digest: &str) -> Result<bool> {
        Ok(self.atts.contains_key(digest)
            || self.atts_sent.contains(digest)
            || self.db.tree.contains_key(codec::att_key(digest))?)
    }

    fn store_att(&mut self, data: Vec<u8>) -> Result<(String, u64)> {
        let digest = att_digest(&data);
        let len = data.len() as u64;
        if !self.att_known(&digest)? {
            self.meta.external += len;
            self.atts.insert(digest.clone(), data);
        }
        Ok((digest, len))
    }

    fn set_record(&mut self, id: &str, tree: RevTree) -> Result<()> {
        let limit = self.meta.revs_limit as usize;
        let st = self.state(id)?;
        let mut tree = tree;
        tree.stem(limit);
        st.record_mut().tree = tree;
        if !st.dirty {
            st.dirty = true;
            self.order.push(id.to_owned());
        }
        self.changed = true;
        Ok(())
    }

    /// Applies a request's documents in order. `prepared` yields, per document, what
    /// [`Prepared::compute`] made of it (`None` when it was not a candidate).
    fn apply(
        &mut self,
        docs: Vec<(Option<String>, std::result::Result<DocUpdate, DocError>)>,
        new_edits: bool,
        mut prepared: impl Iterator<Item = Result<Option<Prepared>>>,
    ) -> Result<Vec<DocOutcome>> {
        let mut outcomes = Vec::with_capacity(docs.len());
        for (hint, doc) in docs {
            let prep = prepared.next().transpose()?.flatten();
            let outcome = match doc {
                Err(e) => DocOutcome {
                    id: hint.unwrap_or_default(),
                    result: Err(e),
                },
                Ok(mut upd) => {
                    let id = upd.id.clone();
                    let result = if upd.is_local() {
                        self.write_local(upd, new_edits)?
                    } else if new_edits {
                        let r = match prep {
                            Some(p) => self.edit_prepared(upd, p)?,
                            None => self.edit(upd)?,
                        };
                        if r.is_ok() {
                            self.mark_edited(&id);
                        }
                        r
                    } else {
                        if let Some(p) = prep {
                            upd.body = p.body;
                        }
                        self.replicate(upd)?
                    };
                    DocOutcome { id, result }
                }
            };
            outcomes.push(outcome);
            if self.pipe.is_some() && self.order.len() >= CHUNK {
                let batch = self.batch(false)?;
                let meta = self.meta.clone();
                if let Some(pipe) = &mut self.pipe {
                    pipe.send(batch, meta)?;
                }
            }
        }
        Ok(outcomes)
    }

    /// [`Writer::edit`] with the revision id and body bytes already computed for the parent
    /// the client named; falls back to computing them when the edit turns out to have
    /// another parent (recreating a deleted document).
    fn edit_prepared(&mut self, mut upd: DocUpdate, p: Prepared) -> Result<DocResult> {
        let st = self.state(&upd.id)?;
        let tree = st.current.as_ref().map(|r| &r.tree);
        let parent = match (tree, &upd.rev) {
            (None, None) => None,
            (Some(t), None) if t.is_empty() => None,
            (Some(t), Some(r)) if !t.is_empty() => match t.find(r) {
                Some(i) if t.is_leaf(i) => Some((i, t.node(i).rev.clone())),
                _ => return Ok(Err(DocError::Conflict)),
            },
            // A conflict, or a recreation on top of a tombstone: the general path decides.
            _ => {
                upd.body = p.body;
                return self.edit(upd);
            }
        };
        if parent.as_ref().map(|(_, r)| r) != p.parent.as_ref() {
            upd.body = p.body;
            return self.edit(upd);
        }
        let mut tree = tree.cloned().unwrap_or_default();
        if tree.contains(&p.rev) {
            return Ok(Err(DocError::Conflict));
        }
        tree.add_child(parent.as_ref().map(|(i, _)| *i), p.rev.clone(), upd.deleted);
        if let Some((_, old)) = &parent {
            self.remove_body(&upd.id, old)?;
        }
        self.put_body_bytes(&upd.id, &p.rev, p.bytes)?;
        self.set_record(&upd.id, tree)?;
        Ok(Ok(p.rev.to_string()))
    }

    /// An interactive edit (`new_edits=true`).
    fn edit(&mut self, upd: DocUpdate) -> Result<DocResult> {
        let tree = self
            .state(&upd.id)?
            .current
            .as_ref()
            .map(|r| r.tree.clone())
            .unwrap_or_default();
        let parent = match (tree.is_empty(), &upd.rev) {
            (true, None) => None,
            (true, Some(_)) => return Ok(Err(DocError::Conflict)),
            (false, None) if tree.is_deleted() => tree.winner(),
            (false, None) => return Ok(Err(DocError::Conflict)),
            (false, Some(r)) => match tree.find(r) {
                Some(i) if tree.is_leaf(i) => Some(i),
                _ => return Ok(Err(DocError::Conflict)),
            },
        };
        let parent_rev = parent.map(|i| tree.node(i).rev.clone());
        // Only stubs refer to the parent's attachments; without any, its body is not read.
        let parent_atts = match &parent_rev {
            Some(r) if !upd.attachments.is_empty() => {
                self.body(&upd.id, r)?.shift_remove("_attachments")
            }
            _ => None,
        };
        let pos = parent_rev.as_ref().map_or(1, |r| r.pos + 1);
        let mut body = upd.body;
        match self.resolve_atts(&upd.id, upd.attachments, pos, false, |name, _| {
            parent_atts.as_ref().and_then(|a| a.get(name)).cloned()
        })? {
            Ok(Some(atts)) => {
                body.insert("_attachments".into(), atts);
            }
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        let body = Value::Object(body);
        let rev = Rev::for_edit(parent_rev.as_ref(), upd.deleted, &body);
        if tree.contains(&rev) {
            return Ok(Err(DocError::Conflict));
        }
        let mut tree = tree;
        tree.add_child(parent, rev.clone(), upd.deleted);
        if let Some(p) = &parent_rev {
            self.remove_body(&upd.id, p)?;
        }
        self.put_body(&upd.id, &rev, &body)?;
        self.set_record(&upd.id, tree)?;
        Ok(Ok(rev.to_string()))
    }

    /// A replicated write (`new_edits=false`): merge the path, whatever the current leaves.
    fn replicate(&mut self, upd: DocUpdate) -> Result<DocResult> {
        let Some(rev) = upd.rev.clone() else {
            return Ok(Err(DocError::BadRequest(
                "A document written with new_edits=false needs a _rev".into(),
            )));
        };
        let path = upd.revisions.clone().unwrap_or_else(|| vec![rev.clone()]);
        let mut tree = self
            .state(&upd.id)?
            .current
            .as_ref()
            .map(|r| r.tree.clone())
            .unwrap_or_default();
        if tree.contains(&rev) {
            return Ok(Ok(rev.to_string()));
        }
        // Stubs may refer to any attachment a current leaf has.
        let mut leaf_atts = Vec::new();
        for i in tree.leaves() {
            if let Some(Value::Object(a)) = self
                .body(&upd.id, &tree.node(i).rev)?
                .shift_remove("_attachments")
            {
                leaf_atts.push(a);
            }
        }
        let mut body = upd.body;
        let found = |name: &str, digest: Option<&str>| {
            leaf_atts.iter().find_map(|atts| {
                atts.get(name)
                    .filter(|a| {
                        digest.is_none_or(|d| a.get("digest").and_then(Value::as_str) == Some(d))
                    })
                    .cloned()
            })
        };
        match self.resolve_atts(&upd.id, upd.attachments, rev.pos, true, found)? {
            Ok(Some(atts)) => {
                body.insert("_attachments".into(), atts);
            }
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        let before: Vec<Rev> = tree
            .leaves()
            .into_iter()
            .map(|i| tree.node(i).rev.clone())
            .collect();
        if tree.merge_path(&path, upd.deleted) == Merge::AlreadyPresent {
            return Ok(Ok(rev.to_string()));
        }
        let after: HashSet<Rev> = tree
            .leaves()
            .into_iter()
            .map(|i| tree.node(i).rev.clone())
            .collect();
        for old in before.iter().filter(|r| !after.contains(r)) {
            self.remove_body(&upd.id, old)?;
        }
        self.put_body(&upd.id, &rev, &Value::Object(body))?;
        self.set_record(&upd.id, tree)?;
        Ok(Ok(rev.to_string()))
    }

    /// Turns incoming attachments into stored stub metadata, storing new data. `existing`
    /// finds the metadata a stub refers to (by name and, when given, digest). New data is of
    /// revision `pos`, as CouchDB sets it on an edit; a replicated write (`keep_revpos`)
    /// keeps the `revpos` it carries.
    fn resolve_atts(
        &mut self,
        id: &str,
        atts: Vec<(String, AttInput)>,
        pos: u64,
        keep_revpos: bool,
        existing: impl Fn(&str, Option<&str>) -> Option<Value>,
    ) -> Result<std::result::Result<Option<Value>, DocError>> {
        if atts.is_empty() {
            return Ok(Ok(None));
        }
        let mut out = Map::new();
        for (name, att) in atts {
            let meta = match att {
                AttInput::Data {
                    content_type,
                    data,
                    revpos,
                } => {
                    let (digest, length) = self.store_att(data)?;
                    let revpos = if keep_revpos {
                        revpos.unwrap_or(pos)
                    } else {
                        pos
                    };
                    json!({"content_type": content_type, "revpos": revpos,
                           "digest": digest, "length": length, "stub": true})
                }
                AttInput::Stub { digest, .. } => match existing(&name, digest.as_deref()) {
                    Some(m) => m,
                    None => return Ok(Err(DocError::MissingStub(format!("{id}/{name}")))),
                },
                AttInput::Follows { .. } => {
                    return Ok(Err(DocError::BadRequest(format!(
                        "attachment {name} says it follows, but no multipart body carried it"
                    ))))
                }
            };
            out.insert(name, meta);
        }
        Ok(Ok(Some(Value::Object(out))))
    }

    fn write_local(&mut self, upd: DocUpdate, new_edits: bool) -> Result<DocResult> {
        let current = match self.locals.get(&upd.id) {
            Some(v) => v.clone(),
            None => self.db.get_local(&upd.id)?,
        };
        let cur_rev = current
            .as_ref()
            .and_then(|d| d.get("_rev"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let n: u64 = cur_rev
            .as_deref()
            .and_then(|r| r.strip_prefix("0-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if new_edits && cur_rev != upd.local_rev {
            return Ok(Err(DocError::Conflict));
        }
        if upd.deleted {
            if current.is_none() {
                return Ok(Err(DocError::NotFound("missing")));
            }
            self.locals.insert(upd.id, None);
            self.changed = true;
            return Ok(Ok("0-0".into()));
        }
        let rev = format!("0-{}", n + 1);
        let mut doc = Map::new();
        doc.insert("_id".into(), Value::String(upd.id.clone()));
        doc.insert("_rev".into(), Value::String(rev.clone()));
        doc.extend(upd.body);
        self.locals.insert(upd.id, Some(Value::Object(doc)));
        self.changed = true;
        Ok(Ok(rev))
    }

    fn purge(&mut self, id: &str, revs: &[Rev]) -> Result<Vec<Rev>> {
        let Some(mut tree) = self.state(id)?.current.as_ref().map(|r| r.tree.clone()) else {
            return Ok(Vec::new());
        };
        let removed = tree.remove_leaves(revs);
        if removed.is_empty() {
            return Ok(removed);
        }
        for r in &removed {
            self.remove_body(id, r)?;
        }
        if tree.is_empty() {
            let st = self.state(id)?;
            st.current = None;
            if !st.dirty {
                st.dirty = true;
                self.order.push(id.to_owned());
            }
            self.changed = true;
        } else {
            self.set_record(id, tree)?;
        }
        self.meta.purge_seq += 1;
        let revs: Vec<String> = removed.iter().map(Rev::to_string).collect();
        self.purge_infos.push(json!({"id": id, "revs": revs}));
        Ok(removed)
    }

    /// Takes retired sequences out of the runs holding them: each run is rewritten once, or
    /// removed when nothing is left in it.
    fn retire_seqs(&self, batch: &mut sled::Batch, mut retired: Vec<u64>) -> Result<()> {
        retired.sort_unstable();
        let mut i = 0;
        while i < retired.len() {
            let seq = retired[i];
            let Some(kv) = self
                .db
                .tree
                .range(codec::seq_key(0)..=codec::seq_key(seq))
                .next_back()
            else {
                i += 1;
                continue;
            };
            let (k, v) = kv?;
            let mut run = codec::Run::decode(codec::key_seq(&k)?, &v)?;
            let last = run.items.last().map_or(0, |(s, _)| *s);
            // Every retired sequence this run holds.
            let mut j = i;
            while j < retired.len() && retired[j] <= last {
                j += 1;
            }
            if j == i {
                // Not in the index (nothing a write leaves behind): nothing to take out.
                i += 1;
                continue;
            }
            let gone = &retired[i..j];
            run.items.retain(|(s, _)| gone.binary_search(s).is_err());
            if run.items.is_empty() {
                batch.remove(k);
            } else {
                batch.insert(k, run.encode());
            }
            i = j;
        }
        Ok(())
    }

    /// Assigns sequences, fixes counters and applies everything not applied yet as one sled
    /// batch (through the applier, waiting for it, when there is one).
    fn finish(&mut self) -> Result<bool> {
        if !self.changed {
            return Ok(false);
        }
        let batch = self.batch(true)?;
        match &mut self.pipe {
            Some(pipe) => {
                pipe.send(batch, self.meta.clone())?;
                pipe.drain()?;
            }
            None => self.db.tree.apply_batch(batch)?,
        }
        Ok(true)
    }

    /// The sled batch for the documents changed since the last one, with their sequences,
    /// by-sequence runs, the attachment data written so far and the counters; with `all`, also
    /// `_local` documents and purge infos (only a whole write has those).
    fn batch(&mut self, all: bool) -> Result<sled::Batch> {
        let mut batch = sled::Batch::default();
        let mut purged_whole = 0;
        // By-sequence index: the sequences this batch retires, and its new (seq, id) pairs.
        let mut retired = Vec::new();
        let mut fresh: Vec<(u64, String)> = Vec::new();
        for id in std::mem::take(&mut self.order) {
            let Some(st) = self.docs.get_mut(&id) else {
                continue;
            };
            let (was, was_deleted) = match st.original {
                Some(r) => (true, r.deleted),
                None => (false, false),
            };
            if let Some(orig) = st.original {
                retired.push(orig.seq);
            }
            match &mut st.current {
                Some(rec) => {
                    self.meta.update_seq += 1;
                    rec.seq = self.meta.update_seq;
                    batch.insert(codec::doc_key(&id), rec.encode());
                    fresh.push((rec.seq, id.clone()));
                    let deleted = rec.tree.is_deleted();
                    if !was || was_deleted != deleted {
                        if was {
                            dec(&mut self.meta, was_deleted);
                        }
                        if deleted {
                            self.meta.del_count += 1;
                        } else {
                            self.meta.doc_count += 1;
                        }
                    }
                }
                None => {
                    batch.remove(codec::doc_key(&id));
                    if was {
                        dec(&mut self.meta, was_deleted);
                    }
                    purged_whole += 1;
                }
            }
            st.original = st.current.as_ref().map(|r| Stored {
                seq: r.seq,
                deleted: r.tree.is_deleted(),
            });
            st.dirty = false;
        }
        // A purge that removed whole documents still moves the update sequence.
        self.meta.update_seq += purged_whole;
        if !retired.is_empty() {
            // Retiring reads runs from sled, which must hold every chunk handed over so far.
            if let Some(pipe) = &mut self.pipe {
                pipe.drain()?;
            }
        }
        self.retire_seqs(&mut batch, retired)?;
        for run in fresh.chunks(codec::RUN_MAX) {
            let run = codec::Run {
                items: run.to_vec(),
            };
            batch.insert(&codec::seq_key(run.items[0].0)[..], run.encode());
        }
        for (digest, data) in self.atts.drain() {
            batch.insert(codec::att_key(&digest), data);
            if self.pipe.is_some() {
                self.atts_sent.insert(digest);
            }
        }
        if all {
            self.finish_extras(&mut batch)?;
        }
        batch.insert(codec::meta_key("meta"), encode_meta(&self.meta)?);
        Ok(batch)
    }

    /// `_local` documents and purge infos: written with the last batch of a write.
    fn finish_extras(&mut self, batch: &mut sled::Batch) -> Result<()> {
        for (id, doc) in self.locals.drain() {
            match doc {
                Some(d) => batch.insert(
                    codec::local_key(&id),
                    super::error::encode("a _local document", &d)?,
                ),
                None => batch.remove(codec::local_key(&id)),
            }
        }
        if !self.purge_infos.is_empty() {
            let first = self.meta.purge_seq + 1 - self.purge_infos.len() as u64;
            for (i, info) in self.purge_infos.drain(..).enumerate() {
                batch.insert(
                    &codec::purge_key(first + i as u64)[..],
                    super::error::encode("a purge info", &info)?,
                );
            }
            // Keep at most `purged_infos_limit` purge infos.
            let keep_from = self
                .meta
                .purge_seq
                .saturating_sub(self.meta.purged_infos_limit)
                + 1;
            for kv in self
                .db
                .tree
                .range(codec::purge_key(0)..codec::purge_key(keep_from))
            {
                let (k, _) = kv?;
                batch.remove(k);
            }
        }
        Ok(())
    }
}

/// Documents per chunk a big interactive write hands to its [`Applier`].
const CHUNK: usize = 2 * codec::RUN_MAX;

/// Applies a big write's sled batches, in order, on a thread of its own: sled applies one batch
/// at a time on the calling thread, so without it the writer (and the hashing helper) would
/// wait for sled at the end of every write. Every batch is consistent on its own (see the
/// module invariants); `stop` reports the counters of the last batch sled applied, so that a
/// write failing half-way leaves the database's counters where sled has them.
struct Applier {
    batches: std::sync::mpsc::SyncSender<(sled::Batch, Meta)>,
    acks: std::sync::mpsc::Receiver<Result<Meta>>,
    pending: usize,
    applied: Option<Meta>,
}

impl Applier {
    /// `None` when the thread cannot start: the write then applies one batch itself.
    fn start<'s>(scope: &'s std::thread::Scope<'s, '_>, tree: &'s sled::Tree) -> Option<Applier> {
        let (batches, rx) = std::sync::mpsc::sync_channel::<(sled::Batch, Meta)>(2);
        let (ack, acks) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("settee-apply".into())
            .spawn_scoped(scope, move || {
                for (batch, meta) in rx {
                    let res = tree.apply_batch(batch).map(|()| meta);
                    let failed = res.is_err();
                    if ack.send(res.map_err(StoreError::from)).is_err() || failed {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Applier {
            batches,
            acks,
            pending: 0,
            applied: None,
        })
    }

    fn send(&mut self, batch: sled::Batch, meta: Meta) -> Result<()> {
        if self.batches.send((batch, meta)).is_err() {
            // The thread stopped on an error: report that error.
            self.drain()?;
            return Err(StoreError::Corrupt("the batch applier stopped".into()));
        }
        self.pending += 1;
        Ok(())
    }

    /// Waits until sled has applied every batch sent so far.
    fn drain(&mut self) -> Result<()> {
        while self.pending > 0 {
            let ack = self
                .acks
                .recv()
                .map_err(|_| StoreError::Corrupt("the batch applier stopped".into()))?;
            self.pending -= 1;
            self.applied = Some(ack?);
        }
        Ok(())
    }

    /// Ends the thread; the counters of the last batch sled applied, if any.
    fn stop(self) -> Option<Meta> {
        let Applier {
            batches,
            acks,
            mut applied,
            ..
        } = self;
        drop(batches);
        for m in acks.iter().flatten() {
            applied = Some(m);
        }
        applied
    }
}

fn dec(meta: &mut Meta, deleted: bool) {
    if deleted {
        meta.del_count = meta.del_count.saturating_sub(1);
    } else {
        meta.doc_count = meta.doc_count.saturating_sub(1);
    }
}
