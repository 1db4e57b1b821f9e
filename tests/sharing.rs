//! Shares over real HTTP: a read-write pair converges (settee↔settee and settee↔pouchdb-server)
//! and then idles; documents outside the selector never cross; stopping with purge removes
//! what arrived without touching the peer; a read-only share never brings writes back.

mod common;

use std::collections::BTreeMap;

use common::{trees_with, wait_for, PouchServer, Server};
use serde_json::{json, Value};

use common::ADMIN as A;

/// Addresses of pouchdb-server peers (in-memory, admin party: they refuse credentials).
static POUCH: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// A client of a settee (with admin credentials) or of pouchdb-server (without).
fn client(addr: &str) -> common::Client {
    if POUCH.lock().unwrap().iter().any(|p| p == addr) {
        common::Client::anonymous(addr)
    } else {
        common::Client::admin(addr)
    }
}

fn r(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    client(addr).req(method, path, body)
}

fn trees(addr: &str, db: &str) -> BTreeMap<String, Vec<Value>> {
    trees_with(addr, db, &client(addr).headers())
}

/// Writes over the current winner; a replication landing between read and write is a
/// conflict, so read again and retry.
fn put(addr: &str, db: &str, id: &str, doc: Value) -> String {
    for _ in 0..10 {
        let mut doc = doc.clone();
        if let (200, cur) = r(addr, "GET", &format!("/{db}/{id}"), None) {
            doc["_rev"] = cur["_rev"].clone();
        }
        let (s, v) = r(addr, "PUT", &format!("/{db}/{id}"), Some(&doc));
        if s == 409 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        assert!(s == 201 || s == 202, "put {id}: {v}");
        return v["rev"].as_str().unwrap().to_owned();
    }
    panic!("put {id}: conflict ten times");
}

fn exists(addr: &str, db: &str, id: &str) -> bool {
    r(addr, "GET", &format!("/{db}/{id}"), None).0 == 200
}

/// The pair's shared part is identical on both sides (every tree of every shared doc).
fn converged(a: &str, b: &str, db: &str, skip: &[&str]) -> bool {
    let keep = |t: BTreeMap<String, Vec<Value>>| -> BTreeMap<String, Vec<Value>> {
        t.into_iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .collect()
    };
    keep(trees(a, db)) == keep(trees(b, db))
}

