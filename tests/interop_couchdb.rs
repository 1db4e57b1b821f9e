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
        common::Client::with_authorization(&self.addr, Some(self.auth.clone()))
            .req(method, path, body)
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

/// The sharing seed's replication document, exactly as its guide shows it: endpoints as
/// objects with an `Authorization` header, continuous, selecting collections and items.
fn seed_document(
    id: &str,
    source: &str,
    source_auth: &str,
    target: &str,
    target_auth: &str,
) -> Value {
    json!({
        "_id": id,
        "source": {"url": source, "headers": {"Authorization": source_auth}},
        "target": {"url": target, "headers": {"Authorization": target_auth}},
        "continuous": true,
        "selector": {"$or": [{"type": "collection"}, {"type": "item"}]},
    })
}

/// Writes a collection, an item and a note to `db`, then an item as the sentinel; waits until
/// the sentinel reached `to`'s `to_db` and proves the note (written before it) did not cross.
fn shared_subset_crosses(from: &Peer, db: &str, to: &Peer, to_db: &str, tag: &str) {
    from.put(
        db,
        json!({"_id": format!("{tag}-col"), "type": "collection"}),
    );
    from.put(db, json!({"_id": format!("{tag}-item"), "type": "item", "data": {"collection_id": format!("{tag}-col")}}));
    from.put(db, json!({"_id": format!("{tag}-note"), "type": "note"}));
    from.put(
        db,
        json!({"_id": format!("{tag}-sentinel"), "type": "item"}),
    );
    // CouchDB's workers write batches in parallel, so the sentinel may land before the
    // others; but the note was judged by the source's filtered feed before the sentinel was
    // sent, so once the sentinel is there the note's absence is final.
    for kind in ["sentinel", "col", "item"] {
        let arrived = wait_for(60, || {
            (to.req("GET", &format!("/{to_db}/{tag}-{kind}"), None).0 == 200).then_some(())
        });
        assert!(arrived.is_some(), "{tag}-{kind} never reached {to_db}");
    }
    assert_eq!(
        to.req("GET", &format!("/{to_db}/{tag}-note"), None).0,
        404,
        "{tag}: a note crossed the selector"
    );
}

#[test]
fn the_sharing_seed_document_runs_on_either_product_pointing_at_the_other() {
    let Some(couch) =
        Couch::start("the_sharing_seed_document_runs_on_either_product_pointing_at_the_other")
    else {
        return;
    };
    let s = start_admin();
    let (c, st) = (Peer::couch(&couch), Peer::settee(&s));
    for db in ["shared", "received"] {
        c.ok("PUT", &format!("/{db}"), None);
        st.ok("PUT", &format!("/{db}"), None);
    }
    let settee_db = |db: &str| format!("http://{}/{db}", s.addr);
    // On CouchDB: settee's database shared into CouchDB's.
    c.put(
        "_replicator",
        seed_document(
            "from-settee",
            &settee_db("shared"),
            &admin_basic(),
            &couch.bare_url("received"),
            &couch.basic(),
        ),
    );
    // On settee: CouchDB's database shared into settee's.
    st.put(
        "_replicator",
        seed_document(
            "from-couch",
            &couch.bare_url("shared"),
            &couch.basic(),
            &settee_db("received"),
            &admin_basic(),
        ),
    );
    shared_subset_crosses(&st, "shared", &c, "received", "one");
    shared_subset_crosses(&c, "shared", &st, "received", "two");
    // Continuous: later edits follow. A plain deletion does not: its tombstone has no
    // `type`, so the selector refuses it, on CouchDB as on settee (settee's `unmatched`
    // option is for that); the later subsets prove it was judged and left out.
    let rev = st.rev("shared", "one-item");
    st.put(
        "shared",
        json!({"_id": "one-item", "_rev": rev, "type": "item", "edited": true}),
    );
    let rev = c.rev("shared", "two-col");
    c.ok("DELETE", &format!("/shared/two-col?rev={rev}"), None);
    let rev = st.rev("shared", "one-col");
    st.ok("DELETE", &format!("/shared/one-col?rev={rev}"), None);
    shared_subset_crosses(&st, "shared", &c, "received", "three");
    shared_subset_crosses(&c, "shared", &st, "received", "four");
    // The edit went before "three", but CouchDB's replicator may write batches out of order:
    // wait for it as for the others rather than assume it landed first.
    let edited = wait_for(60, || {
        (c.ok("GET", "/received/one-item", None)["edited"] == true).then_some(())
    });
    assert!(
        edited.is_some(),
        "the edit of one-item never reached CouchDB"
    );
    assert_eq!(st.req("GET", "/received/two-col", None).0, 200);
    assert_eq!(c.req("GET", "/received/one-col", None).0, 200);
    // Both products report the job as running, with credentials nowhere in the status.
    let (_, sched) = st.req("GET", "/_scheduler/docs/_replicator/from-couch", None);
    assert_eq!(sched["state"], "running", "{sched}");
    assert!(!sched.to_string().contains(&couch.basic()[6..]), "{sched}");
    let (_, sched) = c.req("GET", "/_scheduler/docs/_replicator/from-settee", None);
    assert_eq!(sched["state"], "running", "{sched}");
    // Trees of what crossed are the same on both sides.
    let subset = |p: &Peer, db: &str| -> BTreeMap<String, Vec<Value>> {
        p.trees(db)
            .into_iter()
            .filter(|(id, _)| !id.ends_with("-note") && id != "one-col" && id != "two-col")
            .collect()
    };
    assert_eq!(subset(&st, "shared"), subset(&c, "received"));
    assert_eq!(subset(&c, "shared"), subset(&st, "received"));
}

