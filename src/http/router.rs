//! Routing: reads the body (bounded), checks auth, dispatches on path segments.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::error::ApiError;
use super::request::{error_resp, json_resp, parse_query, percent_decode, Req, Resp};
use super::{
    auth, changes, conflicts_api, db_api, doc_api, find_api, replication_api, sharing_api, Ctx,
};
use crate::metrics::Family;

pub async fn handle(
    ctx: Arc<Ctx>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<Resp, Infallible> {
    let started = std::time::Instant::now();
    let (resp, family) = answer(&ctx, req).await;
    ctx.metrics
        .request(family, resp.status().as_u16(), started.elapsed());
    Ok(resp)
}

/// The response to one request and the family it is counted under.
async fn answer(ctx: &Arc<Ctx>, req: hyper::Request<hyper::body::Incoming>) -> (Resp, Family) {
    let (parts, body) = req.into_parts();
    if let Err(e) = super::limits::check_head(&parts) {
        return (error_resp(&e), Family::Other);
    }
    let body = match super::limits::read_body(body, ctx.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return (error_resp(&e), Family::Other),
    };
    let path = parts.uri.path();
    let segments: Option<Vec<String>> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let (Some(segments), Some(query)) = (segments, parse_query(parts.uri.query())) else {
        let e = ApiError::bad_request(
            "the URL is not UTF-8 once percent-decoded (ids, names and parameters are UTF-8)",
        );
        return (error_resp(&e), Family::Other);
    };
    let family = Family::of(&segments);
    let req = Req {
        method: parts.method,
        segments,
        query,
        headers: parts.headers,
        body,
        trailing_slash: path.ends_with('/'),
        user: Default::default(),
    };
    let head = req.method == Method::HEAD;
    let resp = match route(ctx, req).await {
        Ok(r) => r,
        Err(e) => error_resp(&e),
    };
    if head {
        let (mut parts, _) = resp.into_parts();
        parts.headers.remove("content-length");
        let empty = hyper::Response::from_parts(parts, super::body::Body::empty());
        return (empty, family);
    }
    (resp, family)
}

async fn route(ctx: &Arc<Ctx>, mut req: Req) -> Result<Resp, ApiError> {
    if ctx.cfg.admin.is_none() {
        auth::check_origin(&req)?;
    }
    req.user = auth::authenticate(ctx, &req)?;
    auth::authorize(ctx, &req.user, &req)?;
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let read_only = || match req.method {
        Method::GET | Method::HEAD => Ok(()),
        _ => Err(ApiError::method_not_allowed("GET,HEAD")),
    };
    match seg.as_slice() {
        [] => read_only().map(|_| welcome(ctx)),
        ["_up"] => read_only().map(|_| json_resp(StatusCode::OK, &json!({"status": "ok"}))),
        ["_session"] => session(ctx, &req),
        ["_dbs_info"] if req.method == Method::POST => {
            let body = req.json_object()?;
            let keys = body
                .get("keys")
                .and_then(Value::as_array)
                .ok_or_else(|| ApiError::bad_request("`keys` member must exist and be an array"))?;
            let rows: Vec<Value> = keys
                .iter()
                .map(|k| {
                    let info = k
                        .as_str()
                        .and_then(|name| ctx.store.db(name).ok())
                        .and_then(|db| db_api::db_info_json(ctx, &db).ok());
                    match info {
                        Some(i) => json!({"key": k, "info": i}),
                        None => json!({"key": k, "error": "not_found"}),
                    }
                })
                .collect();
            Ok(json_resp(StatusCode::OK, &Value::Array(rows)))
        }
        ["_replicate"] => replication_api::replicate(ctx, &req).await,
        ["_replicate", "_preview"] => replication_api::preview(ctx, &req).await,
        ["_scheduler", rest @ ..] => replication_api::scheduler(ctx, rest, &req),
        ["_sharing", rest @ ..] => sharing_api::handle(ctx, rest, &req).await,
        ["_active_tasks"] => read_only().map(|_| replication_api::active_tasks(ctx)),
        ["_all_dbs"] => {
            read_only()?;
            let dbs = ctx.store.all_dbs()?;
            Ok(json_resp(StatusCode::OK, &json!(dbs)))
        }
        ["_node", rest @ ..] => super::node_api::handle(ctx, rest, &req),
        ["_utils", rest @ ..] => super::web::page(rest, &req),
        ["_replicator", "_validate"] => replication_api::validate(&req),
        ["_uuids"] => {
            read_only()?;
            let n = req.uint("count")?.unwrap_or(1).min(1000);
            let uuids: Vec<String> = (0..n).map(|_| crate::ids::new_uuid()).collect();
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
        [db, "_conflicts"] => conflicts_api::list(ctx, db, &req).await,
        [db, "_conflicts", id] => conflicts_api::resolve(ctx, db, id, &req).await,
        [db, "_local", id] => doc_api::local(ctx, db, &format!("_local/{id}"), &req).await,
        [_, "_local", _, _, ..] => Err(ApiError::bad_request(
            "_local documents do not accept attachments.",
        )),
        [db, "_design", name] => doc_api::doc(ctx, db, &format!("_design/{name}"), &req).await,
        [db, "_design", name, kind, rest @ ..] if kind.starts_with('_') => {
            let db = ctx.store.db(db)?;
            doc_api::design_function(&db, name, kind, rest)
        }
        [db, "_design", name, att @ ..] => {
            doc_api::attachment(ctx, db, &format!("_design/{name}"), &att.join("/"), &req).await
        }
        // `_design%2Fx` and `_local%2Fx`: some clients encode the slash of these ids.
        [db, id] if id.starts_with("_design/") => doc_api::doc(ctx, db, id, &req).await,
        [db, id] if id.starts_with("_local/") => doc_api::local(ctx, db, id, &req).await,
        [db, special] if special.starts_with('_') => db_api::special(ctx, db, special, &req).await,
        [db, id] => doc_api::doc(ctx, db, id, &req).await,
        [_, id, _, ..] if id.starts_with("_local/") => Err(ApiError::bad_request(
            "_local documents do not accept attachments.",
        )),
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
            // Only what settee has: clients (Fauxton, for one) offer partitioned databases
            // and resharding when the server lists them.
            "features": ["scheduler"],
            "vendor": {"name": "settee", "version": env!("CARGO_PKG_VERSION")}
        }),
    )
}