fn pair_converges(a: &Server, b_addr: &str, b_url: &str) {
    r(&a.addr, "PUT", "/col", None);
    r(b_addr, "PUT", "/col", None);
    put(&a.addr, "col", "a1", json!({"type": "shared", "v": 1}));
    put(&a.addr, "col", "a-private", json!({"type": "mine"}));
    put(b_addr, "col", "b1", json!({"type": "shared", "v": 1}));
    put(b_addr, "col", "b-private", json!({"type": "theirs"}));
    let v = share_shared_rw(&a.addr, "pair", b_url);
    let marker = v["marker"].as_str().unwrap().to_owned();
    assert!(
        marker.starts_with("db_sharing-") && marker.contains("--"),
        "{v}"
    );
    assert!(
        wait_for(30, || (exists(&a.addr, "col", "b1")
            && exists(b_addr, "col", "a1")
            && exists(b_addr, "col", &marker))
        .then_some(()))
        .is_some(),
        "both ways, marker included"
    );
    // Edits on both sides, a deletion that keeps the shared fields, and a conflicting edit.
    put(
        &a.addr,
        "col",
        "b1",
        json!({"type": "shared", "v": 2, "by": "a"}),
    );
    put(
        b_addr,
        "col",
        "a1",
        json!({"type": "shared", "v": 2, "by": "b"}),
    );
    put(b_addr, "col", "b2", json!({"type": "shared", "gone": true}));
    assert!(wait_for(30, || exists(&a.addr, "col", "b2").then_some(())).is_some());
    put(
        b_addr,
        "col",
        "b2",
        json!({"type": "shared", "_deleted": true}),
    );
    assert!(
        wait_for(30, || converged(
            &a.addr,
            b_addr,
            "col",
            &["a-private", "b-private"]
        )
        .then_some(()))
        .is_some(),
        "edits and the deletion converge"
    );
    assert!(!exists(&a.addr, "col", "b2"));
    // A concurrent edit on each side of the same revision: A edits, and B (whatever has
    // arrived meanwhile) gets a sibling of A's edit, as if written before it heard of it.
    let base = r(&a.addr, "GET", "/col/a1", None).1["_rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let (pos, hash) = base.split_once('-').unwrap();
    let pos: u64 = pos.parse().unwrap();
    put(
        &a.addr,
        "col",
        "a1",
        json!({"type": "shared", "v": 3, "by": "a"}),
    );
    let sibling = json!({"_id": "a1", "_rev": format!("{}-{}", pos + 1, "c".repeat(32)), "type": "shared", "v": 3, "by": "b-concurrent",
        "_revisions": {"start": pos + 1, "ids": ["c".repeat(32), hash]}});
    let (s, v) = r(
        b_addr,
        "POST",
        "/col/_bulk_docs",
        Some(&json!({"docs": [sibling], "new_edits": false})),
    );
    assert_eq!(s, 201, "{v}");
    assert!(
        wait_for(30, || (converged(
            &a.addr,
            b_addr,
            "col",
            &["a-private", "b-private"]
        ) && trees(&a.addr, "col")["a1"].len() == 2)
            .then_some(()))
        .is_some(),
        "a conflicting edit: both branches on both sides"
    );
    let wa = r(&a.addr, "GET", "/col/a1", None).1;
    let wb = r(b_addr, "GET", "/col/a1", None).1;
    assert_eq!(wa["_rev"], wb["_rev"], "same winner");
    assert!(
        !exists(&a.addr, "col", "b-private") && !exists(b_addr, "col", "a-private"),
        "outside the selector never crosses"
    );
    // Converged and idle: each side writes only the sentinels.
    common::assert_pair_idles(
        &client(&a.addr),
        &client(b_addr),
        "col",
        &json!({"type": "shared"}),
    );
    let (_, share) = r(&a.addr, "GET", "/_sharing/pair", None);
    assert_eq!(share["directions"].as_array().unwrap().len(), 2, "{share}");
    assert!(
        share["directions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "running"),
        "{share}"
    );
    assert_eq!(share["conflicts"], json!(["a1"]), "{share}");
    assert!(
        !share.to_string().contains(":pw@"),
        "credentials redacted: {share}"
    );
}

/// `POST /_sharing`: share `col`'s `{"type": "shared"}` documents read-write with `remote`.
fn share_shared_rw(addr: &str, id: &str, remote: &str) -> Value {
    let body = json!({"id": id, "local": "col", "remote": remote, "selector": {"type": "shared"}, "mode": "read-write"});
    let (s, v) = r(addr, "POST", "/_sharing", Some(&body));
    assert_eq!(s, 201, "{v}");
    v
}

#[test]
fn read_write_pair_between_two_settee_servers() {
    let a = common::start_admin();
    let b = common::start_admin();
    pair_converges(&a, &b.addr, &format!("http://{A}@{}/col", b.addr));
}

#[test]
fn read_write_pair_between_settee_and_pouchdb_server() {
    let a = common::start_admin();
    let p = PouchServer::start(&["--no-selector-shim"]);
    POUCH.lock().unwrap().push(p.addr().to_owned());
    pair_converges(&a, p.addr(), &format!("{}/col", p.1.trim_end_matches('/')));
    let (_, share) = r(&a.addr, "GET", "/_sharing/pair", None);
    let pull = share["directions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["direction"] == "pull")
        .unwrap()
        .clone();
    assert_eq!(pull["state"], "running", "{share}");
}

#[test]
fn stop_with_purge_leaves_the_peer_untouched_and_a_new_share_brings_them_back() {
    let a = common::start_admin();
    let b = common::start_admin();
    let b_url = format!("http://{A}@{}/col", b.addr);
    r(&a.addr, "PUT", "/col", None);
    r(&b.addr, "PUT", "/col", None);
    for i in 0..5 {
        put(
            &b.addr,
            "col",
            &format!("theirs{i}"),
            json!({"type": "shared", "i": i}),
        );
    }
    put(&a.addr, "col", "mine", json!({"type": "shared"}));
    share_shared_rw(&a.addr, "s", &b_url);
    assert!(wait_for(30, || (exists(&a.addr, "col", "theirs4")
        && exists(&b.addr, "col", "mine"))
    .then_some(()))
    .is_some());
    // A received doc edited here is kept by purge=true.
    put(
        &a.addr,
        "col",
        "theirs0",
        json!({"type": "shared", "edited": "here"}),
    );
    assert!(wait_for(30, || converged(&a.addr, &b.addr, "col", &[]).then_some(())).is_some());
    let peer_before = trees(&b.addr, "col");

    let (s, dry) = r(
        &a.addr,
        "DELETE",
        "/_sharing/s?purge=true&dry_run=true",
        None,
    );
    assert_eq!(s, 200, "{dry}");
    assert_eq!(
        dry["purged"],
        json!(["theirs1", "theirs2", "theirs3", "theirs4"]),
        "{dry}"
    );
    assert_eq!(
        dry["kept"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].clone())
            .collect::<Vec<_>>(),
        vec![json!("mine"), json!("theirs0")]
    );
    assert!(
        exists(&a.addr, "col", "theirs1"),
        "a dry run changes nothing"
    );

    let (s, out) = r(&a.addr, "DELETE", "/_sharing/s?purge=true", None);
    assert_eq!(s, 200, "{out}");
    assert_eq!(out["purged"], dry["purged"]);
    for i in 1..5 {
        assert!(
            !exists(&a.addr, "col", &format!("theirs{i}")),
            "purged here"
        );
    }
    assert!(exists(&a.addr, "col", "mine") && exists(&a.addr, "col", "theirs0"));
    let (_, ch) = r(&a.addr, "GET", "/col/_changes", None);
    let ids: Vec<&str> = ch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(
        !ids.iter()
            .any(|id| id.starts_with("theirs") && *id != "theirs0"),
        "no deletion shows in _changes: {ids:?}"
    );
    // The marker is deleted, and the deletion reached the peer before the share stopped,
    // so the peer's application no longer shows the data as shared.
    let marker = out["marker"].as_str().unwrap().to_owned();
    let row = ch["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == marker.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(row["deleted"], true, "the marker is deleted here: {ch}");
    assert_eq!(out["marker_deleted_on_peer"], true, "{out}");
    let (_, repl) = r(&a.addr, "GET", "/_replicator/_all_docs", None);
    assert_eq!(repl["rows"], json!([]), "replication documents removed");
    // Once the scheduler holds no job, nothing of the share can write any more.
    assert!(
        wait_for(30, || (r(&a.addr, "GET", "/_scheduler/jobs", None).1
            ["total_rows"]
            == 0)
            .then_some(()))
        .is_some(),
        "the share's jobs stop"
    );
    let mut peer_now = trees(&b.addr, "col");
    let peer_marker = peer_now.remove(&marker).unwrap_or_default();
    assert!(
        peer_marker.len() == 1 && peer_marker[0]["_deleted"] == true,
        "the peer's marker is deleted: {peer_marker:?}"
    );
    let mut peer_before = peer_before;
    peer_before.remove(&marker);
    assert_eq!(
        peer_now, peer_before,
        "the peer still has every other document, none deleted"
    );

    // Re-creating the share brings them back intact.
    share_shared_rw(&a.addr, "s", &b_url);
    assert!(
        wait_for(30, || converged(&a.addr, &b.addr, "col", &[]).then_some(())).is_some(),
        "back intact"
    );
}

#[test]
fn read_only_share_never_brings_writes_back() {
    let a = common::start_admin();
    let b = common::start_admin();
    r(&a.addr, "PUT", "/pub", None);
    r(&b.addr, "PUT", "/pub", None);
    put(&a.addr, "pub", "p1", json!({"type": "public"}));
    put(&a.addr, "pub", "secret", json!({"type": "private"}));
    let (s, v) = r(
        &a.addr,
        "POST",
        "/_sharing",
        Some(
            &json!({"id": "ro", "local": "pub", "remote": format!("http://{A}@{}/pub", b.addr), "selector": {"type": "public"}}),
        ),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["marker"], Value::Null, "no marker for read-only");
    assert!(wait_for(30, || exists(&b.addr, "pub", "p1").then_some(())).is_some());
    put(
        &b.addr,
        "pub",
        "p1",
        json!({"type": "public", "changed": "on the receiving side"}),
    );
    put(&b.addr, "pub", "b-new", json!({"type": "public"}));
    // A sentinel written here after B's writes crosses to B: the share is live and caught
    // up, and its only job is the push (nothing pulls B's writes back).
    put(&a.addr, "pub", "sentinel", json!({"type": "public"}));
    assert!(wait_for(30, || exists(&b.addr, "pub", "sentinel").then_some(())).is_some());
    let (_, jobs) = r(&a.addr, "GET", "/_scheduler/jobs", None);
    assert_eq!(jobs["total_rows"], 1, "{jobs}");
    assert!(
        jobs["jobs"][0]["target"]
            .as_str()
            .is_some_and(|t| t.contains(&b.addr)),
        "{jobs}"
    );
    assert!(!exists(&a.addr, "pub", "b-new"));
    assert!(r(&a.addr, "GET", "/pub/p1", None)
        .1
        .get("changed")
        .is_none());
    assert!(!exists(&b.addr, "pub", "secret"));
    let (_, share) = r(&a.addr, "GET", "/_sharing/ro", None);
    assert_eq!(share["directions"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_shares_are_refused_and_nothing_is_half_created() {
    let a = common::start_admin();
    let b = common::start_admin();
    r(&a.addr, "PUT", "/col", None);
    r(&b.addr, "PUT", "/col", None);
    let remote = format!("http://{A}@{}/col", b.addr);
    let cases = [
        (
            json!({"id": "x", "local": "nope", "remote": remote, "selector": {"t": 1}}),
            404,
            "does not exist",
        ),
        (
            json!({"id": "x", "local": "col", "remote": "http://u:secret@127.0.0.1:9/col", "selector": {"t": 1}}),
            400,
            "cannot be used",
        ),
        (
            json!({"id": "x", "local": "col", "remote": remote, "mode": "read-write"}),
            400,
            "`selector` is missing",
        ),
        (
            json!({"id": "x", "local": "col", "remote": remote, "selector": {"t": {"$bad": 1}}}),
            400,
            "`selector` is invalid",
        ),
        (
            json!({"id": "x", "local": "col", "remote": remote, "selector": {"t": 1}, "mode": "both"}),
            400,
            "`mode`",
        ),
        (
            json!({"id": "Bad Id", "local": "col", "remote": remote, "selector": {"t": 1}}),
            400,
            "share id",
        ),
        // Selectors that look at no content share everything: only with an explicit `all`.
        (
            json!({"id": "x", "local": "col", "remote": remote, "selector": {}}),
            400,
            "\"all\": true",
        ),
        (
            json!({"id": "x", "local": "col", "remote": remote, "selector": {"_id": {"$gt": null}}}),
            400,
            "matches every document",
        ),
        (
            json!({"id": "x", "local": "col", "remote": remote, "selector": {"t": 1}, "all": "yes"}),
            400,
            "`all`",
        ),
        (
            json!({"id": "x", "local": "col", "remote": remote, "selector": {"t": 1}, "mode": "read-write", "fields": ["t"]}),
            400,
            "read-write share cannot have `fields`",
        ),
        (
            json!({"id": "x", "local": "col", "remote": remote, "selector": {"t": 1}, "fields": "t"}),
            400,
            "`fields` must be an array",
        ),
        (
            json!({"id": "x", "local": "col", "remote": remote, "selector": {"t": 1}, "mode": "read-write", "local_uuid": "a--b"}),
            400,
            "`local_uuid`",
        ),
    ];
    for (body, status, reason) in cases {
        let (s, v) = r(&a.addr, "POST", "/_sharing", Some(&body));
        assert_eq!(s, status, "{body}: {v}");
        assert!(
            v["reason"].as_str().unwrap().contains(reason),
            "{body}: {v}"
        );
        assert!(!v.to_string().contains("secret"), "{v}");
    }
    assert_eq!(
        r(&a.addr, "GET", "/_replicator", None).1["doc_count"],
        0,
        "no orphan replication document"
    );
    assert_eq!(
        r(&a.addr, "GET", "/col", None).1["doc_count"],
        0,
        "no marker document"
    );
    let everything =
        json!({"id": "all", "local": "col", "remote": remote, "selector": {}, "all": true});
    let (s, v) = r(&a.addr, "POST", "/_sharing", Some(&everything));
    assert_eq!(s, 201, "an explicit `all` shares the whole database: {v}");
    assert_eq!(r(&a.addr, "DELETE", "/_sharing/all", None).0, 200);
    let ok = json!({"id": "x", "local": "col", "remote": remote, "selector": {"t": 1}, "mode": "read-write"});
    assert_eq!(r(&a.addr, "POST", "/_sharing", Some(&ok)).0, 201);
    let (s, v) = r(&a.addr, "POST", "/_sharing", Some(&ok));
    assert_eq!(s, 409, "{v}");
    assert_eq!(r(&a.addr, "GET", "/_replicator", None).1["doc_count"], 2);
    // Editing the share changes both directions together.
    let (s, v) = r(
        &a.addr,
        "PUT",
        "/_sharing/x",
        Some(&json!({"selector": {"t": 2}})),
    );
    assert_eq!(s, 200, "{v}");
    for d in ["share-x-push", "share-x-pull"] {
        let doc = r(&a.addr, "GET", &format!("/_replicator/{d}"), None).1;
        assert_eq!(doc["settee_share"]["selector"], json!({"t": 2}), "{doc}");
    }
    let (s, _) = r(
        &a.addr,
        "PUT",
        "/_sharing/x",
        Some(&json!({"mode": "read-only"})),
    );
    assert_eq!(s, 200);
    assert_eq!(
        r(&a.addr, "GET", "/_replicator", None).1["doc_count"],
        1,
        "read-only keeps only the push"
    );
    assert_eq!(r(&a.addr, "GET", "/_sharing", None).1["total_rows"], 1);
}

#[test]
fn a_share_names_the_applications_uuids_and_can_limit_fields() {
    let a = common::start_admin();
    let b = common::start_admin();
    r(&a.addr, "PUT", "/col", None);
    r(&b.addr, "PUT", "/col", None);
    put(
        &a.addr,
        "col",
        "i1",
        json!({"type": "item", "title": "T", "notes": "private"}),
    );
    let remote = format!("http://{A}@{}/col", b.addr);
    let body = json!({"id": "rw", "local": "col", "remote": remote, "mode": "read-write",
        "selector": {"type": "item"}, "local_uuid": "cfg-mine", "remote_uuid": "cfg-theirs"});
    let (s, v) = r(&a.addr, "POST", "/_sharing", Some(&body));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["marker"], "db_sharing-cfg-mine--cfg-theirs");
    assert!(wait_for(30, || exists(
        &b.addr,
        "col",
        "db_sharing-cfg-mine--cfg-theirs"
    )
    .then_some(()))
    .is_some());
    // What each direction would send now: nothing once both sides caught up.
    let pending = wait_for(30, || {
        let (s, v) = r(&a.addr, "GET", "/_sharing/rw/pending", None);
        (s == 200 && v["push"]["counts"]["total"] == 0 && v["pull"]["counts"]["total"] == 0)
            .then_some(v)
    });
    assert!(
        pending.is_some(),
        "{:?}",
        r(&a.addr, "GET", "/_sharing/rw/pending", None)
    );
    assert_eq!(r(&a.addr, "GET", "/_sharing/nope/pending", None).0, 404);
    assert_eq!(r(&a.addr, "DELETE", "/_sharing/rw", None).0, 200);

    // A read-only share with a field list: only the listed fields cross.
    let body = json!({"id": "ro", "local": "col", "remote": remote, "selector": {"type": "item"},
        "fields": ["type", "title"]});
    let (s, v) = r(&a.addr, "POST", "/_sharing", Some(&body));
    assert_eq!(s, 201, "{v}");
    put(
        &a.addr,
        "col",
        "i2",
        json!({"type": "item", "title": "T2", "notes": "private"}),
    );
    let got = wait_for(30, || {
        let (s, d) = r(&b.addr, "GET", "/col/i2", None);
        (s == 200).then_some(d)
    })
    .unwrap();
    assert_eq!(got["title"], "T2");
    assert!(got.get("notes").is_none(), "{got}");
    // i1 crossed whole through the read-write share: the projection replaces that copy.
    let i1 = wait_for(30, || {
        let (_, d) = r(&b.addr, "GET", "/col/i1", None);
        d.get("notes").is_none().then_some(d)
    });
    assert!(
        i1.is_some_and(|d| d["title"] == "T"),
        "the whole copy was replaced"
    );
}
