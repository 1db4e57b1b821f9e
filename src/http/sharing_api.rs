//! `/_sharing`: shares as one object (server admins only, checked by `auth::authorize`).

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::error::ApiError;
use super::request::{json_resp, Req, Resp};
use super::Ctx;
use crate::sharing::{Purge, ShareError};

/// The one mapping of share errors to HTTP answers.
fn share_error(e: ShareError) -> ApiError {
    match e {
        ShareError::BadRequest(r) => ApiError::bad_request(r),
        ShareError::NotFound(r) => ApiError::not_found(r),
        ShareError::Conflict(r) => ApiError::new(StatusCode::CONFLICT, "conflict", r),
        // The peer is the problem, not this server: a 4xx the caller can act on.
        ShareError::Unreachable(r) => ApiError::new(StatusCode::BAD_REQUEST, "bad_peer", r),
        ShareError::Store(s) => s.into(),
    }
}

pub async fn handle(ctx: &Arc<Ctx>, rest: &[&str], req: &Req) -> Result<Resp, ApiError> {
    let sharing = &ctx.sharing;
    match (rest, &req.method) {
        ([], &Method::GET) => {
            let shares = sharing.list().map_err(share_error)?;
            Ok(json_resp(
                StatusCode::OK,
                &json!({"total_rows": shares.len(), "shares": shares}),
            ))
        }
        ([], &Method::POST) => {
            let body = req.json()?.unwrap_or(Value::Null);
            let out = sharing.create(&body).await.map_err(share_error)?;
            Ok(json_resp(StatusCode::CREATED, &out))
        }
        ([id], &Method::GET) => Ok(json_resp(
            StatusCode::OK,
            &sharing.describe(id).map_err(share_error)?,
        )),
        ([id], &Method::PUT) => {
            let body = req.json()?.unwrap_or(Value::Null);
            Ok(json_resp(
                StatusCode::OK,
                &sharing.update(id, &body).await.map_err(share_error)?,
            ))
        }
        ([id], &Method::DELETE) => {
            let purge = match req.param("purge") {
                None | Some("false") => Purge::No,
                Some("true") => Purge::Received,
                Some("all") => Purge::All,
                Some(p) => {
                    return Err(ApiError::bad_request(format!(
                        "purge={p:?}: use true (what arrived through the share) or all"
                    )))
                }
            };
            let dry_run = req.flag("dry_run")?;
            Ok(json_resp(
                StatusCode::OK,
                &sharing
                    .stop(id, purge, dry_run)
                    .await
                    .map_err(share_error)?,
            ))
        }
        ([id, "pending"], &Method::GET) => {
            let limit = req.uint("limit")?.unwrap_or(100) as usize;
            Ok(json_resp(
                StatusCode::OK,
                &sharing.pending(id, limit).await.map_err(share_error)?,
            ))
        }
        ([] | [_], _) => Err(ApiError::method_not_allowed("GET,POST,PUT,DELETE")),
        _ => Err(ApiError::not_found("use /_sharing or /_sharing/{id}")),
    }
}
