//! Document endpoints: `/{db}/{docid}`, `/{db}/_local/{id}`, `/{db}/{docid}/{attachment}`.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::body::Body;
use super::db_api::blocking;
use super::error::ApiError;
use super::request::{json_resp, resp, Req, Resp};
use super::Ctx;
use crate::store::{AttInput, AttMode, Database, DocUpdate, ReadOpts, Rev};

fn rev_param(req: &Req) -> Result<Option<Rev>, ApiError> {
    let from_header = req
        .headers
        .get(hyper::header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_owned());
    match req.param("rev").map(str::to_owned).or(from_header) {
        Some(r) => Ok(Some(Rev::parse(&r)?)),
        None => Ok(None),
    }
}

fn read_opts(req: &Req) -> Result<ReadOpts, ApiError> {
    let attachments = if req.flag("attachments")? {
        AttMode::All
    } else if let Some(since) = req.json_param("atts_since")? {
        let revs = since
            .as_array()
            .ok_or_else(|| ApiError::bad_request("atts_since must be a JSON array"))?
            .iter()
            .filter_map(|r| r.as_str().and_then(|s| Rev::parse(s).ok()))
            .collect();
        AttMode::Since(revs)
    } else {
        AttMode::Stubs
    };
    Ok(ReadOpts {
        revs: req.flag("revs")?,
        revs_info: req.flag("revs_info")?,
        conflicts: req.flag("conflicts")?,
        deleted_conflicts: req.flag("deleted_conflicts")?,
        local_seq: req.flag("local_seq")?,
        attachments,
    })
}

pub async fn doc(ctx: &Arc<Ctx>, db: &str, id: &str, req: &Req) -> Result<Resp, ApiError> {
    let db = ctx.store.db(db)?;
    match req.method {
        Method::GET | Method::HEAD => {
            let mut opts = read_opts(req)?;
            if let Some(open) = req.param("open_revs") {
                let multipart = req.accepts("multipart/mixed") && !req.accepts("application/json");
                // As CouchDB: a multipart answer always carries attachment bodies (only
                // `atts_since` limits them), whatever `attachments` says; its replicator
                // asks without `attachments=true` and would read stubs as missing data.
                if multipart && matches!(opts.attachments, AttMode::Stubs) {
                    opts.attachments = AttMode::All;
                }
                let revs = if open == "all" {
                    None
                } else {
                    let list = req
                        .json_param("open_revs")?
                        .and_then(|v| v.as_array().cloned())
                        .ok_or_else(|| {
                            ApiError::bad_request(
                                "open_revs must be \"all\" or a JSON array of revisions",
                            )
                        })?;
                    Some(
                        list.iter()
                            .map(|r| {
                                Rev::parse(r.as_str().unwrap_or_default()).map_err(ApiError::from)
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    )
                };
                let latest = req.flag("latest")?;
                let res = match db.open_revs(id, revs.as_deref(), latest, &opts) {
                    Ok(r) => r,
                    Err(crate::store::StoreError::NotFound(_)) if revs.is_none() => Vec::new(),
                    Err(e) => return Err(e.into()),
                };
                if multipart {
                    return Ok(multipart_open_revs(res));
                }
                let out: Vec<Value> = res
                    .into_iter()
                    .map(|r| match r {
                        Ok(doc) => super::request::obj([("ok", doc)]),
                        Err(missing) => json!({"missing": missing}),
                    })
                    .collect();
                return Ok(json_resp(StatusCode::OK, &Value::Array(out)));
            }
            let rev = rev_param(req)?;
            let doc = db.get(id, rev.as_ref(), &opts)?;
            let etag = doc["_rev"]
                .as_str()
                .map(|r| format!("\"{r}\""))
                .unwrap_or_default();
            let mut resp = json_resp(StatusCode::OK, &doc);
            if let Ok(v) = etag.parse() {
                resp.headers_mut().insert(hyper::header::ETAG, v);
            }
            Ok(resp)
        }
        Method::PUT => {
            let boundary = req
                .headers
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(super::multipart::related_boundary);
            let mut body = match boundary {
                Some(b) => super::multipart::related_to_json(&req.body, &b)?,
                None => req.json_object()?,
            };
            if let Some(r) = rev_param(req)? {
                body.entry("_rev").or_insert(json!(r.to_string()));
            }
            body.insert("_id".into(), json!(id));
            let new_edits = req.param("new_edits") != Some("false");
            let mut doc = Value::Object(body);
            super::db_api::prepare_writes(
                ctx,
                req,
                db.name(),
                std::slice::from_mut(&mut doc),
                new_edits,
            )?;
            write_one(db, doc, new_edits).await
        }
        Method::DELETE => {
            let rev = rev_param(req)?.ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "Document update conflict.",
                )
            })?;
            let doc = json!({"_id": id, "_rev": rev.to_string(), "_deleted": true});
            write_one(db, doc, true).await
        }
        _ => Err(ApiError::method_not_allowed("DELETE,GET,HEAD,PUT")),
    }
}

async fn write_one(
    db: Arc<crate::store::Database>,
    doc: Value,
    new_edits: bool,
) -> Result<Resp, ApiError> {
    let out = blocking(move || Ok(db.bulk_docs(vec![doc], new_edits)?)).await?;
    let o = out
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::bad_request("no document"))?;
    let rev = o.result?;
    let mut resp = json_resp(
        StatusCode::CREATED,
        &json!({"ok": true, "id": o.id, "rev": rev}),
    );
    if let Ok(v) = format!("\"{rev}\"").parse() {
        resp.headers_mut().insert(hyper::header::ETAG, v);
    }
    Ok(resp)
}