#[test]
fn doc_ids_and_selectors_filter_the_same_way_with_both_replicators() {
    let Some(couch) =
        Couch::start("doc_ids_and_selectors_filter_the_same_way_with_both_replicators")
    else {
        return;
    };
    let s = start_admin();
    let (c, st) = (Peer::couch(&couch), Peer::settee(&s));
    fill(&c, "origin", "c");
    let settee_url = |db: &str| format!("http://{ADMIN}@{}/{db}", s.addr);
    let ids = json!([
        "c001",
        "c010",
        "cconflict",
        "cbig",
        "_design/cddoc",
        "missing"
    ]);
    let one_shot = |on: &Peer, source: String, target: String, filter: (&str, Value)| {
        let mut body = json!({"source": source, "target": target, "create_target": true});
        body[filter.0] = filter.1;
        let (st_, v) = on.req("POST", "/_replicate", Some(&body));
        assert_eq!(st_, 200, "{v}");
    };
    // settee's replicator and CouchDB's, each pulling the same doc_ids into settee.
    one_shot(
        &st,
        couch.url("origin"),
        "by-settee".into(),
        ("doc_ids", ids.clone()),
    );
    one_shot(
        &c,
        couch.url("origin"),
        settee_url("by-couch"),
        ("doc_ids", ids),
    );
    let t = st.trees("by-settee");
    assert_eq!(
        t.keys().collect::<Vec<_>>(),
        ["_design/cddoc", "c001", "c010", "cbig", "cconflict"]
    );
    assert_eq!(t, st.trees("by-couch"));
    assert_eq!(t["cconflict"].len(), 2, "both branches of the conflict");
    // The same with a selector.
    let sel = json!({"type": "item", "n": {"$lt": 10}});
    one_shot(
        &st,
        couch.url("origin"),
        "sel-settee".into(),
        ("selector", sel.clone()),
    );
    one_shot(
        &c,
        couch.url("origin"),
        settee_url("sel-couch"),
        ("selector", sel),
    );
    let t = st.trees("sel-settee");
    assert_eq!(
        t.keys().collect::<Vec<_>>(),
        ["c000", "c001", "c002", "c003", "c004", "c006", "c008"]
    );
    assert_eq!(t, st.trees("sel-couch"));
}

#[test]
fn settee_replicates_between_two_couchdb_databases() {
    let Some(couch) = Couch::start("settee_replicates_between_two_couchdb_databases") else {
        return;
    };
    let s = start_admin();
    let (c, st) = (Peer::couch(&couch), Peer::settee(&s));
    fill(&c, "big-data", "c");
    c.ok("PUT", "/copy", None);
    st.put(
        "_replicator",
        json!({"_id": "couch-to-couch", "source": couch.url("big-data"), "target": couch.url("copy"), "continuous": true}),
    );
    c.put("big-data", json!({"_id": "later", "type": "item"}));
    assert!(
        wait_for(60, || (c.req("GET", "/copy/later", None).0 == 200)
            .then_some(()))
        .is_some(),
        "settee did not copy between the CouchDB databases"
    );
    assert!(
        wait_for(30, || (c.trees("big-data") == c.trees("copy"))
            .then_some(()))
        .is_some(),
        "trees differ"
    );
    assert_same_trees(&c, "big-data", &c, "copy");
    no_local_crossed(&c, "copy");
}

