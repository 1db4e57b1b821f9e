//! A server taking writes and running continuous replications is SIGKILLed at random moments,
//! again and again. After each restart every acknowledged write is there with its revision,
//! every `_bulk_docs` request (1 to 128 documents) is all or nothing, the replications resume
//! from their checkpoints, and in the end the targets hold exactly what the source does.
//!
//! `KILL_ROUNDS` sets the number of kills (8 in `make test`; a long run:
//! `KILL_ROUNDS=200 cargo nextest run --test kill_loop`).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{admin_trees, areq, start_admin, wait_for, Client, Server, ADMIN};
use serde_json::{json, Value};

/// One `_bulk_docs` request: its documents, and their revisions if it was acknowledged.
struct Batch {
    ids: Vec<String>,
    acked: Option<Vec<String>>,
}

/// Writes batches of 1-128 documents to `addr` until a request fails (the server was killed)
/// or `stop` is set; returns every batch sent.
fn writer(addr: String, round: usize, stop: Arc<AtomicBool>) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let size = 1 + rand::random::<usize>() % 128;
        let ids: Vec<String> = (0..size)
            .map(|i| format!("r{round:02}-b{n:04}-{i:03}"))
            .collect();
        let docs: Vec<Value> = ids
            .iter()
            .map(|id| json!({"_id": id, "round": round, "pad": "z".repeat(100)}))
            .collect();
        n += 1;
        let res =
            Client::admin(&addr).try_req("POST", "/src/_bulk_docs", Some(&json!({ "docs": docs })));
        match res {
            Some((201, v)) => {
                let revs: Vec<String> = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        r["rev"]
                            .as_str()
                            .expect("every document written")
                            .to_owned()
                    })
                    .collect();
                out.push(Batch {
                    ids,
                    acked: Some(revs),
                });
            }
            // Killed before or while answering: the request may or may not have landed.
            _ => {
                out.push(Batch { ids, acked: None });
                break;
            }
        }
    }
    out
}

/// The winning revision of every document of `db`.
fn revs(s: &Server, db: &str) -> BTreeMap<String, String> {
    let (st, v) = areq(s, "GET", &format!("/{db}/_all_docs"), None);
    assert_eq!(st, 200, "{v}");
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["value"]["rev"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn sigkill_loop_loses_no_acknowledged_write_and_replications_resume() {
    let rounds: usize = std::env::var("KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let target = start_admin();
    areq(&target, "PUT", "/dst", None);
    let mut a = Server::process(&["--admin", ADMIN]);
    areq(&a, "PUT", "/src", None);
    for (id, doc) in [
        (
            "out",
            json!({"source": "src", "target": common::admin_url(&target, "dst"), "continuous": true,
                "checkpoint_interval": 300}),
        ),
        (
            "local",
            json!({"source": "src", "target": "copy", "create_target": true, "continuous": true,
                "checkpoint_interval": 300}),
        ),
    ] {
        let (st, v) = areq(&a, "PUT", &format!("/_replicator/{id}"), Some(&doc));
        assert_eq!(st, 201, "{v}");
    }
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let w = {
            let (addr, stop) = (a.addr.clone(), stop.clone());
            std::thread::spawn(move || writer(addr, round, stop))
        };
        std::thread::sleep(Duration::from_millis(150 + rand::random::<u64>() % 600));
        a.kill();
        stop.store(true, Ordering::SeqCst);
        let batches = w.join().unwrap();
        let dir = std::mem::replace(&mut a.dir, tempfile::tempdir().unwrap());
        a = Server::process_in(dir, &["--admin", ADMIN]);
        let now = revs(&a, "src");
        for b in &batches {
            match &b.acked {
                Some(revs) => {
                    for (id, rev) in b.ids.iter().zip(revs) {
                        assert_eq!(
                            now.get(id),
                            Some(rev),
                            "round {round}: acknowledged {id} {rev} is there"
                        );
                        expected.insert(id.clone(), rev.clone());
                    }
                }
                None => {
                    let present = b.ids.iter().filter(|id| now.contains_key(*id)).count();
                    assert!(
                        present == 0 || present == b.ids.len(),
                        "round {round}: a request of {} documents landed in part ({present})",
                        b.ids.len()
                    );
                    for id in b.ids.iter().filter(|id| now.contains_key(*id)) {
                        expected.insert(id.clone(), now[id].clone());
                    }
                }
            }
        }
        assert_eq!(
            now, expected,
            "round {round}: the source holds exactly what was written"
        );
    }
    // The replications resume and catch up: both targets hold exactly the source.
    let want = admin_trees(&a, "src");
    for (s, db) in [(&target, "dst"), (&a, "copy")] {
        assert!(
            wait_for(120, || (admin_trees(s, db) == want).then_some(())).is_some(),
            "{db} caught up with the source"
        );
    }
    // From their checkpoints: the checkpoint history holds sessions that started past 0.
    let (_, locals) = areq(&a, "GET", "/src/_local_docs?include_docs=true", None);
    let resumed = locals["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["doc"]["history"].as_array())
        .flatten()
        .filter(|h| h["start_last_seq"] != json!(0) && h["start_last_seq"] != json!("0"))
        .count();
    assert!(resumed >= 1, "sessions resumed from a checkpoint: {locals}");
}
