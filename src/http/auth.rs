//! Who is asking, and may they? Authentication (server admin from the command line, users in
//! `_users` by Basic or an `AuthSession` cookie) and authorization (CouchDB 3's rules: server
//! admins do everything; a database's `_security` names its admins and members; a database with
//! no `_security` set is admin-only; `_users` and `_replicator` are admin-only except a user's own
//! user document).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::request::Req;
use super::Ctx;
use crate::store::ReadOpts;

pub const USERS_DB: &str = "_users";
pub const USER_PREFIX: &str = "org.couchdb.user:";
/// PBKDF2 rounds for new passwords. CouchDB 3.4 uses 600,000; settee keeps verified credentials
/// in memory, so the cost is paid once per password change, not per request.
pub const PBKDF2_ITERATIONS: u32 = 100_000;
const SESSION_SECONDS: u64 = 600;

/// The authenticated caller (CouchDB's `userCtx`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserCtx {
    pub name: Option<String>,
    pub roles: Vec<String>,
}

impl UserCtx {
    pub fn admin(name: Option<String>) -> UserCtx {
        UserCtx {
            name,
            roles: vec!["_admin".into()],
        }
    }
    pub fn is_server_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "_admin")
    }
    pub fn json(&self) -> Value {
        json!({"name": self.name, "roles": self.roles})
    }
}

/// Verified user passwords, keyed by name: (derived key they were checked against, sha256 of
/// the password). A changed user document (new derived key) invalidates the entry.
#[derive(Default)]
pub struct AuthCache {
    verified: Mutex<HashMap<String, (String, [u8; 32])>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn derive_key(password: &str, salt: &str, iterations: u32) -> String {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut out);
    crate::ids::hex(&out)
}

/// Replaces a clear `password` in a `_users` document by CouchDB's PBKDF2 fields, and checks the
/// document's shape. The clear password is never stored.
pub fn prepare_user_doc(doc: &mut Value) -> Result<(), ApiError> {
    let forbidden = |r: &str| ApiError::new(StatusCode::FORBIDDEN, "forbidden", r.to_owned());
    let id = doc
        .get("_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if id.starts_with("_design/") || doc.get("_deleted") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    let name = id.strip_prefix(USER_PREFIX).ok_or_else(|| {
        forbidden("user documents must have an _id of the form org.couchdb.user:NAME")
    })?;
    if doc.get("name").and_then(Value::as_str) != Some(name) {
        return Err(forbidden("the user document's `name` must match its _id"));
    }
    if doc.get("type").and_then(Value::as_str) != Some("user") {
        return Err(forbidden("user documents must have `type: \"user\"`"));
    }
    if !doc
        .get("roles")
        .is_some_and(|r| r.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
    {
        return Err(forbidden(
            "user documents need `roles`, an array of strings",
        ));
    }
    // `_admin` and the like belong to the server: a user document cannot grant them.
    if doc["roles"].as_array().is_some_and(|a| {
        a.iter()
            .any(|r| r.as_str().is_some_and(|r| r.starts_with('_')))
    }) {
        return Err(forbidden(
            "No system roles (starting with underscore) in users db.",
        ));
    }
    if let Some(obj) = doc.as_object_mut() {
        if let Some(pw) = obj.shift_remove("password") {
            let pw = pw
                .as_str()
                .ok_or_else(|| forbidden("`password` must be a string"))?;
            let salt = crate::ids::new_uuid();
            obj.insert("password_scheme".into(), json!("pbkdf2"));
            obj.insert("pbkdf2_prf".into(), json!("sha256"));
            obj.insert("iterations".into(), json!(PBKDF2_ITERATIONS));
            obj.insert(
                "derived_key".into(),
                json!(derive_key(pw, &salt, PBKDF2_ITERATIONS)),
            );
            obj.insert("salt".into(), json!(salt));
        }
    }
    Ok(())
}