/// `n` small documents in `db` (created), written in a few requests.
fn many(p: &Peer, db: &str, n: usize) {
    p.ok("PUT", &format!("/{db}"), None);
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let docs: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"_id": format!("m{i:06}"), "n": i, "pad": "x".repeat(200)}))
            .collect();
        p.ok(
            "POST",
            &format!("/{db}/_bulk_docs"),
            Some(&json!({"docs": docs})),
        );
    }
}

fn doc_count(p: &Peer, db: &str) -> u64 {
    p.req("GET", &format!("/{db}"), None).1["doc_count"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until `db` holds at least `n` documents (panics after `secs`).
fn until_count(p: &Peer, db: &str, n: u64, secs: u64) -> u64 {
    wait_for(secs, || {
        let c = doc_count(p, db);
        (c >= n).then_some(c)
    })
    .unwrap_or_else(|| panic!("{db} never held {n} documents (has {})", doc_count(p, db)))
}

/// The sessions recorded in the replication checkpoint kept in `db` (found through
/// `_local_docs`, which both products serve), newest first.
fn checkpoint_history(p: &Peer, db: &str) -> Vec<Value> {
    let (s, v) = p.req("GET", &format!("/{db}/_local_docs?include_docs=true"), None);
    assert_eq!(s, 200, "_local_docs of {db}: {v}");
    let checkpoints: Vec<&Value> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["doc"])
        .filter(|d| d["history"].is_array())
        .collect();
    assert_eq!(checkpoints.len(), 1, "one checkpoint in {db}: {v}");
    checkpoints[0]["history"].as_array().unwrap().clone()
}

const MANY: usize = 10_000;
/// CouchDB's replicator with one worker writes a few hundred documents a second.
const SLOW_MANY: usize = 6_000;

#[test]
fn settee_killed_mid_run_resumes_from_its_checkpoint_on_couchdb() {
    let Some(couch) = Couch::start("settee_killed_mid_run_resumes_from_its_checkpoint_on_couchdb")
    else {
        return;
    };
    let mut s = Server::process(&["--admin", common::ADMIN]);
    let c = Peer::couch(&couch);
    many(&c, "origin", MANY);
    // One worker and small batches, so the run lasts long enough to be killed in.
    let doc = json!({"_id": "pull", "source": couch.url("origin"), "target": "copy",
        "create_target": true, "worker_processes": 1, "worker_batch_size": 50});
    Peer::settee(&s).put("_replicator", doc);
    until_count(&Peer::settee(&s), "copy", 500, 60);
    // Killed once a checkpoint is on CouchDB (the first comes within a second).
    let has_checkpoint = || {
        let (_, v) = c.req("GET", "/origin/_local_docs?include_docs=true", None);
        v["rows"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["doc"]["history"].is_array()))
    };
    assert!(
        wait_for(30, || has_checkpoint().then_some(())).is_some(),
        "no checkpoint"
    );
    let before = doc_count(&Peer::settee(&s), "copy");
    s.kill();
    assert!(
        before < MANY as u64,
        "the run ended before it could be killed"
    );
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s = Server::start_in(dir, &["--admin", ADMIN]);
    let st = Peer::settee(&s);
    let done = wait_for(120, || {
        let (_, d) = st.req("GET", "/_replicator/pull", None);
        (d["_replication_state"] == "completed").then_some(d)
    })
    .expect("the resumed run completes");
    // The resumed session started from a checkpoint stored on CouchDB, not from 0, and wrote
    // only what the killed one had not.
    let history = checkpoint_history(&c, "origin");
    assert!(history.len() >= 2, "{history:?}");
    assert_ne!(history[0]["start_last_seq"], json!(0), "{history:?}");
    let resent = done["_replication_stats"]["docs_written"].as_u64().unwrap();
    assert!(
        resent < MANY as u64 - before / 2,
        "the resumed run wrote {resent} of {MANY} after {before} were there"
    );
    assert_eq!(doc_count(&st, "copy"), MANY as u64);
    assert_same_trees(&c, "origin", &st, "copy");
}

