//! settee against Apache CouchDB 3.5, the peer its users run: both replicators in both
//! directions, one-shot and continuous, the sharing seed's documents on either product,
//! checkpoints resumed across products, a share between the two, and settee replicating
//! between two CouchDB databases. Each test ends by comparing revision trees document by
//! document (`open_revs=all&revs=true`, leaves and their histories), not counts.
//!
//! Skipped with one line when no CouchDB is available (see `common::couchdb`).

mod common;

use std::collections::BTreeMap;

use common::couchdb::Couch;
use common::*;
use serde_json::{json, Value};

/// A request with an `Authorization` header to any server.
fn auth_req(
    addr: &str,
    auth: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let (s, _, b) = raw(
        addr,
        method,
        path,
        &[("Authorization", auth)],
        body.map(|b| b.to_string().into_bytes()),
    );
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// A server and an admin's `Authorization` header: the same API on both products.
#[derive(Clone)]
struct Peer {
    addr: String,
    auth: String,
}

impl Peer {
    fn settee(s: &Server) -> Peer {
        Peer {
            addr: s.addr.clone(),
            auth: admin_basic(),
        }
    }
    fn couch(c: &Couch) -> Peer {
        Peer {
            addr: c.addr.clone(),
            auth: c.basic(),
        }
    }
    fn req(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        auth_req(&self.addr, &self.auth, method, path, body)
    }
    fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (s, v) = self.req(method, path, body);
        assert!(
            (200..300).contains(&s),
            "{method} {path} on {}: {s} {v}",
            self.addr
        );
        v
    }
    fn put(&self, db: &str, doc: Value) -> String {
        let id = doc["_id"].as_str().unwrap().to_owned();
        self.ok("PUT", &format!("/{db}/{id}"), Some(&doc))["rev"]
            .as_str()
            .unwrap()
            .to_owned()
    }
    fn rev(&self, db: &str, id: &str) -> String {
        self.ok("GET", &format!("/{db}/{id}"), None)["_rev"]
            .as_str()
            .unwrap()
            .to_owned()
    }
    /// The revision trees, each attachment identified by a hash of its bytes as served
    /// rather than by its `digest`: CouchDB digests compressible types (`text/*`, JSON) over
    /// its gzip-compressed form, settee over the content (COMPATIBILITY.md).
    fn trees(&self, db: &str) -> BTreeMap<String, Vec<Value>> {
        let mut t = trees_with(&self.addr, db, &[("Authorization", &self.auth)]);
        for (id, leaves) in t.iter_mut() {
            for leaf in leaves.iter_mut() {
                let rev = leaf["_rev"].as_str().unwrap_or_default().to_owned();
                let Some(atts) = leaf.get_mut("_attachments").and_then(Value::as_object_mut) else {
                    continue;
                };
                for (name, a) in atts.iter_mut() {
                    let (s, _, bytes) = raw(
                        &self.addr,
                        "GET",
                        &format!("/{db}/{id}/{name}?rev={rev}"),
                        &[("Authorization", &self.auth)],
                        None,
                    );
                    assert_eq!(s, 200, "attachment {id}/{name}");
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    std::hash::Hash::hash(&bytes, &mut h);
                    a["digest"] = json!(std::hash::Hasher::finish(&h).to_string());
                    assert_eq!(a["length"], json!(bytes.len()), "length of {id}/{name}");
                }
            }
        }
        t
    }
    fn update_seq(&self, db: &str) -> String {
        self.ok("GET", &format!("/{db}"), None)["update_seq"].to_string()
    }
}

/// What every interop test replicates: inserts, updates, a deletion, a conflict with both
/// branches, attachments inline and a 3 MiB one written standalone, a design document and a
/// `_local` document (which must not cross).
fn fill(p: &Peer, db: &str, prefix: &str) {
    p.ok("PUT", &format!("/{db}"), None);
    let docs: Vec<Value> = (0..40)
        .map(|i| json!({"_id": format!("{prefix}{i:03}"), "n": i, "type": if i % 2 == 0 { "item" } else { "note" }}))
        .collect();
    p.ok(
        "POST",
        &format!("/{db}/_bulk_docs"),
        Some(&json!({"docs": docs})),
    );
    for i in 0..5 {
        let id = format!("{prefix}{i:03}");
        let rev = p.rev(db, &id);
        p.put(
            db,
            json!({"_id": id, "_rev": rev, "n": i, "edited": true, "type": "item"}),
        );
    }
    let id = format!("{prefix}010");
    let rev = p.rev(db, &id);
    p.ok("DELETE", &format!("/{db}/{id}?rev={rev}"), None);
    p.ok(
        "POST",
        &format!("/{db}/_bulk_docs"),
        Some(&json!({"new_edits": false, "docs": [
            {"_id": format!("{prefix}conflict"), "_rev": "2-aaaa", "_revisions": {"start": 2, "ids": ["aaaa", "1111"]}, "side": "a"},
            {"_id": format!("{prefix}conflict"), "_rev": "2-bbbb", "_revisions": {"start": 2, "ids": ["bbbb", "1111"]}, "side": "b"},
        ]})),
    );
    p.put(
        db,
        json!({"_id": format!("{prefix}inline"), "_attachments": {
            "a.txt": {"content_type": "text/plain", "data": "aGVsbG8gd29ybGQ="}
        }}),
    );
    let big_id = format!("{prefix}big");
    let rev = p.put(db, json!({"_id": big_id, "kind": "binary"}));
    let big: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (s, _, b) = raw(
        &p.addr,
        "PUT",
        &format!("/{db}/{big_id}/blob.bin?rev={rev}"),
        &[
            ("Authorization", &p.auth),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(big),
    );
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    p.put(
        db,
        json!({"_id": format!("_design/{prefix}ddoc"), "views": {"v": {"map": "function(d){emit(d.n)}"}}}),
    );
    p.put(
        db,
        json!({"_id": format!("_local/{prefix}here"), "stays": true}),
    );
}

/// Asserts two databases hold the same documents with the same revision trees.
fn assert_same_trees(a: &Peer, adb: &str, b: &Peer, bdb: &str) {
    let (ta, tb) = (a.trees(adb), b.trees(bdb));
    assert!(ta.len() > 40, "{adb} holds only {} documents", ta.len());
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "document ids differ"
    );
    for (id, leaves) in &ta {
        assert_eq!(leaves, &tb[id], "revision tree of {id}");
    }
}

