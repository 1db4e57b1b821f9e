//! Property: random edit histories on several replicas, exchanged in random orders with
//! `new_edits=false` (the replication write path), always converge to identical revision trees
//! and winners on every replica.

use proptest::prelude::*;
use serde_json::{json, Value};
use settee::store::{Database, ReadOpts, Store, StoreConfig};
use std::collections::BTreeMap;

const REPLICAS: usize = 3;
const DOCS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    /// Edit (or create) doc `doc` on `replica`, writing value `v`; `branch` picks which leaf.
    Edit {
        replica: usize,
        doc: usize,
        v: u8,
        branch: usize,
    },
    Delete {
        replica: usize,
        doc: usize,
        branch: usize,
    },
    /// Push every document from one replica to another.
    Sync { from: usize, to: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..REPLICAS, 0..DOCS, 0u8..4, 0usize..3)
            .prop_map(|(replica, doc, v, branch)| Op::Edit { replica, doc, v, branch }),
        1 => (0..REPLICAS, 0..DOCS, 0usize..3)
            .prop_map(|(replica, doc, branch)| Op::Delete { replica, doc, branch }),
        2 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

fn leaf_revs(db: &Database, id: &str) -> Vec<String> {
    match db.open_revs(id, None, false, &ReadOpts::default()) {
        Ok(docs) => docs
            .into_iter()
            .filter_map(|d| d.ok())
            .map(|d| d["_rev"].as_str().unwrap_or_default().to_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn edit(db: &Database, id: &str, branch: usize, body: Value, deleted: bool) {
    let leaves = leaf_revs(db, id);
    let mut doc = body;
    doc["_id"] = json!(id);
    if !leaves.is_empty() {
        doc["_rev"] = json!(leaves[branch % leaves.len()]);
    }
    if deleted {
        doc["_deleted"] = json!(true);
    }
    // Conflicts are fine (a create racing on an existing doc): the op is just skipped.
    let _ = db.bulk_docs(vec![doc], true).unwrap();
}

/// One replication pass: every leaf with its full path, written with new_edits=false.
fn sync(from: &Database, to: &Database) {
    let opts = ReadOpts {
        revs: true,
        ..Default::default()
    };
    let changes: Vec<String> = from.changes(0, false).map(|c| c.unwrap().id).collect();
    let mut docs = Vec::new();
    for id in changes {
        for d in from.open_revs(&id, None, false, &opts).unwrap() {
            docs.push(d.unwrap());
        }
    }
    for out in to.bulk_docs(docs, false).unwrap() {
        out.result.unwrap();
    }
}

/// Everything a replica knows about a doc: each leaf with its path and body, and the winner.
fn snapshot(db: &Database) -> BTreeMap<String, (Vec<Value>, Value)> {
    let opts = ReadOpts {
        revs: true,
        ..Default::default()
    };
    let mut out = BTreeMap::new();
    for c in db.changes(0, false) {
        let id = c.unwrap().id;
        let mut leaves: Vec<Value> = db
            .open_revs(&id, None, false, &opts)
            .unwrap()
            .into_iter()
            .map(|d| d.unwrap())
            .collect();
        leaves.sort_by_key(|d| d["_rev"].as_str().unwrap_or_default().to_owned());
        let winner = db
            .open_revs(&id, None, false, &ReadOpts::default())
            .unwrap()
            .remove(0)
            .unwrap()["_rev"]
            .clone();
        out.insert(id, (leaves, winner));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge(ops in prop::collection::vec(op(), 1..40), order in Just(()).prop_perturb(|_, mut rng| {
        let mut pairs: Vec<(usize, usize)> = (0..REPLICAS)
            .flat_map(|a| (0..REPLICAS).map(move |b| (a, b)))
            .filter(|(a, b)| a != b)
            .collect();
        for i in (1..pairs.len()).rev() {
            let j = (rng.next_u32() as usize) % (i + 1);
            pairs.swap(i, j);
        }
        pairs
    })) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let dbs: Vec<_> = (0..REPLICAS)
            .map(|i| store.create_db(&format!("r{i}")).unwrap())
            .collect();
        for op in &ops {
            match *op {
                Op::Edit { replica, doc, v, branch } =>
                    edit(&dbs[replica], &format!("d{doc}"), branch, json!({"v": v}), false),
                Op::Delete { replica, doc, branch } =>
                    edit(&dbs[replica], &format!("d{doc}"), branch, json!({}), true),
                Op::Sync { from, to } if from != to => sync(&dbs[from], &dbs[to]),
                Op::Sync { .. } => {}
            }
        }
        // Two full rounds in a random pair order spread everything everywhere.
        for _ in 0..2 {
            for &(a, b) in &order {
                sync(&dbs[a], &dbs[b]);
            }
        }
        let first = snapshot(&dbs[0]);
        for db in &dbs[1..] {
            prop_assert_eq!(&snapshot(db), &first);
        }
        // Once converged, another exchange writes nothing.
        let seqs: Vec<u64> = dbs.iter().map(|d| d.update_seq()).collect();
        for &(a, b) in &order {
            sync(&dbs[a], &dbs[b]);
        }
        let after: Vec<u64> = dbs.iter().map(|d| d.update_seq()).collect();
        prop_assert_eq!(seqs, after);
    }
}
