//! Routing: reads the body (bounded), checks auth, dispatches on path segments.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine;
use http_body_util::{BodyExt, Limited};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::error::ApiError;
use super::request::{error_resp, json_resp, parse_query, percent_decode, Req, Resp};
use super::{changes, db_api, doc_api, find_api, Ctx};

pub async fn handle(
    ctx: Arc<Ctx>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let limit = ctx.cfg.max_body_bytes;
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Ok(error_resp(&ApiError::too_large(limit)))
        }
        Err(_) => {
            return Ok(error_resp(&ApiError::bad_request(
                "could not read the request body",
            )))
        }
    };
    let path = parts.uri.path();
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let req = Req {
        method: parts.method,
        segments,
        query: parse_query(parts.uri.query()),
        headers: parts.headers,
        body,
    };
    let head = req.method == Method::HEAD;
    let resp = match route(&ctx, req).await {
        Ok(r) => r,
        Err(e) => error_resp(&e),
    };
    if head {
        let (mut parts, _) = resp.into_parts();
        parts.headers.remove("content-length");
        return Ok(hyper::Response::from_parts(
            parts,
            super::body::Body::empty(),
        ));
    }
    Ok(resp)
}

/// Server admin check: with an admin configured every request but the welcome and `_up`
/// needs its Basic credentials; without one (admin party) the server only listens on loopback.
fn authorize(ctx: &Ctx, req: &Req) -> Result<(), ApiError> {
    let Some((user, pass)) = &ctx.cfg.admin else {
        return Ok(());
    };
    let public = req.segments.is_empty() || req.segments == ["_up"];
    if public {
        return Ok(());
    }
    let given = req
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    match given {
        Some(g) if g.split_once(':') == Some((user.as_str(), pass.as_str())) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("Name or password is incorrect.")),
        None => Err(ApiError::unauthorized("You are not a server admin.")),
    }
}

async fn route(ctx: &Arc<Ctx>, req: Req) -> Result<Resp, ApiError> {
    authorize(ctx, &req)?;
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    match seg.as_slice() {
        [] => Ok(welcome(ctx)),
        ["_up"] => Ok(json_resp(StatusCode::OK, &json!({"status": "ok"}))),
        ["_all_dbs"] => {
            let dbs = ctx.store.all_dbs()?;
            Ok(json_resp(StatusCode::OK, &json!(dbs)))
        }
        ["_uuids"] => {
            let n = req.uint("count")?.unwrap_or(1).min(1000);
            let uuids: Vec<String> = (0..n).map(|_| crate::store::database::new_uuid()).collect();
            Ok(json_resp(StatusCode::OK, &json!({"uuids": uuids})))
        }
        [s, ..] if s.starts_with('_') && !crate::store::SYSTEM_DBS.contains(s) => Err(
            ApiError::new(StatusCode::BAD_REQUEST, "illegal_database_name", format!("Name: '{s}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.")),
        ),
        [db] => db_api::database(ctx, db, &req).await,
        [db, "_changes"] => changes::handle(ctx, db, &req).await,
        [db, "_find"] => find_api::find(ctx, db, &req).await,
        [db, "_explain"] => find_api::explain(ctx, db, &req).await,
        [db, "_index", rest @ ..] => find_api::index(ctx, db, rest, &req).await,
        [db, "_local", id] => doc_api::local(ctx, db, &format!("_local/{id}"), &req).await,
        [db, "_design", name] => doc_api::doc(ctx, db, &format!("_design/{name}"), &req).await,
        [db, "_design", name, att @ ..] => {
            doc_api::attachment(ctx, db, &format!("_design/{name}"), &att.join("/"), &req).await
        }
        [db, special] if special.starts_with('_') => db_api::special(ctx, db, special, &req).await,
        [db, id] => doc_api::doc(ctx, db, id, &req).await,
        [db, id, att @ ..] => doc_api::attachment(ctx, db, id, &att.join("/"), &req).await,
    }
}

fn welcome(ctx: &Ctx) -> Resp {
    json_resp(
        StatusCode::OK,
        &json!({
            "couchdb": "Welcome",
            "version": "3.5.0",
            "git_sha": "settee",
            "uuid": ctx.store.uuid(),
            "features": ["access-ready", "partitioned", "pluggable-storage-engines", "reshard", "scheduler"],
            "vendor": {"name": "settee", "version": env!("CARGO_PKG_VERSION")}
        }),
    )
}

/// Parses a JSON body that must be an object mapping ids to revision lists
/// (`_revs_diff`, `_purge`).
pub fn id_revs(
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
