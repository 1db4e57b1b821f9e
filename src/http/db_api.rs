//! Database endpoints: `/{db}` and its `_`-prefixed children (`_bulk_docs`, `_bulk_get`,
//! `_revs_diff`, `_all_docs`, `_purge`, limits, `_security`, `_ensure_full_commit`, `_compact`).

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::request::{json_bytes_resp, json_resp, write_json, Req, Resp};
use super::Ctx;
use crate::store::{AttMode, Database, ReadOpts, Rev};

/// Runs blocking store work (writes wait for a disk flush) off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "task failed",
        )
    })?
}

pub fn seq_json(seq: u64) -> Value {
    Value::String(crate::store::seq_string(seq))
}

pub fn db_info_json(ctx: &Ctx, db: &Database) -> Result<Value, ApiError> {
    let i = db.info()?;
    Ok(json!({
        "db_name": i.name,
        "update_seq": seq_json(i.update_seq),
        "purge_seq": seq_json(i.purge_seq),
        "doc_count": i.doc_count,
        "doc_del_count": i.doc_del_count,
        "sizes": {"file": ctx.store.size_on_disk(), "external": i.external_size, "active": i.external_size},
        "instance_start_time": "0",
        "disk_format_version": 8,
        "compact_running": false,
        "props": {},
        "cluster": {"q": 1, "n": 1, "w": 1, "r": 1}
    }))
}

pub async fn database(ctx: &Arc<Ctx>, name: &str, req: &Req) -> Result<Resp, ApiError> {
    match req.method {
        Method::GET | Method::HEAD => {
            let db = ctx.store.db(name)?;
            Ok(json_resp(StatusCode::OK, &db_info_json(ctx, &db)?))
        }
        Method::PUT => {
            let (store, name) = (ctx.store.clone(), name.to_owned());
            blocking(move || Ok(store.create_db(&name)?)).await?;
            Ok(json_resp(StatusCode::CREATED, &json!({"ok": true})))
        }
        Method::DELETE => {
            // `DELETE /db/?rev=…` is a document delete with an empty id variable: it must not
            // take the whole database with it (CouchDB refuses it the same way).
            if req.param("rev").is_some() {
                return Err(ApiError::bad_request(
                    "You tried to DELETE a database with a ?rev= parameter. Did you mean to DELETE a document instead?",
                ));
            }
            let (store, name) = (ctx.store.clone(), name.to_owned());
            blocking(move || Ok(store.delete_db(&name)?)).await?;
            Ok(json_resp(StatusCode::OK, &json!({"ok": true})))
        }
        Method::POST => {
            let db = ctx.store.db(name)?;
            let doc = req
                .json()?
                .filter(Value::is_object)
                .ok_or_else(|| ApiError::bad_request("Document must be a JSON object"))?;
            let mut docs = vec![doc];
            prepare_writes(ctx, req, name, &mut docs, true)?;
            let out = blocking(move || Ok(db.bulk_docs(docs, true)?)).await?;
            let o = out
                .into_iter()
                .next()
                .ok_or_else(|| ApiError::bad_request("no document"))?;
            let rev = o.result?;
            Ok(json_resp(
                StatusCode::CREATED,
                &json!({"ok": true, "id": o.id, "rev": rev}),
            ))
        }
        _ => Err(ApiError::method_not_allowed("DELETE,GET,HEAD,POST,PUT")),
    }
}

