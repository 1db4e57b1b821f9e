//! Who may do what, as one table: every endpoint family, for anonymous, a user, a member, a
//! database admin and the server admin, on a database with members and admins, one nobody gave
//! a `_security` object (CouchDB 3's admin-only default) and one made public. Each cell is
//! what Apache CouchDB 3.5 does (allowed, or refused with 401/403); the table runs against
//! settee always and against the real CouchDB from `../shared/peers` whenever it is there, so
//! a difference between the two shows as a failing row.

mod common;

use common::couchdb::Couch;
use common::{Client, Server, ADMIN};
use serde_json::{json, Value};

const ROLES: [&str; 5] = ["anonymous", "user", "member", "dbadmin", "admin"];

/// `A`llowed (2xx) or `R`efused (401/403; CouchDB answers one `_security` write with a 500
/// `no_majority` and changes nothing, which counts as refused), per role in [`ROLES`] order.
struct Row {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    expect: &'static str,
}

fn row(
    what: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    expect: &'static str,
) -> Row {
    Row {
        what,
        method,
        path,
        body,
        expect,
    }
}

/// The rows for one database; `{db}` and `{role}` are filled in.
fn db_rows(db: &str) -> Vec<Row> {
    // secured: members and admins named; plain: never given `_security`; public: empty one.
    let (member_reads, member_writes, dbadmin) = match db {
        "secured" => ("RRAAA", "RRAAA", "RRRAA"),
        "plain" => ("RRRRA", "RRRRA", "RRRRA"),
        _ => ("AAAAA", "AAAAA", "RRRRA"),
    };
    vec![
        row("db info", "GET", "/{db}", None, member_reads),
        row("read a document", "GET", "/{db}/doc1", None, member_reads),
        row(
            "write a document",
            "PUT",
            "/{db}/new-{role}",
            Some(json!({"b": 1})),
            member_writes,
        ),
        row("_all_docs", "GET", "/{db}/_all_docs", None, member_reads),
        row("_changes", "GET", "/{db}/_changes", None, member_reads),
        row(
            "_find",
            "POST",
            "/{db}/_find",
            Some(json!({"selector": {}})),
            member_reads,
        ),
        row(
            "write a design document",
            "PUT",
            "/{db}/_design/d-{role}",
            Some(json!({"views": {}})),
            dbadmin,
        ),
        row(
            "read _security",
            "GET",
            "/{db}/_security",
            None,
            member_reads,
        ),
        row(
            "_bulk_docs",
            "POST",
            "/{db}/_bulk_docs",
            Some(json!({"docs": [{"_id": "bulk-{role}"}]})),
            member_writes,
        ),
        row(
            "_purge",
            "POST",
            "/{db}/_purge",
            Some(json!({"doc1": ["1-abc"]})),
            "RRRRA",
        ),
        row(
            "write a _local document",
            "PUT",
            "/{db}/_local/l-{role}",
            Some(json!({"c": 1})),
            member_writes,
        ),
        row(
            "_compact",
            "POST",
            "/{db}/_compact",
            Some(json!({})),
            dbadmin,
        ),
        row(
            "_revs_diff",
            "POST",
            "/{db}/_revs_diff",
            Some(json!({"doc1": ["1-abc"]})),
            member_reads,
        ),
    ]
}

fn server_rows() -> Vec<Row> {
    vec![
        row("create a database", "PUT", "/newdb-{role}", None, "RRRRA"),
        row("delete a database", "DELETE", "/gone-{role}", None, "RRRRA"),
        row("_all_dbs", "GET", "/_all_dbs", None, "RRRRA"),
        row("_active_tasks", "GET", "/_active_tasks", None, "RRRRA"),
        row("_scheduler/jobs", "GET", "/_scheduler/jobs", None, "RRRRA"),
        row("_scheduler/docs", "GET", "/_scheduler/docs", None, "RRRRA"),
        row(
            "_node/_local/_stats",
            "GET",
            "/_node/_local/_stats",
            None,
            "RRRRA",
        ),
        row(
            "_replicator/_all_docs",
            "GET",
            "/_replicator/_all_docs",
            None,
            "RRRRA",
        ),
        row(
            "own user document",
            "GET",
            "/_users/org.couchdb.user:user",
            None,
            "RRRRA",
        ),
        row(
            "_replicate by URL",
            "POST",
            "/_replicate",
            Some(
                json!({"source": "{url}/public", "target": "{url}/copy-{role}", "create_target": true}),
            ),
            "RAAAA",
        ),
        row(
            "a _replicator document",
            "PUT",
            "/_replicator/r-{role}",
            Some(json!({"source": "{url}/public", "target": "{url}/rcopy-{role}"})),
            "RRRRA",
        ),
        row("_session", "GET", "/_session", None, "AAAAA"),
    ]
}

