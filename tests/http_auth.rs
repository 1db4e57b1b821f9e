//! Users, sessions and per-database security over real HTTP (CouchDB 3 rules).

mod common;

use base64::Engine;
use common::Server;
use serde_json::{json, Value};

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn call(s: &Server, method: &str, path: &str, auth: &str, body: Option<Value>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = if auth.is_empty() {
        vec![]
    } else {
        vec![("Authorization", auth)]
    };
    let (st, _, b) = s.raw(
        method,
        path,
        &headers,
        body.map(|b| b.to_string().into_bytes()),
    );
    (st, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

#[test]
fn users_members_admins_and_sessions() {
    let s = Server::start(&["--admin", "adm:pw"]);
    let adm = basic("adm", "pw");
    let bob = basic("bob", "hunter2");
    for db in ["shared", "private"] {
        assert_eq!(call(&s, "PUT", &format!("/{db}"), &adm, None).0, 201);
    }
    // A user document: the clear password is replaced by PBKDF2 fields.
    let user = json!({"name": "bob", "password": "hunter2", "roles": [], "type": "user"});
    assert_eq!(
        call(&s, "PUT", "/_users/org.couchdb.user:bob", &adm, Some(user)).0,
        201
    );
    let (_, u) = call(&s, "GET", "/_users/org.couchdb.user:bob", &adm, None);
    assert!(u.get("password").is_none());
    assert_eq!(u["password_scheme"], "pbkdf2");
    assert_eq!(u["derived_key"].as_str().unwrap().len(), 64);
    let bad = json!({"name": "eve", "roles": [], "type": "user"});
    assert_eq!(
        call(
            &s,
            "PUT",
            "/_users/org.couchdb.user:mallory",
            &adm,
            Some(bad)
        )
        .0,
        403
    );

    // No _security object: admin only. Anonymous gets 401, a user 403.
    assert_eq!(call(&s, "GET", "/private", "", None).0, 401);
    assert_eq!(call(&s, "GET", "/private", &bob, None).0, 403);
    assert_eq!(
        call(&s, "GET", "/private", &basic("bob", "wrong"), None).0,
        401
    );

    let sec =
        json!({"admins": {"names": [], "roles": []}, "members": {"names": ["bob"], "roles": []}});
    assert_eq!(call(&s, "PUT", "/shared/_security", &adm, Some(sec)).0, 200);
    // A member reads and writes documents ...
    assert_eq!(
        call(&s, "PUT", "/shared/d1", &bob, Some(json!({"v": 1}))).0,
        201
    );
    assert_eq!(call(&s, "GET", "/shared/d1", &bob, None).0, 200);
    let (st, _) = call(
        &s,
        "POST",
        "/shared/_bulk_docs",
        &bob,
        Some(json!({"docs": [{"_id": "d2"}]})),
    );
    assert_eq!(st, 201);
    assert_eq!(
        call(&s, "GET", "/shared/_changes", &bob, None).1["results"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // ... but not design docs, security, purge, or databases.
    assert_eq!(
        call(&s, "PUT", "/shared/_design/x", &bob, Some(json!({}))).0,
        403
    );
    // In _bulk_docs the design document is refused in its row and the rest is written, as
    // CouchDB answers (a member's whole-database push must not fail on one design doc).
    let (st, rows) = call(
        &s,
        "POST",
        "/shared/_bulk_docs",
        &bob,
        Some(json!({"docs": [{"_id": "_design/y"}, {"_id": "plain-y"}]})),
    );
    assert_eq!(st, 201, "{rows}");
    assert_eq!(rows[0]["error"], "forbidden", "{rows}");
    assert_eq!(rows[1]["ok"], true, "{rows}");
    assert_eq!(
        call(&s, "PUT", "/shared/_security", &bob, Some(json!({}))).0,
        403
    );
    assert_eq!(
        call(&s, "POST", "/shared/_purge", &bob, Some(json!({"d1": []}))).0,
        401
    );
    // Server-admin work refused with 401 to a user, as CouchDB 3.5 does.
    assert_eq!(call(&s, "PUT", "/newdb", &bob, None).0, 401);
    assert_eq!(call(&s, "DELETE", "/shared", &bob, None).0, 401);
    assert_eq!(call(&s, "GET", "/_all_dbs", &bob, None).0, 401);
    assert_eq!(call(&s, "GET", "/_replicator/_all_docs", &bob, None).0, 403);
    assert_eq!(call(&s, "GET", "/_users/_all_docs", &bob, None).0, 403);
    assert_eq!(call(&s, "GET", "/shared/d1", "", None).0, 401);

    // As in CouchDB 3.5, whose `_users` is for server admins only (its default security):
    // a user can neither read nor change their own user document; an admin changes the
    // password.
    assert_eq!(
        call(&s, "GET", "/_users/org.couchdb.user:bob", &bob, None).0,
        403
    );
    let rev = u["_rev"].as_str().unwrap();
    let escalate = json!({"_rev": rev, "name": "bob", "roles": ["_admin"], "type": "user"});
    assert_eq!(
        call(
            &s,
            "PUT",
            "/_users/org.couchdb.user:bob",
            &bob,
            Some(escalate)
        )
        .0,
        403
    );
    let newpw = json!({"_rev": rev, "name": "bob", "roles": [], "type": "user", "password": "n3w"});
    assert_eq!(
        call(
            &s,
            "PUT",
            "/_users/org.couchdb.user:bob",
            &bob,
            Some(newpw.clone())
        )
        .0,
        403
    );
    assert_eq!(
        call(&s, "PUT", "/_users/org.couchdb.user:bob", &adm, Some(newpw)).0,
        201
    );
    assert_eq!(call(&s, "GET", "/shared/d1", &bob, None).0, 401);
    let bob = basic("bob", "n3w");
    assert_eq!(call(&s, "GET", "/shared/d1", &bob, None).0, 200);

    // Cookie sessions.
    let (st, hdrs, body) = s.raw(
        "POST",
        "/_session",
        &[],
        Some(br#"{"name":"bob","password":"n3w"}"#.to_vec()),
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let cookie = hdrs
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (st, _, body) = s.raw("GET", "/_session", &[("Cookie", &cookie)], None);
    let sess: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((st, sess["userCtx"]["name"].as_str()), (200, Some("bob")));
    assert_eq!(
        s.raw("GET", "/shared/d1", &[("Cookie", &cookie)], None).0,
        200
    );
    let forged = format!("{}x", cookie);
    assert_eq!(
        s.raw("GET", "/shared/d1", &[("Cookie", &forged)], None).0,
        401
    );
    // Not a session cookie at all: 400, as CouchDB; an emptied one (after a logout) is none.
    let (st, _, body) = s.raw("GET", "/shared/d1", &[("Cookie", "AuthSession=%%%")], None);
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        s.raw("GET", "/shared/d1", &[("Cookie", "AuthSession=")], None)
            .0,
        401
    );
    let (st, _, _) = s.raw(
        "POST",
        "/_session",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(b"name=bob&password=bad".to_vec()),
    );
    assert_eq!(st, 401);
    // A public database: members section empty.
    let public =
        json!({"admins": {"names": ["bob"], "roles": []}, "members": {"names": [], "roles": []}});
    assert_eq!(
        call(&s, "PUT", "/private/_security", &adm, Some(public)).0,
        200
    );
    assert_eq!(call(&s, "GET", "/private", "", None).0, 200);
    // bob is a db admin there: design docs allowed.
    assert_eq!(
        call(&s, "PUT", "/private/_design/ok", &bob, Some(json!({}))).0,
        201
    );
}

/// Admin party (no admin configured, loopback only): no credentials is a server admin, but
/// credentials that are sent are checked, as CouchDB's default handler checks them.
#[test]
fn admin_party_still_checks_credentials_it_is_given() {
    let s = Server::start(&[]);
    assert_eq!(call(&s, "PUT", "/party", "", None).0, 201);
    let (st, v) = call(&s, "GET", "/party", &basic("nobody", "wrong"), None);
    assert_eq!(st, 401, "{v}");
    assert_eq!(v["reason"], "Name or password is incorrect.");
    let user = json!({"name": "carol", "password": "pw", "roles": [], "type": "user"});
    assert_eq!(
        call(&s, "PUT", "/_users/org.couchdb.user:carol", "", Some(user)).0,
        201
    );
    assert_eq!(call(&s, "GET", "/", &basic("carol", "nope"), None).0, 401);
    // A real account acts as itself: a user, not a server admin.
    let carol = basic("carol", "pw");
    assert_eq!(
        call(&s, "GET", "/_session", &carol, None).1["userCtx"]["name"],
        "carol"
    );
    assert_eq!(call(&s, "PUT", "/another", &carol, None).0, 401);
    assert_eq!(call(&s, "PUT", "/another", "", None).0, 201);
}

/// A `_security` object of the wrong shape is refused: read leniently, `{"members": {"names":
/// 5}}` would count as no members, which makes a database public. A user document cannot
/// grant system roles.
#[test]
fn malformed_security_and_system_roles_are_refused() {
    let s = Server::start(&["--admin", "adm:pw"]);
    let adm = basic("adm", "pw");
    assert_eq!(call(&s, "PUT", "/sec", &adm, None).0, 201);
    for bad in [
        json!({"members": {"names": 5}}),
        json!({"members": {"roles": "x"}}),
        json!({"members": 5}),
        json!({"admins": {"names": [1]}}),
    ] {
        let (st, v) = call(&s, "PUT", "/sec/_security", &adm, Some(bad.clone()));
        assert_eq!(
            (st, v["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {v}"
        );
        assert_eq!(
            call(&s, "GET", "/sec", "", None).0,
            401,
            "{bad} opened the database"
        );
    }
    let good = json!({"members": {"names": ["bob"], "roles": []}});
    assert_eq!(call(&s, "PUT", "/sec/_security", &adm, Some(good)).0, 200);
    let user = json!({"name": "root", "password": "pw", "roles": ["_admin"], "type": "user"});
    let (st, v) = call(&s, "PUT", "/_users/org.couchdb.user:root", &adm, Some(user));
    assert_eq!((st, v["error"].as_str()), (403, Some("forbidden")), "{v}");
}

/// In admin party a web page the user visits must not drive the loopback server through
/// their browser: a request naming another origin is refused before it does anything, the
/// server's own pages (`/_utils`) and non-browser clients (no `Origin`) are served.
#[test]
fn admin_party_refuses_other_origins() {
    let s = Server::start(&[]);
    let from = |origin: &str, method: &str, path: &str, body: Option<Value>| {
        let (st, _, b) = s.raw(
            method,
            path,
            &[("Origin", origin)],
            body.map(|b| b.to_string().into_bytes()),
        );
        (
            st,
            serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null),
        )
    };
    for (method, path, body) in [
        ("PUT", "/evil", None),
        (
            "POST",
            "/_replicate",
            Some(json!({"source": "http://127.0.0.1:1/x", "target": "y", "continuous": true})),
        ),
        ("GET", "/_all_dbs", None),
    ] {
        for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
            let (st, v) = from(origin, method, path, body.clone());
            assert_eq!(
                (st, v["error"].as_str()),
                (403, Some("forbidden")),
                "{origin} {method} {path}: {v}"
            );
            assert!(v["reason"].as_str().unwrap().contains("--admin"), "{v}");
        }
    }
    // Nothing happened: no database, no job.
    assert_eq!(s.req("GET", "/evil", None).0, 404);
    let (_, jobs) = s.req("GET", "/_scheduler/jobs", None);
    assert_eq!(jobs["total_rows"], 0, "{jobs}");
    // The server's own origin (its page at /_utils) and clients without Origin are served.
    let own = format!("http://{}", s.addr);
    assert_eq!(from(&own, "PUT", "/mine", None).0, 201);
    assert_eq!(s.req("PUT", "/plain", None).0, 201);
    // With an admin configured, credentials decide instead: another origin that logs in works.
    let a = Server::start(&["--admin", "adm:pw"]);
    let (st, _, _) = a.raw(
        "PUT",
        "/theirs",
        &[
            ("Origin", "http://app.example"),
            ("Authorization", &basic("adm", "pw")),
        ],
        None,
    );
    assert_eq!(st, 201);
}