pub async fn special(ctx: &Arc<Ctx>, name: &str, what: &str, req: &Req) -> Result<Resp, ApiError> {
    let db = ctx.store.db(name)?;
    match (what, &req.method) {
        ("_bulk_docs", &Method::POST) => bulk_docs(ctx, db, req).await,
        ("_bulk_get", &Method::POST) => bulk_get(db, req),
        ("_revs_diff", &Method::POST) => {
            let body = req.json_object()?;
            let diff = db.revs_diff(id_revs(&body)?)?;
            let mut out = Map::new();
            for d in diff {
                let mut row =
                    json!({"missing": d.missing.iter().map(Rev::to_string).collect::<Vec<_>>()});
                if !d.possible_ancestors.is_empty() {
                    row["possible_ancestors"] = json!(d
                        .possible_ancestors
                        .iter()
                        .map(Rev::to_string)
                        .collect::<Vec<_>>());
                }
                out.insert(d.id, row);
            }
            Ok(json_resp(StatusCode::OK, &Value::Object(out)))
        }
        ("_all_docs", &Method::GET) | ("_all_docs", &Method::POST) => all_docs(db, req),
        ("_local_docs", &Method::GET) => local_docs(&db, req),
        ("_ensure_full_commit", &Method::POST) => {
            let store = ctx.store.clone();
            blocking(move || Ok(store.flush()?)).await?;
            Ok(json_resp(
                StatusCode::CREATED,
                &json!({"ok": true, "instance_start_time": "0"}),
            ))
        }
        ("_purge", &Method::POST) => {
            let body = req.json_object()?;
            let reqs = id_revs(&body)?;
            // CouchDB 3 answers `"purge_seq": null` (GET /db has the sequence).
            let (_, purged) = blocking(move || Ok(db.purge(reqs)?)).await?;
            let purged: Map<String, Value> = purged
                .into_iter()
                .map(|(id, revs)| {
                    (
                        id,
                        json!(revs.iter().map(Rev::to_string).collect::<Vec<_>>()),
                    )
                })
                .collect();
            Ok(json_resp(
                StatusCode::CREATED,
                &json!({"purge_seq": null, "purged": purged}),
            ))
        }
        ("_revs_limit", &Method::GET) => Ok(json_resp(StatusCode::OK, &json!(db.revs_limit()?))),
        ("_revs_limit", &Method::PUT) => {
            let n = positive_int_body(req)?;
            blocking(move || Ok(db.set_revs_limit(n)?)).await?;
            Ok(json_resp(StatusCode::OK, &json!({"ok": true})))
        }
        // CouchDB 3.4+: every purge still kept, oldest first.
        ("_purged_infos", &Method::GET) => {
            let infos: Vec<Value> = db.purged_infos(0)?.into_iter().map(|(_, i)| i).collect();
            Ok(json_resp(StatusCode::OK, &json!({"purged_infos": infos})))
        }
        ("_purged_infos", _) => Err(ApiError::method_not_allowed("GET")),
        ("_purged_infos_limit", &Method::GET) => {
            Ok(json_resp(StatusCode::OK, &json!(db.purged_infos_limit()?)))
        }
        ("_purged_infos_limit", &Method::PUT) => {
            let n = positive_int_body(req)?;
            blocking(move || Ok(db.set_purged_infos_limit(n)?)).await?;
            Ok(json_resp(StatusCode::OK, &json!({"ok": true})))
        }
        ("_security", &Method::GET) => Ok(json_resp(
            StatusCode::OK,
            // Never set: CouchDB 3's `admin_only` default, which is what settee enforces.
            &db.security()?.unwrap_or_else(
                || json!({"members": {"roles": ["_admin"]}, "admins": {"roles": ["_admin"]}}),
            ),
        )),
        ("_security", &Method::PUT) => {
            let sec = Value::Object(req.json_object()?);
            super::auth::validate_security(&sec)?;
            blocking(move || Ok(db.set_security(&sec)?)).await?;
            Ok(json_resp(StatusCode::OK, &json!({"ok": true})))
        }
        ("_compact", &Method::POST) => {
            blocking(move || Ok(db.compact()?)).await?;
            Ok(json_resp(StatusCode::ACCEPTED, &json!({"ok": true})))
        }
        (
            "_bulk_docs"
            | "_bulk_get"
            | "_revs_diff"
            | "_ensure_full_commit"
            | "_purge"
            | "_compact",
            _,
        ) => Err(ApiError::method_not_allowed("POST")),
        ("_all_docs", _) => Err(ApiError::method_not_allowed("GET,HEAD,POST")),
        ("_revs_limit" | "_purged_infos_limit" | "_security", _) => {
            Err(ApiError::method_not_allowed("GET,PUT"))
        }
        _ => Err(ApiError::not_found(format!(
            "no endpoint {what} on a database"
        ))),
    }
}