#[test]
fn couchdb_killed_mid_run_resumes_from_its_checkpoint_on_settee() {
    let Some(mut couch) =
        Couch::start("couchdb_killed_mid_run_resumes_from_its_checkpoint_on_settee")
    else {
        return;
    };
    let s = start_admin();
    let st = Peer::settee(&s);
    many(&st, "origin", SLOW_MANY);
    let source = format!("http://{ADMIN}@{}/origin", s.addr);
    let doc = json!({"_id": "pull", "source": source, "target": couch.url("copy"),
        "create_target": true, "checkpoint_interval": 500, "worker_processes": 1,
        "worker_batch_size": 100});
    Peer::couch(&couch).put("_replicator", doc);
    let before = until_count(&Peer::couch(&couch), "copy", 1500, 90);
    assert!(
        before < SLOW_MANY as u64,
        "the run ended before it could be killed"
    );
    // Past a checkpoint (CouchDB writes one to the source too), then killed as a crash would.
    let checkpointed = || {
        let (_, v) = st.req("GET", "/origin/_local_docs?include_docs=true", None);
        v["rows"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["doc"]["history"].is_array()))
    };
    assert!(
        wait_for(60, || checkpointed().then_some(())).is_some(),
        "CouchDB wrote no checkpoint to settee"
    );
    couch.restart();
    let c = Peer::couch(&couch);
    let at_restart = doc_count(&c, "copy");
    let done = wait_for(180, || {
        let (_, d) = c.req("GET", "/_scheduler/docs/_replicator/pull", None);
        (d["state"] == "completed").then_some(d)
    });
    assert!(done.is_some(), "CouchDB's resumed run did not complete");
    let history = checkpoint_history(&st, "origin");
    assert!(history.len() >= 2, "{history:?}");
    assert_ne!(history[0]["start_last_seq"], json!(0), "{history:?}");
    // CouchDB's counters add up every session of a job, so the resumed session is judged by
    // where it started: past what was written before the kill (settee's sequences count
    // documents here, one write each).
    let resumed_at = seq_number(&history[0]["start_last_seq"]);
    assert!(
        resumed_at >= before / 2 && resumed_at <= at_restart,
        "resumed at {resumed_at}; {before} were written before the kill, {at_restart} after"
    );
    assert_eq!(doc_count(&c, "copy"), SLOW_MANY as u64);
    assert_same_trees(&st, "origin", &c, "copy");
}

#[test]
fn a_read_write_share_with_couchdb_converges_and_stopping_with_purge_leaves_couchdb_untouched() {
    let Some(couch) = Couch::start("a_read_write_share_with_couchdb_converges_and_stopping_with_purge_leaves_couchdb_untouched") else {
        return;
    };
    let s = start_admin();
    let (c, st) = (Peer::couch(&couch), Peer::settee(&s));
    st.ok("PUT", "/col", None);
    c.ok("PUT", "/col", None);
    st.put("col", json!({"_id": "a1", "type": "shared", "v": 1}));
    st.put("col", json!({"_id": "a-private", "type": "mine"}));
    c.put("col", json!({"_id": "b1", "type": "shared", "v": 1}));
    c.put("col", json!({"_id": "b2", "type": "shared", "v": 1}));
    c.put("col", json!({"_id": "b-private", "type": "theirs"}));
    let share = st.ok(
        "POST",
        "/_sharing",
        Some(
            &json!({"id": "pair", "local": "col", "remote": couch.url("col"),
            "selector": {"type": "shared"}, "mode": "read-write"}),
        ),
    );
    let marker = share["marker"].as_str().unwrap().to_owned();
    let there = |p: &Peer, id: &str| p.req("GET", &format!("/col/{id}"), None).0 == 200;
    assert!(
        wait_for(60, || (there(&st, "b1")
            && there(&st, "b2")
            && there(&c, "a1")
            && there(&c, &marker))
        .then_some(()))
        .is_some(),
        "both ways, the marker included"
    );
    // Edits on both sides, one of them to the other side's document.
    let rev = c.rev("col", "a1");
    c.put(
        "col",
        json!({"_id": "a1", "_rev": rev, "type": "shared", "v": 2, "by": "couch"}),
    );
    let rev = st.rev("col", "b2");
    st.put(
        "col",
        json!({"_id": "b2", "_rev": rev, "type": "shared", "v": 2, "by": "settee"}),
    );
    let shared = |p: &Peer| -> BTreeMap<String, Vec<Value>> {
        p.trees("col")
            .into_iter()
            .filter(|(id, _)| !id.ends_with("-private"))
            .collect()
    };
    assert!(
        wait_for(60, || (shared(&st) == shared(&c)
            && c.ok("GET", "/col/b2", None)["by"] == "settee"
            && st.ok("GET", "/col/a1", None)["by"] == "couch")
            .then_some(()))
        .is_some(),
        "the shared documents converge: {:?} vs {:?}",
        shared(&st).keys(),
        shared(&c).keys()
    );
    assert_eq!(st.req("GET", "/col/b-private", None).0, 404);
    assert_eq!(c.req("GET", "/col/a-private", None).0, 404);
    let couch_before = c.trees("col");
    // Stop with purge: what came from CouchDB and was not edited here leaves settee; CouchDB
    // keeps everything, only its copy of the marker is deleted.
    let (code, out) = st.req("DELETE", "/_sharing/pair?purge=true", None);
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["purged"], json!(["b1"]), "{out}");
    assert_eq!(out["marker_deleted_on_peer"], true, "{out}");
    assert!(!there(&st, "b1"));
    assert!(there(&st, "b2") && there(&st, "a1"), "edited or ours: kept");
    let mut couch_after = c.trees("col");
    let mut couch_before = couch_before;
    let m_after = couch_after.remove(&marker).unwrap();
    couch_before.remove(&marker);
    assert_eq!(m_after.len(), 1);
    assert_eq!(m_after[0]["_deleted"], true, "{m_after:?}");
    assert_eq!(
        couch_after, couch_before,
        "CouchDB lost or changed nothing else"
    );
    // The share's replication documents are gone.
    assert_eq!(
        st.ok("GET", "/_replicator/_all_docs", None)["rows"],
        json!([])
    );
}