fn no_local_crossed(p: &Peer, db: &str) {
    let (s, _) = p.req("GET", &format!("/{db}/_local/shere"), None);
    assert_eq!(s, 404, "a _local document crossed into {db}");
    let (s, _) = p.req("GET", &format!("/{db}/_local/chere"), None);
    assert_eq!(s, 404, "a _local document crossed into {db}");
}

/// `POST /_replicate` on `on`, one-shot; answers the report.
fn replicate(on: &Peer, source: &str, target: &str) -> Value {
    let (s, v) = on.req(
        "POST",
        "/_replicate",
        Some(&json!({"source": source, "target": target, "create_target": true})),
    );
    assert_eq!(
        s, 200,
        "replication {source} -> {target} on {}: {v}",
        on.addr
    );
    v
}

/// Documents a run wrote: CouchDB answers a run that found nothing new since its checkpoint
/// with `no_changes` and the history of earlier sessions.
fn written(report: &Value) -> u64 {
    if report["no_changes"] == json!(true) {
        return 0;
    }
    report["history"][0]["docs_written"]
        .as_u64()
        .or_else(|| report["docs_written"].as_u64())
        .unwrap_or_else(|| panic!("no docs_written in {report}"))
}

#[test]
fn settee_replicator_pulls_from_and_pushes_to_couchdb() {
    let Some(couch) = Couch::start("settee_replicator_pulls_from_and_pushes_to_couchdb") else {
        return;
    };
    let s = start_admin();
    let (c, st) = (Peer::couch(&couch), Peer::settee(&s));
    fill(&c, "origin", "c");
    // CouchDB -> settee, pulled by settee.
    let r = replicate(&st, &couch.url("origin"), "pulled");
    assert!(written(&r) > 40, "{r}");
    assert_same_trees(&c, "origin", &st, "pulled");
    no_local_crossed(&st, "pulled");
    let seq = st.update_seq("pulled");
    assert_eq!(written(&replicate(&st, &couch.url("origin"), "pulled")), 0);
    assert_eq!(st.update_seq("pulled"), seq, "a second run wrote");
    // settee -> CouchDB, pushed by settee, with settee's own writes on top.
    fill(&st, "mine", "s");
    replicate(&st, "pulled", "mine");
    let r = replicate(&st, "mine", &couch.url("pushed"));
    assert!(written(&r) > 80, "{r}");
    assert_same_trees(&st, "mine", &c, "pushed");
    no_local_crossed(&c, "pushed");
    let seq = c.update_seq("pushed");
    assert_eq!(written(&replicate(&st, "mine", &couch.url("pushed"))), 0);
    assert_eq!(c.update_seq("pushed"), seq, "a second run wrote");
}

#[test]
fn couchdb_replicator_pulls_from_and_pushes_to_settee() {
    let Some(couch) = Couch::start("couchdb_replicator_pulls_from_and_pushes_to_settee") else {
        return;
    };
    let s = start_admin();
    let (c, st) = (Peer::couch(&couch), Peer::settee(&s));
    let settee_url = |db: &str| format!("http://{ADMIN}@{}/{db}", s.addr);
    fill(&st, "origin", "s");
    // settee -> CouchDB, pulled by CouchDB.
    let r = replicate(&c, &settee_url("origin"), &couch.url("pulled"));
    assert!(written(&r) > 40, "{r}");
    assert_same_trees(&st, "origin", &c, "pulled");
    no_local_crossed(&c, "pulled");
    let seq = c.update_seq("pulled");
    assert_eq!(
        written(&replicate(&c, &settee_url("origin"), &couch.url("pulled"))),
        0
    );
    assert_eq!(c.update_seq("pulled"), seq, "a second run wrote");
    // CouchDB -> settee, pushed by CouchDB, with CouchDB's own writes on top.
    fill(&c, "mine", "c");
    replicate(&c, &couch.url("pulled"), &couch.url("mine"));
    let r = replicate(&c, &couch.url("mine"), &settee_url("pushed"));
    assert!(written(&r) > 80, "{r}");
    assert_same_trees(&c, "mine", &st, "pushed");
    no_local_crossed(&st, "pushed");
    let seq = st.update_seq("pushed");
    let again = replicate(&c, &couch.url("mine"), &settee_url("pushed"));
    assert_eq!(written(&again), 0, "{again}");
    assert_eq!(st.update_seq("pushed"), seq, "a second run wrote");
}