fn positive_int_body(req: &Req) -> Result<u64, ApiError> {
    match req.json()? {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => Ok(n.as_u64().unwrap_or(1)),
        _ => Err(ApiError::bad_request("the body must be a positive integer")),
    }
}

/// A replication with a `fields` list and one in the opposite direction between the same
/// databases (in this request or already in `_replicator`) would send projections back as
/// conflicts: refused (403), naming the other document. Existing documents are read only when
/// a field list is involved.
fn refuse_field_loops(
    ctx: &Ctx,
    new: &[(String, crate::replicator::Spec)],
) -> Result<(), ApiError> {
    use crate::scheduler::docs::{fields_loop, has_fields, REPLICATOR_DB};
    let any_new = new.iter().any(|(_, s)| s.fields.is_some());
    let Ok(rdb) = ctx.store.db(REPLICATOR_DB) else {
        return Ok(());
    };
    let mut existing = Vec::new();
    for item in rdb.docs_from("", false) {
        let (id, stored) = item?;
        if stored.is_deleted() || id.starts_with("_design/") || new.iter().any(|(n, _)| *n == id) {
            continue;
        }
        // Without a field list in the request only documents with one matter: a look at the
        // stored bytes skips the rest without parsing them (a bulk write of many documents
        // would otherwise parse the whole database once per document).
        if !any_new {
            let body = stored
                .winner()
                .and_then(|w| rdb.leaf_body(&id, &stored, w).ok());
            if body.is_none_or(|b| memchr::memmem::find(b, b"\"fields\"").is_none()) {
                continue;
            }
        }
        let Ok(doc) = rdb.get(&id, None, &ReadOpts::default()) else {
            continue;
        };
        if !any_new && !has_fields(&doc) {
            continue;
        }
        if let Ok(spec) = crate::scheduler::docs::validate(&doc) {
            existing.push((id, spec));
        }
    }
    for (i, (_, spec)) in new.iter().enumerate() {
        let others = existing
            .iter()
            .chain(new.iter().skip(i + 1))
            .map(|(id, s)| (id.as_str(), s));
        if let Some(reason) = fields_loop(spec, others) {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", reason));
        }
    }
    Ok(())
}

/// A replication document whose `after` chain comes back to itself would never run: 403.
fn refuse_after_cycles(ctx: &Ctx, docs: &[Value]) -> Result<(), ApiError> {
    let rdb = ctx.store.db(crate::scheduler::docs::REPLICATOR_DB).ok();
    for d in docs {
        let (Some(id), Some(first)) = (
            d.get("_id").and_then(Value::as_str),
            d.get("after").and_then(Value::as_str),
        ) else {
            continue;
        };
        let after_of = |x: &str| -> Option<String> {
            if x == id {
                return Some(first.to_owned());
            }
            let other = rdb.as_ref()?.get(x, None, &ReadOpts::default()).ok()?;
            other.get("after")?.as_str().map(str::to_owned)
        };
        if crate::scheduler::options::after_cycle(id, first, after_of) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("`after` {first:?} leads back to {id:?}: a chain that refers to itself never starts"),
            ));
        }
    }
    Ok(())
}