// ---------------------------------------------------------------- a 3-node CouchDB cluster

use common::couchdb::Cluster;

/// Waits until every node of the cluster serves `db` with the same trees as `want`, which must
/// come from somewhere authoritative (settee's copy), not from a node's own first read: see
/// [`cluster_agreed`]. A write is acknowledged at a quorum of two, so a node may lag a moment;
/// the wait is generous because `make test` runs it on two busy cores.
fn cluster_converges(cl: &Cluster, db: &str, want: &BTreeMap<String, Vec<Value>>) {
    for n in &cl.nodes {
        let p = Peer::couch(n);
        assert!(
            wait_for(180, || (&p.trees(db) == want).then_some(())).is_some(),
            "{} never showed the same trees of {db}",
            n.addr
        );
    }
}

/// Waits until every node of the cluster answers the same trees for `db` twice in a row and
/// returns them. Unlike [`cluster_converges`] there is no expected answer: the nodes' agreement is
/// the answer, so a first read taken before the cluster settled cannot become a target no node
/// reaches.
fn cluster_agreed(cl: &Cluster, db: &str) -> BTreeMap<String, Vec<Value>> {
    let peers: Vec<Peer> = cl.nodes.iter().map(Peer::couch).collect();
    let mut last: Option<BTreeMap<String, Vec<Value>>> = None;
    let mut seen = Vec::new();
    let agreed = wait_for(180, || {
        seen = peers.iter().map(|p| p.trees(db)).collect::<Vec<_>>();
        let all_same = seen.windows(2).all(|w| w[0] == w[1]);
        let stable = last.as_ref() == seen.first();
        last = seen.first().cloned();
        (all_same && stable).then(|| seen[0].clone())
    });
    agreed.unwrap_or_else(|| {
        let counts: Vec<_> = seen.iter().map(BTreeMap::len).collect();
        panic!("the nodes never agreed on {db}: document counts {counts:?}")
    })
}

