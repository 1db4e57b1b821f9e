//! Before and after a push (the Tiki seed): what a replication would send, local changes
//! with and without conflicts, pushing chosen items, overwriting the master anyway, and
//! resolving conflicts. Real servers over loopback HTTP; the master is settee or
//! pouchdb-server.

mod common;

use common::{admin_basic, admin_url, areq, PouchServer, Server};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A database on some server, reached over HTTP with optional credentials.
struct Db {
    addr: String,
    name: String,
    auth: Option<String>,
    /// The database URL a replication names (credentials included).
    url: String,
}

impl Db {
    fn on_settee(s: &Server, name: &str) -> Db {
        Db {
            addr: s.addr.clone(),
            name: name.into(),
            auth: Some(admin_basic()),
            url: admin_url(s, name),
        }
    }

    fn on_pouch(p: &PouchServer, name: &str) -> Db {
        Db {
            addr: p.addr().to_owned(),
            name: name.into(),
            auth: None,
            url: format!("{}/{name}", p.1.trim_end_matches('/')),
        }
    }

    fn req(&self, method: &str, rest: &str, body: Option<&Value>) -> (u16, Value) {
        common::Client::with_authorization(&self.addr, self.auth.clone()).req(
            method,
            &format!("/{}{rest}", self.name),
            body,
        )
    }

    fn create(&self) {
        let (st, v) = self.req("PUT", "", None);
        assert!(st == 201 || st == 412, "{v}");
    }

    fn put(&self, doc: Value) {
        let (st, v) = self.req("POST", "", Some(&doc));
        assert_eq!(st, 201, "{v}");
    }

    fn edit(&self, id: &str, changes: Value) {
        let (_, mut doc) = self.req("GET", &format!("/{id}"), None);
        for (k, v) in changes.as_object().unwrap() {
            doc[k] = v.clone();
        }
        let (st, v) = self.req("PUT", &format!("/{id}"), Some(&doc));
        assert_eq!(st, 201, "{v}");
    }

    fn update_seq(&self) -> Value {
        self.req("GET", "", None).1["update_seq"].clone()
    }

    fn local(&self, id: &str) -> u16 {
        self.req("GET", &format!("/_local/{id}"), None).0
    }

    /// Every document's leaves with their histories.
    fn trees(&self) -> BTreeMap<String, Vec<Value>> {
        let headers: Vec<(&str, &str)> = self
            .auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        common::trees_with(&self.addr, &self.name, &headers)
    }

    fn conflicted(&self) -> Vec<String> {
        self.trees()
            .into_iter()
            .filter(|(_, leaves)| leaves.iter().filter(|l| l["_deleted"] != true).count() > 1)
            .map(|(id, _)| id)
            .collect()
    }
}

fn replicate(local: &Server, body: Value) -> Value {
    let (st, v) = areq(local, "POST", "/_replicate", Some(&body));
    assert_eq!(st, 200, "{v}");
    v
}

fn preview(local: &Server, body: Value) -> Value {
    let (st, v) = areq(local, "POST", "/_replicate/_preview", Some(&body));
    assert_eq!(st, 200, "{v}");
    v
}