/// Write-path rules that depend on who writes: passwords in `_users` are hashed, members may
/// not write design documents, and a user editing their own user doc may not change its roles.
pub fn prepare_writes(
    ctx: &Ctx,
    req: &Req,
    db: &str,
    docs: &mut [Value],
    new_edits: bool,
) -> Result<(), ApiError> {
    super::auth::check_bulk_design(ctx, &req.user, db, docs)?;
    if db == crate::scheduler::docs::REPLICATOR_DB && new_edits {
        // CouchDB 3.3+'s before-doc-update hook: an invalid replication is refused at once.
        let mut specs = Vec::new();
        for d in docs.iter() {
            if crate::scheduler::docs::needs_validation(d) {
                let spec = crate::scheduler::docs::validate(d).map_err(|e| {
                    ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
                })?;
                let id = d.get("_id").and_then(Value::as_str).unwrap_or_default();
                specs.push((id.to_owned(), spec));
            }
        }
        refuse_field_loops(ctx, &specs)?;
        refuse_after_cycles(ctx, docs)?;
    }
    if db == super::auth::USERS_DB && new_edits {
        for d in docs.iter_mut() {
            super::auth::prepare_user_doc(d)?;
            if !req.user.is_server_admin() {
                let id = d.get("_id").and_then(Value::as_str).unwrap_or_default();
                let current = ctx.store.db(db)?.get(id, None, &ReadOpts::default()).ok();
                let old_roles = current
                    .as_ref()
                    .and_then(|c| c.get("roles"))
                    .cloned()
                    .unwrap_or(json!([]));
                if d.get("roles") != Some(&old_roles) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "Only server admins may change a user's roles.",
                    ));
                }
            }
        }
    }
    Ok(())
}

async fn bulk_docs(ctx: &Ctx, db: Arc<Database>, req: &Req) -> Result<Resp, ApiError> {
    let mut body = req.json_object()?;
    let new_edits = match body.get("new_edits") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("`new_edits` must be a boolean")),
    };
    let mut docs = match body.shift_remove("docs") {
        Some(Value::Array(d)) => d,
        _ => {
            return Err(ApiError::bad_request(
                "POST body must include `docs` parameter.",
            ))
        }
    };
    // As CouchDB, a document of the wrong shape refuses the whole request before anything
    // is written (conflicts and validation hooks still answer per document).
    for d in &docs {
        crate::store::check_shape(d, new_edits).map_err(crate::store::StoreError::from)?;
    }
    // In `_replicator` and `_users`, and for requests with design documents, each document
    // is checked on its own, and one that fails gets its error in its row while the others
    // are written, as CouchDB's validation hooks answer.
    let mut refused: Vec<Option<Value>> = Vec::new();
    // A design document a member may not write is refused in its row too, as CouchDB does,
    // so a whole-database push by a member still writes everything else.
    let has_design = docs.iter().any(|d| {
        d.get("_id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.starts_with("_design/"))
    });
    if crate::store::SYSTEM_DBS.contains(&db.name()) || has_design {
        let mut kept = Vec::with_capacity(docs.len());
        for mut d in docs {
            match prepare_writes(ctx, req, db.name(), std::slice::from_mut(&mut d), new_edits) {
                Ok(()) => {
                    kept.push(d);
                    refused.push(None);
                }
                Err(e) => refused.push(Some(
                    json!({"id": d.get("_id"), "error": e.error, "reason": e.reason}),
                )),
            }
        }
        docs = kept;
    } else {
        prepare_writes(ctx, req, db.name(), &mut docs, new_edits)?;
    }
    let out = blocking(move || Ok(db.bulk_docs(docs, new_edits)?)).await?;
    let mut written = out.into_iter().map(|o| match o.result {
        Ok(rev) => json!({"ok": true, "id": o.id, "rev": rev}),
        Err(e) => json!({"id": o.id, "error": e.error_tag(), "reason": e.to_string()}),
    });
    // Rows in the order of the request: a refused document's row where it stood.
    let rows: Vec<Value> = if refused.is_empty() {
        written.collect()
    } else {
        refused
            .into_iter()
            .filter_map(|r| r.or_else(|| written.next()))
            .collect()
    };
    // `new_edits=false` answers only the failures.
    let rows: Vec<Value> = rows
        .into_iter()
        .filter(|r| new_edits || r.get("error").is_some())
        .collect();
    Ok(json_resp(StatusCode::CREATED, &Value::Array(rows)))
}