/// Checks a user's password against their `_users` document.
fn verify_user(ctx: &Ctx, name: &str, password: &str) -> Result<Option<UserCtx>, ApiError> {
    let db = ctx.store.db(USERS_DB)?;
    let doc = match db.get(&format!("{USER_PREFIX}{name}"), None, &ReadOpts::default()) {
        Ok(d) => d,
        Err(_) => return Ok(None),
    };
    let roles: Vec<String> = doc
        .get("roles")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let (Some(key), Some(salt)) = (
        doc.get("derived_key").and_then(Value::as_str),
        doc.get("salt").and_then(Value::as_str),
    ) else {
        return Ok(None);
    };
    let pw_hash: [u8; 32] = Sha256::digest(password.as_bytes()).into();
    {
        let cache = ctx.auth.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache
            .get(name)
            .is_some_and(|(k, h)| k == key && *h == pw_hash)
        {
            return Ok(Some(UserCtx {
                name: Some(name.to_owned()),
                roles,
            }));
        }
    }
    let iterations = doc.get("iterations").and_then(Value::as_u64).unwrap_or(10) as u32;
    if derive_key(password, salt, iterations) != key {
        return Ok(None);
    }
    ctx.auth
        .verified
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_owned(), (key.to_owned(), pw_hash));
    Ok(Some(UserCtx {
        name: Some(name.to_owned()),
        roles,
    }))
}

/// Checks a name and password: the configured server admin first, then `_users`.
pub fn login(ctx: &Ctx, name: &str, password: &str) -> Result<Option<UserCtx>, ApiError> {
    if let Some((u, p)) = &ctx.cfg.admin {
        if u == name && p == password {
            return Ok(Some(UserCtx::admin(Some(name.to_owned()))));
        }
    }
    verify_user(ctx, name, password)
}

fn cookie_mac(ctx: &Ctx, payload: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(ctx.store.secret()).expect("hmac takes any key");
    mac.update(payload.as_bytes());
    crate::ids::hex(&mac.finalize().into_bytes())
}

/// `AuthSession` cookie value: base64url("name:expiry:hmac"). The name is looked up again on
/// every request, so a deleted user's cookie stops working.
pub fn make_cookie(ctx: &Ctx, name: &str) -> String {
    let payload = format!("{name}:{:x}", now_secs() + SESSION_SECONDS);
    let mac = cookie_mac(ctx, &payload);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{payload}:{mac}"))
}

/// The user an `AuthSession` cookie names, `None` when it is forged, expired or its user is
/// gone (the request is then anonymous); a cookie that is not of our form at all is a bad
/// request, as CouchDB answers, so a client learns to drop it.
fn cookie_user(ctx: &Ctx, value: &str) -> Result<Option<UserCtx>, ApiError> {
    let parsed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .filter(|raw| raw.matches(':').count() >= 2);
    let Some(raw) = parsed else {
        return Err(ApiError::bad_request(
            "Malformed AuthSession cookie. Please clear your cookies.",
        ));
    };
    Ok(cookie_user_checked(ctx, &raw))
}

fn cookie_user_checked(ctx: &Ctx, raw: &str) -> Option<UserCtx> {
    let (payload, mac) = raw.rsplit_once(':')?;
    if cookie_mac(ctx, payload) != mac {
        return None;
    }
    let (name, expiry) = payload.rsplit_once(':')?;
    if u64::from_str_radix(expiry, 16).ok()? < now_secs() {
        return None;
    }
    if ctx.cfg.admin.as_ref().is_some_and(|(u, _)| u == name) {
        return Some(UserCtx::admin(Some(name.to_owned())));
    }
    let db = ctx.store.db(USERS_DB).ok()?;
    let doc = db
        .get(&format!("{USER_PREFIX}{name}"), None, &ReadOpts::default())
        .ok()?;
    let roles = doc["roles"]
        .as_array()?
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    Some(UserCtx {
        name: Some(name.to_owned()),
        roles,
    })
}