fn landing(p: &Value) -> BTreeMap<String, String> {
    p["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_owned(),
                d["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The Tiki seed's synchronization tab, end to end, against a master database `master`.
fn tiki_flow(local: &Server, master: &Db) {
    master.create();
    for i in 1..=4 {
        master.put(
            json!({"_id": format!("item-{i}"), "title": format!("Item {i}"), "status": "open"}),
        );
    }
    // Clone the remote tracker.
    replicate(
        local,
        json!({"source": master.url, "target": "tracker", "create_target": true}),
    );
    let mine = Db::on_settee(local, "tracker");
    // Edit three items locally; the master edits one of them too.
    mine.edit("item-1", json!({"status": "closed"}));
    mine.edit("item-2", json!({"title": "Item two"}));
    mine.edit("item-3", json!({"status": "in progress"}));
    master.edit("item-3", json!({"status": "rejected"}));

    let push = json!({"source": "tracker", "target": master.url});
    let (seq_m, seq_l) = (master.update_seq(), mine.update_seq());
    let p = preview(local, push.clone());
    assert_eq!(
        landing(&p),
        BTreeMap::from([
            ("item-1".to_owned(), "ancestor".to_owned()),
            ("item-2".to_owned(), "ancestor".to_owned()),
            ("item-3".to_owned(), "diverged".to_owned()),
        ]),
        "{p}"
    );
    assert_eq!(p["counts"]["ancestor"], 2);
    assert_eq!(p["counts"]["diverged"], 1);
    // A preview writes nothing on either side: no document, no checkpoint.
    assert_eq!((master.update_seq(), mine.update_seq()), (seq_m, seq_l));
    let rep_id = p["replication_id"].as_str().unwrap();
    assert_eq!((master.local(rep_id), mine.local(rep_id)), (404, 404));

    // Push the two without conflicts.
    let mut chosen = push.clone();
    chosen["doc_ids"] = json!(["item-1", "item-2"]);
    replicate(local, chosen);
    assert_eq!(master.req("GET", "/item-1", None).1["status"], "closed");
    assert_eq!(master.req("GET", "/item-2", None).1["title"], "Item two");
    // Overwrite the master's version of the third anyway.
    let mut overwrite = push.clone();
    overwrite["doc_ids"] = json!(["item-3"]);
    overwrite["resolve"] = json!("source-wins");
    replicate(local, overwrite);
    let (_, item3) = master.req("GET", "/item-3?conflicts=true", None);
    assert_eq!(item3["status"], "in progress", "{item3}");
    assert!(
        item3.get("_conflicts").is_none(),
        "{item3} {:?}",
        master.trees().get("item-3")
    );
    // Nothing left to push; reload from the master.
    let p = preview(local, push);
    assert_eq!(p["counts"]["total"], 0, "{p}");
    replicate(local, json!({"source": master.url, "target": "tracker"}));
    assert_eq!(
        mine.trees(),
        master.trees(),
        "both sides hold the same trees"
    );
    assert!(mine.conflicted().is_empty() && master.conflicted().is_empty());
}

#[test]
fn tiki_clone_edit_preview_push_overwrite_and_reload() {
    let master = common::start_admin();
    let local = common::start_admin();
    tiki_flow(&local, &Db::on_settee(&master, "tracker"));
}

#[test]
fn tiki_against_pouchdb_server() {
    let p = PouchServer::start(&[]);
    let local = common::start_admin();
    tiki_flow(&local, &Db::on_pouch(&p, "tracker"));
}

#[test]
fn a_preview_creates_nothing_and_refuses_continuous() {
    let s = common::start_admin();
    areq(&s, "PUT", "/src", None);
    let src = Db::on_settee(&s, "src");
    src.put(json!({"_id": "a", "public": true}));
    src.put(json!({"_id": "b", "public": false}));
    src.put(json!({"_id": "c", "public": true, "secret": "x"}));
    let p = preview(
        &s,
        json!({"source": "src", "target": "nowhere", "create_target": true,
            "selector": {"public": true}, "fields": ["public"]}),
    );
    assert_eq!(landing(&p).len(), 2, "{p}");
    assert!(landing(&p).values().all(|l| l == "missing"));
    assert_eq!(areq(&s, "GET", "/nowhere", None).0, 404, "nothing created");
    // Paged: one document per page, continuing from last_seq.
    let body = json!({"source": "src", "target": "nowhere", "create_target": true});
    let (_, first) = areq(&s, "POST", "/_replicate/_preview?limit=1", Some(&body));
    assert_eq!(first["docs"].as_array().unwrap().len(), 1, "{first}");
    let since = first["last_seq"].to_string();
    let (_, second) = areq(
        &s,
        "POST",
        &format!(
            "/_replicate/_preview?limit=1&since={}",
            since.trim_matches('"')
        ),
        Some(&body),
    );
    assert_eq!(second["docs"].as_array().unwrap().len(), 1, "{second}");
    assert_ne!(first["docs"][0]["id"], second["docs"][0]["id"]);
    // "Since the last sync": after a real run, the preview starts at its checkpoint.
    let run = json!({"source": "src", "target": "copy", "create_target": true});
    replicate(&s, run.clone());
    src.put(json!({"_id": "d", "public": true}));
    let p = preview(&s, run);
    assert_ne!(p["since"], json!(0), "{p}");
    assert_eq!(
        landing(&p),
        BTreeMap::from([("d".to_owned(), "missing".to_owned())])
    );
    // The same from the command line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_settee"))
        .args([
            "replicate",
            "--dry-run",
            "--create-target",
            "--selector",
            r#"{"public": true}"#,
        ])
        .arg(admin_url(&s, "src"))
        .arg(admin_url(&s, "elsewhere"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["counts"]["missing"], 3, "{cli}");
    assert_eq!(
        areq(&s, "GET", "/elsewhere", None).0,
        404,
        "nothing created"
    );
    // A continuous replication's preview is its next pass: from the checkpoint it shares
    // with the one-shot form (the replication id's base), so only `d` again.
    let mut continuous = json!({"source": "src", "target": "copy", "continuous": true});
    let p = preview(&s, continuous.clone());
    assert_eq!(
        landing(&p),
        BTreeMap::from([("d".to_owned(), "missing".to_owned())]),
        "{p}"
    );
    continuous["target"] = json!("nowhere");
    let (st, v) = areq(&s, "POST", "/_replicate/_preview", Some(&continuous));
    assert_eq!(st, 404, "no target and no create_target: {v}");
}

#[test]
fn conflicts_are_listed_and_resolved_in_one_write() {
    let s = common::start_admin();
    areq(&s, "PUT", "/db", None);
    let db = Db::on_settee(&s, "db");
    // Two branches of one document, as two replicas would leave them.
    let (st, v) = db.req(
        "POST",
        "/_bulk_docs",
        Some(&json!({"new_edits": false, "docs": [
            {"_id": "d", "_rev": "1-aaa", "title": "A", "same": 1},
            {"_id": "d", "_rev": "1-bbb", "title": "B", "same": 1, "extra": true},
            {"_id": "e", "_rev": "1-ccc", "n": 1},
            {"_id": "e", "_rev": "1-ddd", "n": 2},
            {"_id": "quiet", "_rev": "1-eee"}]})),
    );
    assert_eq!(st, 201, "{v}");
    let (_, list) = db.req("GET", "/_conflicts", None);
    let rows = list["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    assert_eq!(rows[0]["id"], "d");
    assert_eq!(rows[0]["winner"], "1-bbb");
    assert_eq!(rows[0]["losers"], json!(["1-aaa"]));
    assert_eq!(rows[0]["fields"], json!(["extra", "title"]));
    let (_, page) = db.req("GET", "/_conflicts?limit=1", None);
    assert_eq!(page["next"], "d");
    let (_, page2) = db.req("GET", "/_conflicts?limit=1&after=d", None);
    assert_eq!(page2["rows"][0]["id"], "e");

    // Deciding on stale leaves is refused and changes nothing.
    let (st, v) = db.req(
        "POST",
        "/_conflicts/d",
        Some(&json!({"keep": "1-aaa", "leaves": ["1-aaa"]})),
    );
    assert_eq!(st, 409, "{v}");
    // Keep the loser: the winner is deleted, in one write that replicates as such.
    let (st, v) = db.req(
        "POST",
        "/_conflicts/d",
        Some(&json!({"keep": "1-aaa", "leaves": ["1-aaa", "1-bbb"]})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["deleted"], json!(["1-bbb"]));
    let (_, d) = db.req("GET", "/d?conflicts=true", None);
    assert_eq!(
        (d["title"].clone(), d.get("_conflicts")),
        (json!("A"), None)
    );
    // Merge: a new revision on the winner, the other deleted.
    let (st, v) = db.req(
        "POST",
        "/_conflicts/e",
        Some(&json!({"merge": {"n": 3}, "leaves": ["1-ccc", "1-ddd"]})),
    );
    assert_eq!(st, 201, "{v}");
    let (_, e) = db.req("GET", "/e?conflicts=true", None);
    assert_eq!(e["n"], 3);
    assert_eq!(e["_rev"], v["rev"]);
    assert!(e.get("_conflicts").is_none(), "{e}");
    let (_, list) = db.req("GET", "/_conflicts", None);
    assert_eq!(list["rows"], json!([]));

    // `settee conflicts` prints the same listing.
    db.req(
        "POST",
        "/_bulk_docs",
        Some(&json!({"new_edits": false, "docs": [{"_id": "f", "_rev": "1-fff", "x": 1}, {"_id": "f", "_rev": "1-ggg", "x": 2}]})),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_settee"))
        .args(["conflicts", "db", "--server"])
        .arg(format!("http://{}@{}", common::ADMIN, s.addr))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("1-ggg / 1-fff") && text.contains(" x"),
        "{text}"
    );
}