fn bulk_get(db: Arc<Database>, req: &Req) -> Result<Resp, ApiError> {
    let body = req.json_object()?;
    let docs = body
        .get("docs")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_request("Missing JSON list of 'docs'."))?;
    let revs = req.flag("revs")? || body.get("revs") == Some(&Value::Bool(true));
    let latest = req.flag("latest")? || body.get("latest") == Some(&Value::Bool(true));
    let atts = req.flag("attachments")? || body.get("attachments") == Some(&Value::Bool(true));
    let mut out = b"{\"results\":[".to_vec();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let id = d
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let rev_s = d.get("rev").and_then(Value::as_str);
        let err = |rev: &str, error: &str, reason: &str| json!({"error": {"id": id, "rev": rev, "error": error, "reason": reason}});
        if id.is_empty() {
            let row = json!({"id": id, "docs": [err("undefined", "illegal_docid", "Document id must be a string")]});
            write_json(&mut out, &row)?;
            continue;
        }
        let since: Vec<Rev> = d
            .get("atts_since")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().and_then(|s| Rev::parse(s).ok()))
                    .collect()
            })
            .unwrap_or_default();
        let opts = ReadOpts {
            revs,
            attachments: if atts && since.is_empty() {
                AttMode::All
            } else if atts {
                AttMode::Since(since)
            } else {
                AttMode::Stubs
            },
            ..Default::default()
        };
        // Each answer is a document's JSON bytes (body spliced, not rebuilt) or an error.
        let answers: Vec<Result<Vec<u8>, Value>> = match rev_s {
            Some(r) => match Rev::parse(r) {
                Ok(rev) => match db.open_revs_bytes(&id, Some(&[rev]), latest, &opts) {
                    Ok(list) => list
                        .into_iter()
                        .map(|x| x.map_err(|missing| err(&missing, "not_found", "missing")))
                        .collect(),
                    Err(e) => vec![Err(err(r, "not_found", &ApiError::from(e).reason))],
                },
                Err(_) => vec![Err(err(r, "bad_request", "Invalid rev format"))],
            },
            // No `rev`: every leaf, deleted ones too, as CouchDB's `open_revs=all`.
            None => match db.open_revs_bytes(&id, None, latest, &opts) {
                Ok(list) => list
                    .into_iter()
                    .map(|x| x.map_err(|missing| err(&missing, "not_found", "missing")))
                    .collect(),
                Err(e) => vec![Err(err(
                    "undefined",
                    "not_found",
                    &ApiError::from(e).reason,
                ))],
            },
        };
        out.extend_from_slice(b"{\"id\":");
        write_json(&mut out, &Value::String(id))?;
        out.extend_from_slice(b",\"docs\":[");
        for (j, answer) in answers.into_iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            match answer {
                Ok(doc) => {
                    out.extend_from_slice(b"{\"ok\":");
                    out.extend_from_slice(&doc);
                    out.push(b'}');
                }
                Err(e) => write_json(&mut out, &e)?,
            }
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}\n");
    Ok(json_bytes_resp(StatusCode::OK, out))
}

/// Starts the next row of a `rows` array written as bytes: one row per line, as CouchDB.
fn next_row(out: &mut Vec<u8>, n: &mut usize) {
    out.extend_from_slice(if *n == 0 { b"\n" } else { b",\n" });
    *n += 1;
}