#[test]
fn cluster_both_replicators_both_ways_with_checkpoints_on_its_sequences() {
    let Some(cl) =
        Cluster::start("cluster_both_replicators_both_ways_with_checkpoints_on_its_sequences")
    else {
        return;
    };
    let s = start_admin();
    let st = Peer::settee(&s);
    let (n1, n2) = (&cl.nodes[0], &cl.nodes[1]);
    let c1 = Peer::couch(n1);
    fill(&c1, "sharded", "c"); // created with the cluster's q = 8
    assert_eq!(c1.ok("GET", "/sharded", None)["cluster"]["q"], 8);
    // What one node answers right after the writes can be a partial view (a shard copy that
    // missed a write until CouchDB's internal replication or read repair fixes it), so what the
    // cluster holds is what every node agrees on, and it must be everything `fill` wrote.
    let want = cluster_agreed(&cl, "sharded");
    assert_eq!(want.len(), 44, "fill's 44 documents: {:?}", want.keys());
    assert_eq!(want["cconflict"].len(), 2, "both leaves of cconflict");
    // settee pulls from one node, CouchDB's replicator pushes into settee from another.
    replicate(&st, &n2.url("sharded"), "pulled");
    assert_same_trees(&c1, "sharded", &st, "pulled");
    let settee_url = |db: &str| format!("http://{ADMIN}@{}/{db}", s.addr);
    replicate(&c1, &n1.url("sharded"), &settee_url("pushed"));
    assert_same_trees(&c1, "sharded", &st, "pushed");
    // And back: settee pushes into the cluster, the cluster's replicator pulls from settee.
    fill(&st, "mine", "s");
    replicate(&st, "mine", &n1.url("from-settee"));
    replicate(&c1, &settee_url("mine"), &n2.url("pulled-by-cluster"));
    let want = st.trees("mine");
    cluster_converges(&cl, "from-settee", &want);
    cluster_converges(&cl, "pulled-by-cluster", &want);
    // Checkpoints resume on the cluster's opaque sequences: new documents only are read.
    for i in 0..7 {
        c1.put("sharded", json!({"_id": format!("later{i}")}));
    }
    // Written through node 1 at quorum, read by node 2's feed from any copy: only once the
    // nodes agree can the pull be expected to see all 7.
    let now_held = cluster_agreed(&cl, "sharded");
    assert_eq!(now_held.len(), 44 + 7, "{:?}", now_held.keys());
    let r = replicate(&st, &n2.url("sharded"), "pulled");
    let session = &r["history"][0];
    assert!(
        session["start_last_seq"].is_string(),
        "a cluster sequence: {r}"
    );
    assert_ne!(session["start_last_seq"], json!("0"), "{r}");
    assert_eq!(session["docs_written"], 7, "{r}");
    assert!(
        session["docs_read"].as_u64().unwrap() <= 7 + 8,
        "read only what is new: {r}"
    );
    // CouchDB's replicator resumes too: nothing new on settee, nothing read.
    let again = replicate(&c1, &settee_url("mine"), &n2.url("pulled-by-cluster"));
    assert_eq!(written(&again), 0, "{again}");
}

#[test]
fn cluster_a_continuous_job_survives_a_node_stopping_and_starting() {
    let Some(mut cl) =
        Cluster::start("cluster_a_continuous_job_survives_a_node_stopping_and_starting")
    else {
        return;
    };
    let s = start_admin();
    let st = Peer::settee(&s);
    let c1 = Peer::couch(&cl.nodes[0]);
    c1.ok("PUT", "/live?q=8", None);
    st.ok("PUT", "/live", None);
    // settee pushes continuously into the cluster through node 1 and pulls from it.
    st.put(
        "_replicator",
        json!({"_id": "out", "source": "live", "target": cl.nodes[0].url("live"), "continuous": true}),
    );
    st.put(
        "_replicator",
        json!({"_id": "in", "source": cl.nodes[0].url("live"), "target": "live", "continuous": true}),
    );
    let round = |tag: &str, c: &Peer| {
        st.put("live", json!({"_id": format!("{tag}-settee")}));
        c.put("live", json!({"_id": format!("{tag}-couch")}));
        for (p, id) in [(c, format!("{tag}-settee")), (&st, format!("{tag}-couch"))] {
            assert!(
                wait_for(90, || (p.req("GET", &format!("/live/{id}"), None).0 == 200)
                    .then_some(()))
                .is_some(),
                "{id} never crossed"
            );
        }
    };
    round("before", &c1);
    // A node that is not the one settee talks to stops: the quorum goes on.
    cl.nodes[2].stop();
    round("node3-down", &c1);
    cl.nodes[2].start_again();
    // The node settee talks to stops and starts: the jobs come back on their own.
    cl.nodes[0].stop();
    let c2 = Peer::couch(&cl.nodes[1]);
    st.put("live", json!({"_id": "while-down"}));
    cl.nodes[0].start_again();
    let c1 = Peer::couch(&cl.nodes[0]);
    round("node1-back", &c1);
    assert!(
        wait_for(90, || (c2.req("GET", "/live/while-down", None).0 == 200)
            .then_some(()))
        .is_some(),
        "written while the node was down, never crossed"
    );
    for id in ["out", "in"] {
        let (_, d) = st.req("GET", &format!("/_scheduler/docs/_replicator/{id}"), None);
        assert_eq!(d["state"], "running", "{d}");
    }
    let want = st.trees("live");
    assert!(
        wait_for(60, || (c1.trees("live") == want).then_some(())).is_some(),
        "settee and the cluster differ"
    );
}