/// Identifies the caller. Bad Basic credentials are an error (401); no credentials is anonymous.
/// In admin party (no admin configured; loopback only) a caller without credentials is a
/// server admin, and Basic credentials are still checked, as CouchDB's default handler does:
/// wrong ones get 401 (a share's misspelt password shows up against a local settee too, not
/// only against CouchDB), a `_users` account acts as itself.
pub fn authenticate(ctx: &Ctx, req: &Req) -> Result<UserCtx, ApiError> {
    let header = req
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(b64) = header.and_then(|v| v.strip_prefix("Basic ")) {
        let creds = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::unauthorized("Malformed Basic credentials."))?;
        let (name, pass) = creds.split_once(':').unwrap_or((&creds, ""));
        return login(ctx, name, pass)?
            .ok_or_else(|| ApiError::unauthorized("Name or password is incorrect."));
    }
    if ctx.cfg.admin.is_none() {
        return Ok(UserCtx::admin(None));
    }
    let cookie = req
        .headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("AuthSession="));
    // An emptied cookie (what a logout sets) is no cookie.
    Ok(cookie
        .filter(|c| !c.is_empty())
        .map(|c| cookie_user(ctx, c))
        .transpose()?
        .flatten()
        .unwrap_or_default())
}

/// The shape CouchDB requires of a `_security` object. Checked on write because the access
/// rules read a section that is not lists of strings as empty, and an empty `members` makes a
/// database public: `{"members": {"names": 5}}` must not open it to everyone.
pub fn validate_security(sec: &Value) -> Result<(), ApiError> {
    for section in ["admins", "members"] {
        let Some(v) = sec.get(section) else {
            continue;
        };
        let obj = v.as_object().ok_or_else(|| {
            ApiError::bad_request(format!(
                "{section} must be a JSON object with names and roles"
            ))
        })?;
        for list in ["names", "roles"] {
            let ok = obj.get(list).is_none_or(|l| {
                l.as_array()
                    .is_some_and(|items| items.iter().all(Value::is_string))
            });
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "{section}.{list} must be a JSON list of strings"
                )));
            }
        }
    }
    Ok(())
}

fn listed(sec: &Value, section: &str, user: &UserCtx) -> bool {
    let names = sec
        .pointer(&format!("/{section}/names"))
        .and_then(Value::as_array);
    let roles = sec
        .pointer(&format!("/{section}/roles"))
        .and_then(Value::as_array);
    names.is_some_and(|n| {
        user.name
            .as_ref()
            .is_some_and(|name| n.iter().any(|x| x.as_str() == Some(name)))
    }) || roles.is_some_and(|r| {
        r.iter().any(|x| {
            x.as_str()
                .is_some_and(|role| user.roles.iter().any(|u| u == role))
        })
    })
}

fn section_empty(sec: &Value, section: &str) -> bool {
    let empty = |k: &str| {
        sec.pointer(&format!("/{section}/{k}"))
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    };
    empty("names") && empty("roles")
}

fn denied(user: &UserCtx, reason: &str) -> ApiError {
    if user.name.is_none() {
        ApiError::unauthorized("You are not authorized to access this db.")
    } else {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", reason.to_owned())
    }
}

/// In admin party every loopback client is a server admin, so any web page the user visits
/// could drive this server from their browser (a form post or a no-cors fetch needs no
/// permission). Browsers name the calling page's origin in `Origin`; a request that carries
/// one other than this server's own (`http[s]://` + its `Host`) is refused. Clients that are
/// not browsers send no `Origin` and are unaffected; with an admin configured, credentials
/// protect instead (and this check does not apply).
pub fn check_origin(req: &Req) -> Result<(), ApiError> {
    let Some(origin) = req.headers.get(hyper::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("?");
    let host = req
        .headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok());
    let from = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (from, host) {
        (Some(from), Some(host)) if from.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("a request from the web page at {origin} is refused: with no admin configured (admin party) only this server's own pages may call it. Configure --admin USER:PASS to serve other origins to clients that log in"),
        )),
    }
}