/// `GET /{db}/_local_docs`: the `_local` documents, as CouchDB 3 lists them (no totals;
/// `include_docs`, `descending`, `startkey`/`endkey`, `limit` and `skip`).
fn local_docs(db: &Database, req: &Req) -> Result<Resp, ApiError> {
    let include_docs = req.flag("include_docs")?;
    let mut docs = db.local_docs()?;
    if req.flag("descending")? {
        docs.reverse();
    }
    let key = |names: [&str; 2]| -> Result<Option<String>, ApiError> {
        for n in names {
            if let Some(v) = req.json_param(n)? {
                return v.as_str().map(|s| Some(s.to_owned())).ok_or_else(|| {
                    ApiError::bad_request(format!("{n} must be a JSON string for _local_docs"))
                });
            }
        }
        Ok(None)
    };
    let (start, end) = (key(["startkey", "start_key"])?, key(["endkey", "end_key"])?);
    let descending = req.flag("descending")?;
    let number = |n: &str| -> Result<Option<usize>, ApiError> {
        req.param(n)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    ApiError::bad_request(format!("{n} must be a non-negative integer"))
                })
            })
            .transpose()
    };
    let rows: Vec<Value> = docs
        .into_iter()
        .filter(|d| {
            let id = d["_id"].as_str().unwrap_or_default();
            let after = |a: &str, b: &str| if descending { a <= b } else { a >= b };
            start.as_deref().is_none_or(|s| after(id, s))
                && end.as_deref().is_none_or(|e| after(e, id))
        })
        .skip(number("skip")?.unwrap_or(0))
        .take(number("limit")?.unwrap_or(usize::MAX))
        .map(|d| {
            let mut row = json!({"id": d["_id"], "key": d["_id"], "value": {"rev": d["_rev"]}});
            if include_docs {
                row["doc"] = d;
            }
            row
        })
        .collect();
    Ok(json_resp(
        StatusCode::OK,
        &json!({"total_rows": null, "offset": null, "rows": rows}),
    ))
}

