//! `/_sharing`: shares as one object (server admins only, checked by `auth::authorize`).

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::error::ApiError;
use super::request::{json_resp, Req, Resp};
use super::Ctx;
use crate::sharing::Purge;

pub async fn handle(ctx: &Arc<Ctx>, rest: &[&str], req: &Req) -> Result<Resp, ApiError> {
    let sharing = &ctx.sharing;
    match (rest, &req.method) {
        ([], &Method::GET) => {
            let shares = sharing.list().map_err(ApiError::from)?;
            Ok(json_resp(
                StatusCode::OK,
                &json!({"total_rows": shares.len(), "shares": shares}),
            ))
        }
        ([], &Method::POST) => {
            let body = req.json()?.unwrap_or(Value::Null);
            let out = sharing.create(&body).await.map_err(ApiError::from)?;
            Ok(json_resp(StatusCode::CREATED, &out))
        }
        ([id], &Method::GET) => Ok(json_resp(
            StatusCode::OK,
            &sharing.describe(id).map_err(ApiError::from)?,
        )),
        ([id], &Method::PUT) => {
            let body = req.json()?.unwrap_or(Value::Null);
            Ok(json_resp(
                StatusCode::OK,
                &sharing.update(id, &body).await.map_err(ApiError::from)?,
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
                    .map_err(ApiError::from)?,
            ))
        }
        ([id, "pending"], &Method::GET) => {
            let limit = req.uint("limit")?.unwrap_or(100) as usize;
            Ok(json_resp(
                StatusCode::OK,
                &sharing.pending(id, limit).await.map_err(ApiError::from)?,
            ))
        }
        ([] | [_], _) => Err(ApiError::method_not_allowed("GET,POST,PUT,DELETE")),
        _ => Err(ApiError::not_found("use /_sharing or /_sharing/{id}")),
    }
}