/// What a user may do with one database, from its `_security` object.
pub enum Access {
    /// Server or database admin: everything, including design docs and `_security`.
    Admin,
    /// Member: read and write ordinary documents.
    Member,
}

pub fn db_access(ctx: &Ctx, user: &UserCtx, db: &str) -> Result<Access, ApiError> {
    if user.is_server_admin() {
        return Ok(Access::Admin);
    }
    if db == USERS_DB || db == "_replicator" {
        return Err(denied(user, "Only server admins may access this database."));
    }
    let sec = match ctx.store.db(db) {
        Ok(d) => d.security()?,
        Err(_) => return Err(denied(user, "You are not a server admin.")),
    };
    // CouchDB 3: a database nobody gave a security object is for server admins only.
    let Some(sec) = sec else {
        return Err(denied(user, "You are not allowed to access this db."));
    };
    if listed(&sec, "admins", user) {
        return Ok(Access::Admin);
    }
    if section_empty(&sec, "members") || listed(&sec, "members", user) {
        return Ok(Access::Member);
    }
    Err(denied(user, "You are not allowed to access this db."))
}

/// Authorization of one request, before any handler runs.
pub fn authorize(ctx: &Ctx, user: &UserCtx, req: &Req) -> Result<(), ApiError> {
    if user.is_server_admin() {
        return Ok(());
    }
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    // CouchDB 3.5 answers 401 (not 403) to a user who is not a server admin, as to nobody.
    let need_admin = || ApiError::unauthorized("You are not a server admin.");
    match seg.as_slice() {
        // The page itself is public (it shows a login form); what it reads is not.
        [] | ["_up"] | ["_session"] | ["_uuids"] | ["_utils", ..] => Ok(()),
        // Any user may replicate, as in CouchDB, between databases named by URL with their own
        // credentials (the handler refuses local names to non-admins).
        ["_replicate"] if user.name.is_some() && req.method == Method::POST => Ok(()),
        [s, ..] if s.starts_with('_') && *s != USERS_DB && *s != "_replicator" => Err(need_admin()),
        // Purging is for server admins, in any database (CouchDB 3.5).
        [_db, "_purge"] | [_db, "_purged_infos"] => Err(need_admin()),
        [_db]
            if req.method != Method::GET
                && req.method != Method::HEAD
                && req.method != Method::POST =>
        {
            Err(need_admin())
        }
        [db, rest @ ..] => {
            let access = db_access(ctx, user, db)?;
            let reading = req.method == Method::GET || req.method == Method::HEAD;
            let admin_only = match rest {
                ["_security"] | ["_compact", ..] | ["_revs_limit"] | ["_purged_infos_limit"] => {
                    req.method != Method::GET
                }
                ["_design", ..] => !reading,
                _ => false,
            };
            match access {
                Access::Admin => Ok(()),
                // Compaction refused with 401 as CouchDB does; the rest with 403.
                Access::Member if admin_only && matches!(rest, ["_compact", ..]) => {
                    Err(ApiError::unauthorized("You are not a server or db admin."))
                }
                Access::Member if admin_only => {
                    Err(denied(user, "You are not a db or server admin."))
                }
                Access::Member => Ok(()),
            }
        }
    }
}

/// Member writes through `_bulk_docs` may not touch design docs (only db admins may).
pub fn check_bulk_design(
    ctx: &Ctx,
    user: &UserCtx,
    db: &str,
    docs: &[Value],
) -> Result<(), ApiError> {
    let touches_design = docs.iter().any(|d| {
        d.get("_id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.starts_with("_design/"))
    });
    if touches_design && !matches!(db_access(ctx, user, db)?, Access::Admin) {
        return Err(denied(
            user,
            "Only database admins may write design documents.",
        ));
    }
    Ok(())
}