pub async fn local(ctx: &Arc<Ctx>, db: &str, id: &str, req: &Req) -> Result<Resp, ApiError> {
    let db = ctx.store.db(db)?;
    match req.method {
        Method::GET | Method::HEAD => {
            let doc = db
                .get_local(id)?
                .ok_or_else(|| ApiError::not_found("missing"))?;
            Ok(json_resp(StatusCode::OK, &doc))
        }
        Method::PUT => {
            let mut body = req.json_object()?;
            if let Some(r) = req.param("rev") {
                body.entry("_rev").or_insert(json!(r));
            }
            body.insert("_id".into(), json!(id));
            write_one(db, Value::Object(body), true).await
        }
        Method::DELETE => {
            let mut doc = json!({"_id": id, "_deleted": true});
            if let Some(r) = req.param("rev") {
                doc["_rev"] = json!(r);
            } else if let Some(cur) = db.get_local(id)? {
                doc["_rev"] = cur["_rev"].clone();
            }
            write_one(db, doc, true).await
        }
        _ => Err(ApiError::method_not_allowed("DELETE,GET,HEAD,PUT")),
    }
}

pub async fn attachment(
    ctx: &Arc<Ctx>,
    db: &str,
    id: &str,
    name: &str,
    req: &Req,
) -> Result<Resp, ApiError> {
    let db = ctx.store.db(db)?;
    match req.method {
        Method::GET | Method::HEAD => {
            let rev = rev_param(req)?;
            let (meta, data) = db.attachment(id, rev.as_ref(), name)?;
            hyper::Response::builder()
                .status(StatusCode::OK)
                .header("content-type", meta.content_type)
                .header("etag", format!("\"{}\"", meta.digest))
                .body(Body::from_bytes(data.to_vec()))
                .map_err(|_| ApiError::bad_request("bad attachment headers"))
        }
        Method::PUT | Method::DELETE => {
            let rev = rev_param(req)?;
            let mut doc = match &rev {
                Some(r) => {
                    let cur = db.get(id, Some(r), &ReadOpts::default());
                    match cur {
                        Ok(Value::Object(m)) => m,
                        Ok(_) => Map::new(),
                        Err(crate::store::StoreError::NotFound(_)) => {
                            return Err(ApiError::new(
                                StatusCode::CONFLICT,
                                "conflict",
                                "Document update conflict.",
                            ))
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                None => Map::new(),
            };
            let mut atts = match doc.shift_remove("_attachments") {
                Some(Value::Object(a)) => a,
                _ => Map::new(),
            };
            let mut upd = DocUpdate::from_json(Value::Object(doc), Some(id.to_owned()))?;
            upd.rev = rev;
            upd.attachments = atts
                .iter_mut()
                .filter(|(n, _)| n.as_str() != name)
                .map(|(n, _)| {
                    (
                        n.clone(),
                        AttInput::Stub {
                            digest: None,
                            revpos: None,
                        },
                    )
                })
                .collect();
            if req.method == Method::PUT {
                let ct = req
                    .headers
                    .get(hyper::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                upd.attachments.push((
                    name.to_owned(),
                    AttInput::Data {
                        content_type: ct,
                        data: req.body.to_vec(),
                        revpos: None,
                    },
                ));
            } else if !atts.contains_key(name) {
                return Err(ApiError::not_found("Document is missing attachment"));
            }
            let out = blocking(move || Ok(db.put(upd)?)).await?;
            Ok(json_resp(
                StatusCode::CREATED,
                &json!({"ok": true, "id": id, "rev": out}),
            ))
        }
        _ => Err(ApiError::method_not_allowed("DELETE,GET,HEAD,PUT")),
    }
}

/// `open_revs` as `multipart/mixed`, for clients that ask for it (CouchDB's replicator does):
/// one `application/json` part per revision, attachments inline; a missing revision is a part
/// `{"missing": rev}`.
fn multipart_open_revs(res: Vec<Result<Value, String>>) -> Resp {
    let boundary = crate::ids::new_uuid();
    let mut body = Vec::new();
    for r in res {
        let part = match r {
            Ok(doc) => doc,
            Err(missing) => json!({"missing": missing}),
        };
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/json\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(part.to_string().as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--").as_bytes());
    resp(
        StatusCode::OK,
        &format!("multipart/mixed; boundary=\"{boundary}\""),
        Body::from_bytes(body),
    )
}

/// `/{db}/_design/{name}/_view/…` and the other JavaScript functions of a design document
/// (`_show`, `_list`, `_update`, `_rewrite`, search indexes). settee stores and replicates
/// design documents as they are but runs no JavaScript, so these fail the way CouchDB fails
/// for what is not there: 404 when the design document or the named function is missing,
/// else 501 `not_implemented` saying so (never "missing attachment").
pub fn design_function(
    db: &Database,
    name: &str,
    kind: &str,
    rest: &[&str],
) -> Result<Resp, ApiError> {
    let member = match kind {
        "_view" => "views",
        "_show" => "shows",
        "_list" => "lists",
        "_update" => "updates",
        "_rewrite" => "rewrites",
        "_search" | "_search_info" => "indexes",
        "_nouveau" | "_nouveau_info" => "nouveau",
        "_info" => "views",
        other => {
            return Err(ApiError::not_found(format!(
                "{other} is not a design document endpoint"
            )))
        }
    };
    let ddoc = db.get(&format!("_design/{name}"), None, &ReadOpts::default())?;
    let function = rest.first().copied().unwrap_or_default();
    if kind != "_info" && kind != "_rewrite" && ddoc[member].get(function).is_none() {
        return Err(ApiError::not_found(if kind == "_view" {
            "missing_named_view".to_owned()
        } else {
            format!("missing {member} function {function:?} in _design/{name}")
        }));
    }
    Err(ApiError::no_javascript(
        member,
        name,
        "query with _find and an index instead",
    ))
}
