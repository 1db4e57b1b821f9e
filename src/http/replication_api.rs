//! `POST /_replicate`, `GET /_scheduler/{jobs,docs}` and `GET /_active_tasks`: the scheduler's
//! endpoints, all server-admin only (checked by `auth::authorize`).

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::error::repl_error;
use super::error::ApiError;
use super::request::{json_resp, Req, Resp};
use super::Ctx;
use crate::replicator::Spec;
use crate::scheduler::docs::REPLICATOR_DB;
use crate::scheduler::status;

/// The JSON object a replication `POST` carries.
fn post_body(req: &Req) -> Result<Value, ApiError> {
    if req.method != Method::POST {
        return Err(ApiError::method_not_allowed("POST"));
    }
    req.json()?
        .filter(Value::is_object)
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))
}

pub async fn replicate(ctx: &Arc<Ctx>, req: &Req) -> Result<Resp, ApiError> {
    let body = post_body(req)?;
    let admin = req.user.is_server_admin();
    if !admin && body.get("cancel") == Some(&Value::Bool(true)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only server admins cancel replications",
        ));
    }
    if body.get("cancel") == Some(&Value::Bool(true)) {
        let id = match body
            .get("replication_id")
            .or_else(|| body.get("id"))
            .and_then(Value::as_str)
        {
            Some(id) => id.to_owned(),
            None => {
                let spec = Spec::parse(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
                crate::replicator::id::replication_id(&spec, ctx.store.uuid()).full
            }
        };
        return match ctx.scheduler.cancel_transient(&id) {
            Some(id) => Ok(json_resp(
                StatusCode::OK,
                &json!({"ok": true, "_local_id": id}),
            )),
            None => Err(ApiError::not_found(format!(
                "no replication {id:?} started by _replicate is running"
            ))),
        };
    }
    if let Some(k) = crate::replicator::spec::DOCUMENT_ONLY_KEYS
        .iter()
        .find(|k| body.get(**k).is_some())
    {
        return Err(ApiError::bad_request(format!(
            "`{k}` works in a _replicator document, where the scheduler keeps it; /_replicate runs once, now"
        )));
    }
    let spec = Spec::parse(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // A user who is not a server admin reaches databases only as any client would, by URL
    // with credentials, so `_security` applies to them (CouchDB 3 has no local names at all).
    if !admin
        && [&spec.source, &spec.target]
            .iter()
            .any(|e| matches!(e, crate::replicator::Endpoint::Local(_)))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "local_endpoints_not_supported: name both databases by URL (http://user:pass@host/db); only server admins may replicate local databases by name",
        ));
    }
    let (id, done) = ctx
        .scheduler
        .add_transient(spec)
        .map_err(|reason| ApiError::new(StatusCode::CONFLICT, "conflict", reason))?;
    match done {
        None => Ok(json_resp(
            StatusCode::ACCEPTED,
            &json!({"ok": true, "_local_id": id}),
        )),
        Some(rx) => match rx.await {
            Ok(Ok(out)) => Ok(json_resp(StatusCode::OK, &out.report)),
            Ok(Err(e)) => Err(repl_error(&e)),
            Err(_) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "replication_failed",
                "the scheduler stopped",
            )),
        },
    }
}

/// `POST /_replicate/_preview`: what a one-shot replication with this body would send,
/// written nowhere. Paged with `?limit=` (documents, default 100) and `?since=`.
pub async fn preview(ctx: &Arc<Ctx>, req: &Req) -> Result<Resp, ApiError> {
    let body = post_body(req)?;
    let spec = Spec::parse(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let limit = req.uint("limit")?.unwrap_or(100) as usize;
    let since = req
        .param("since")
        .map(|s| serde_json::from_str(s).unwrap_or_else(|_| json!(s)));
    let out = crate::replicator::preview::preview(&spec, &ctx.scheduler.env, since, limit)
        .await
        .map_err(|e| repl_error(&e))?;
    Ok(json_resp(StatusCode::OK, &out))
}

/// `POST /_replicator/_validate`: what `settee doc check` says of the body, written nowhere.
/// Always 200 when the body is JSON: the verdict is in `ok`, `errors` and `warnings`.
pub fn validate(req: &Req) -> Result<Resp, ApiError> {
    let body = post_body(req)?;
    let verdict = crate::scheduler::check::check(&body);
    Ok(json_resp(StatusCode::OK, &verdict.to_json()))
}

fn page(req: &Req, rows: Vec<Value>, key: &str) -> Result<Resp, ApiError> {
    let total = rows.len();
    let skip = req.uint("skip")?.unwrap_or(0) as usize;
    let limit = req.uint("limit")?.unwrap_or(u64::MAX) as usize;
    let rows: Vec<Value> = rows.into_iter().skip(skip).take(limit).collect();
    Ok(json_resp(
        StatusCode::OK,
        &json!({"total_rows": total, "offset": skip, key: rows}),
    ))
}

pub fn scheduler(ctx: &Arc<Ctx>, rest: &[&str], req: &Req) -> Result<Resp, ApiError> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(ApiError::method_not_allowed("GET"));
    }
    let states: Option<Vec<String>> = match req.param("states") {
        None => None,
        Some(s) => {
            let list: Vec<String> = s.split(',').map(|x| x.trim().to_owned()).collect();
            const KNOWN: [&str; 7] = [
                "initializing",
                "error",
                "running",
                "pending",
                "crashing",
                "completed",
                "failed",
            ];
            if let Some(bad) = list.iter().find(|x| !KNOWN.contains(&x.as_str())) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "query_parse_error",
                    format!(
                        "Unknown replication state {bad:?}; use {}",
                        KNOWN.join(", ")
                    ),
                ));
            }
            Some(list)
        }
    };
    ctx.scheduler.with_state(|st| match rest {
        ["jobs"] => page(
            req,
            st.jobs.values().map(status::job_json).collect(),
            "jobs",
        ),
        ["jobs", id] => st
            .jobs
            .get(*id)
            .map(|j| json_resp(StatusCode::OK, &status::job_json(j)))
            .ok_or_else(|| ApiError::not_found("unknown job id")),
        ["docs"] | ["docs", REPLICATOR_DB] => {
            let rows: Vec<Value> = st
                .docs
                .values()
                .map(|d| status::doc_json(st, d))
                .filter(|d| {
                    states.as_ref().is_none_or(|s| {
                        d["state"]
                            .as_str()
                            .is_some_and(|x| s.iter().any(|y| y == x))
                    })
                })
                .collect();
            page(req, rows, "docs")
        }
        ["docs", REPLICATOR_DB, id] => st
            .docs
            .get(*id)
            .map(|d| json_resp(StatusCode::OK, &status::doc_json(st, d)))
            .ok_or_else(|| ApiError::not_found("unknown document")),
        ["docs", db, ..] => Err(ApiError::not_found(format!(
            "{db:?} is not a replicator database; settee has one, {REPLICATOR_DB}"
        ))),
        _ => Err(ApiError::not_found(
            "use /_scheduler/jobs or /_scheduler/docs",
        )),
    })
}

pub fn active_tasks(ctx: &Arc<Ctx>) -> Resp {
    let tasks = ctx.scheduler.with_state(status::active_tasks);
    json_resp(StatusCode::OK, &Value::Array(tasks))
}