/// `GET|POST|DELETE /_session`: cookie sessions, as CouchDB's cookie authentication handler.
fn session(ctx: &Ctx, req: &Req) -> Result<Resp, ApiError> {
    match req.method {
        Method::GET | Method::HEAD => Ok(json_resp(
            StatusCode::OK,
            &json!({"ok": true, "userCtx": req.user.json(),
                    "info": {"authentication_handlers": ["cookie", "default"],
                             "authenticated": if req.user.name.is_some() { "cookie" } else { "default" }}}),
        )),
        Method::POST => {
            let form = req
                .headers
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            let (name, password) = if form {
                let q = parse_query(std::str::from_utf8(&req.body).ok()).unwrap_or_default();
                let get = |k: &str| {
                    q.iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                (get("name"), get("password"))
            } else {
                let b = req.json_object()?;
                let get = |k: &str| {
                    b.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                (get("name"), get("password"))
            };
            let user = auth::login(ctx, &name, &password)?
                .ok_or_else(|| ApiError::unauthorized("Name or password is incorrect."))?;
            let mut resp = json_resp(
                StatusCode::OK,
                &json!({"ok": true, "name": user.name, "roles": user.roles}),
            );
            let cookie = format!(
                "AuthSession={}; Version=1; Path=/; HttpOnly; SameSite=Lax",
                auth::make_cookie(ctx, &name)
            );
            if let Ok(v) = cookie.parse() {
                resp.headers_mut().insert(hyper::header::SET_COOKIE, v);
            }
            Ok(resp)
        }
        Method::DELETE => {
            let mut resp = json_resp(StatusCode::OK, &json!({"ok": true}));
            if let Ok(v) = "AuthSession=; Version=1; Path=/; HttpOnly; Max-Age=0".parse() {
                resp.headers_mut().insert(hyper::header::SET_COOKIE, v);
            }
            Ok(resp)
        }
        _ => Err(ApiError::method_not_allowed("GET,HEAD,POST,DELETE")),
    }
}