/// A server as the table sees it: its address, its admin's credentials.
struct Target {
    name: &'static str,
    addr: String,
    admin: String,
}

impl Target {
    fn client(&self, role: &str) -> Client {
        match role {
            "anonymous" => Client::anonymous(&self.addr),
            "admin" => Client::basic(&self.addr, &self.admin),
            user => Client::basic(&self.addr, &format!("{user}:pw")),
        }
    }

    fn setup(&self) {
        let admin = self.client("admin");
        let ok =
            |(st, v): (u16, Value)| assert!((200..300).contains(&st), "{}: {st} {v}", self.name);
        for u in ["user", "member", "dbadmin"] {
            ok(admin.req(
                "PUT",
                &format!("/_users/org.couchdb.user:{u}"),
                Some(&json!({"name": u, "password": "pw", "roles": [], "type": "user"})),
            ));
        }
        for db in ["secured", "plain", "public"] {
            ok(admin.req("PUT", &format!("/{db}"), None));
            ok(admin.req("PUT", &format!("/{db}/doc1"), Some(&json!({"a": 1}))));
        }
        ok(admin.req(
            "PUT",
            "/secured/_security",
            Some(&json!({"members": {"names": ["member"]}, "admins": {"names": ["dbadmin"]}})),
        ));
        ok(admin.req(
            "PUT",
            "/public/_security",
            Some(&json!({"members": {}, "admins": {}})),
        ));
        for role in ROLES {
            ok(admin.req("PUT", &format!("/gone-{role}"), None));
        }
    }

    /// Every cell that differs from the table, as a line.
    fn run(&self) -> Vec<String> {
        self.setup();
        let url = format!("http://{}@{}", self.admin, self.addr);
        let mut rows: Vec<(String, Row)> = Vec::new();
        for db in ["secured", "plain", "public"] {
            rows.extend(db_rows(db).into_iter().map(|r| (db.to_owned(), r)));
        }
        rows.extend(server_rows().into_iter().map(|r| (String::new(), r)));
        let mut wrong = Vec::new();
        // Role by role, the server admin last: nothing an admin does changes a cell before it.
        for (i, role) in ROLES.iter().enumerate() {
            let c = self.client(role);
            for (db, r) in &rows {
                let fill = |s: &str| {
                    s.replace("{db}", db)
                        .replace("{role}", role)
                        .replace("{url}", &url)
                };
                let path = fill(r.path);
                let body = r
                    .body
                    .as_ref()
                    .map(|b| serde_json::from_str::<Value>(&fill(&b.to_string())).unwrap());
                // CouchDB closes some refused connections with a reset that can swallow its
                // answer: asked again, it answers.
                let (st, v) = (0..5)
                    .find_map(|_| c.try_req(r.method, &path, body.as_ref()))
                    .unwrap_or_else(|| panic!("{}: no answer to {} {path}", self.name, r.method));
                let allowed = (200..300).contains(&st);
                let refused = st == 401 || st == 403 || (st == 500 && v["reason"] == "no_majority");
                let want = r.expect.as_bytes()[i];
                let ok = if want == b'A' { allowed } else { refused };
                if !ok {
                    wrong.push(format!(
                        "{}: {} {} ({}) as {role}: {st} {v}, expected {}",
                        self.name,
                        r.method,
                        path,
                        r.what,
                        if want == b'A' { "allowed" } else { "refused" }
                    ));
                }
                if self.name == "settee" && refused && !v["error"].is_string() {
                    wrong.push(format!(
                        "settee: {} {path} as {role}: a refusal without a JSON error",
                        r.method
                    ));
                }
            }
        }
        wrong
    }
}

#[test]
fn who_may_do_what_is_couchdbs_table() {
    let s = Server::start(&["--admin", ADMIN]);
    let settee = Target {
        name: "settee",
        addr: s.addr.clone(),
        admin: ADMIN.to_owned(),
    };
    let mut wrong = settee.run();
    if let Some(couch) = Couch::start("who_may_do_what_is_couchdbs_table") {
        let couchdb = Target {
            name: "CouchDB 3.5",
            addr: couch.addr.clone(),
            admin: format!("{}:{}", couch.user, couch.password),
        };
        wrong.extend(couchdb.run());
    }
    assert!(
        wrong.is_empty(),
        "cells that differ from the table:\n{}",
        wrong.join("\n")
    );
}