fn all_docs(db: Arc<Database>, req: &Req) -> Result<Resp, ApiError> {
    let body = if req.method == Method::POST {
        Some(req.json_object()?)
    } else {
        None
    };
    let opt = |name: &str| -> Result<Option<Value>, ApiError> {
        if let Some(v) = body.as_ref().and_then(|b| b.get(name)) {
            return Ok(Some(v.clone()));
        }
        req.json_param(name)
    };
    let include_docs = req.flag("include_docs")? || opt("include_docs")? == Some(Value::Bool(true));
    let descending = req.flag("descending")? || opt("descending")? == Some(Value::Bool(true));
    let mut inclusive_end = opt("inclusive_end")? != Some(Value::Bool(false));
    let count = |name: &str| -> Result<Option<usize>, ApiError> {
        opt(name)?
            .map(|v| {
                v.as_u64().map(|n| n as usize).ok_or_else(|| {
                    ApiError::bad_request(format!("{name} must be a non-negative integer"))
                })
            })
            .transpose()
    };
    let limit = count("limit")?.unwrap_or(usize::MAX);
    let skip = count("skip")?.unwrap_or(0);
    let key_str = |names: &[&str]| -> Result<Option<String>, ApiError> {
        for n in names {
            if let Some(v) = opt(n)? {
                return match v {
                    Value::String(s) => Ok(Some(s)),
                    _ => Err(ApiError::bad_request(format!(
                        "{n} must be a JSON string for _all_docs"
                    ))),
                };
            }
        }
        Ok(None)
    };
    let keys = opt("keys")?;
    if keys.is_some()
        && ["key", "startkey", "start_key", "endkey", "end_key"]
            .iter()
            .any(|k| opt(k).is_ok_and(|v| v.is_some()))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "query_parse_error",
            "`keys` is incompatible with `key`, `start_key` and `end_key`",
        ));
    }
    let flag = |name: &str| -> Result<bool, ApiError> {
        Ok(req.flag(name)? || opt(name)? == Some(Value::Bool(true)))
    };
    // How included documents are read: `conflicts` and `attachments` as for a single read.
    let read = ReadOpts {
        conflicts: flag("conflicts")?,
        attachments: if flag("attachments")? {
            AttMode::All
        } else {
            AttMode::Stubs
        },
        ..ReadOpts::default()
    };
    // `key` is the range from that id to that id.
    let (start, end) = match key_str(&["key"])? {
        Some(k) => {
            inclusive_end = true;
            (Some(k.clone()), Some(k))
        }
        None => (
            key_str(&["startkey", "start_key", "startkey_docid"])?,
            key_str(&["endkey", "end_key", "endkey_docid"])?,
        ),
    };
    let info = db.info()?;
    let total = info.doc_count;
    // Rows are written as bytes, each document's body spliced in from the store.
    let mut out = format!("{{\"total_rows\":{total},\"offset\":{skip},").into_bytes();
    if flag("update_seq")? {
        out.extend_from_slice(format!("\"update_seq\":{},", seq_json(info.update_seq)).as_bytes());
    }
    out.extend_from_slice(b"\"rows\":[");
    let mut n = 0usize;
    let row_for =
        |out: &mut Vec<u8>, id: &str, stored: &crate::store::Doc| -> Result<(), ApiError> {
            let w = stored
                .winner()
                .ok_or_else(|| ApiError::not_found("missing"))?;
            let rev = w.rev().to_string();
            let mut row = json!({"id": id, "key": id, "value": {"rev": rev}});
            if w.deleted() {
                row["value"]["deleted"] = json!(true);
                if include_docs {
                    row["doc"] = Value::Null;
                }
            }
            write_json(out, &row)?;
            if include_docs && !w.deleted() {
                out.pop(); // the row's closing brace: the doc goes inside
                out.extend_from_slice(b",\"doc\":");
                db.write_doc(out, id, stored, w, &read)?;
                out.push(b'}');
            }
            Ok(())
        };
    if let Some(keys) = keys {
        let keys = keys
            .as_array()
            .ok_or_else(|| ApiError::bad_request("`keys` must be an array"))?;
        for k in keys.iter().skip(skip).take(limit) {
            next_row(&mut out, &mut n);
            match k.as_str() {
                Some(id) => match db.doc(id)? {
                    Some(stored) => row_for(&mut out, id, &stored)?,
                    None => write_json(&mut out, &json!({"key": id, "error": "not_found"}))?,
                },
                None => write_json(&mut out, &json!({"key": k, "error": "not_found"}))?,
            }
        }
    } else {
        let start = start.unwrap_or_default();
        let mut skipped = 0;
        for r in db.docs_from(&start, descending) {
            let (id, rec) = r?;
            if let Some(end) = &end {
                let past = if descending {
                    id.as_str() < end.as_str()
                } else {
                    id.as_str() > end.as_str()
                };
                if past || (!inclusive_end && id == *end) {
                    break;
                }
            }
            if rec.is_deleted() {
                continue;
            }
            if skipped < skip {
                skipped += 1;
                continue;
            }
            if n >= limit {
                break;
            }
            next_row(&mut out, &mut n);
            row_for(&mut out, &id, &rec)?;
        }
    }
    out.extend_from_slice(b"\n]}\n");
    Ok(json_bytes_resp(StatusCode::OK, out))
}

/// Parses a JSON body that must be an object mapping ids to revision lists
/// (`_revs_diff`, `_purge`).
fn id_revs(
    body: &serde_json::Map<String, Value>,
) -> Result<Vec<(String, Vec<crate::store::Rev>)>, ApiError> {
    body.iter()
        .map(|(id, revs)| {
            let revs = revs
                .as_array()
                .ok_or_else(|| {
                    ApiError::bad_request(format!("revisions of {id:?} must be an array"))
                })?
                .iter()
                .map(|r| {
                    r.as_str()
                        .ok_or_else(|| ApiError::bad_request("revisions must be strings"))
                        .and_then(|s| crate::store::Rev::parse(s).map_err(ApiError::from))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((id.clone(), revs))
        })
        .collect()
}
