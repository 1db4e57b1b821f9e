//! A writer process is killed with SIGKILL mid-stream; on reopen every batch it reported as
//! committed is there whole, and no batch is half-applied: a small batch is one sled batch, and
//! a big one (64+ documents) is applied in chunks of 128, so it can only be cut between chunks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use settee::store::{Store, StoreConfig};

/// Documents per chunk of a big write (`CHUNK` in `store/database.rs`).
const CHUNK: usize = 128;

#[test]
fn sigkill_never_loses_or_tears_a_committed_batch() {
    kill_and_check(50, 3);
}

#[test]
fn sigkill_cuts_a_big_write_only_between_chunks() {
    kill_and_check(300, 3);
}

fn kill_and_check(batch: usize, rounds: u64) {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_settee"))
            .args(["crash-writer", "--batch", &batch.to_string(), "--data"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        // Let it commit a varying number of batches, then kill it without warning.
        while let Some(Ok(line)) = lines.next() {
            last = line
                .strip_prefix("committed ")
                .map(|n| n.parse::<u64>().unwrap());
            if last.is_some_and(|n| n >= 5 + round * 7) || Instant::now() > deadline {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();
        let last = last.expect("the writer committed something");

        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let db = store.db("crash").unwrap();
        // Batch number -> the document numbers present.
        let mut per_batch: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for r in db.docs_from("", false) {
            let (id, _) = r.unwrap();
            let (n, i) = id[1..].split_once('-').unwrap();
            let entry = per_batch.entry(n.parse().unwrap()).or_default();
            entry.push(i.parse().unwrap());
        }
        for n in 0..=last {
            assert_eq!(
                per_batch.get(&n).map(Vec::len),
                Some(batch),
                "committed batch {n} incomplete"
            );
        }
        let mut total = 0;
        for (n, docs) in per_batch.iter_mut() {
            docs.sort_unstable();
            let count = docs.len();
            total += count;
            // Whole, or (a big write that was never acknowledged) its first whole chunks.
            let whole = count == batch || (batch >= 64 && *n > last && count % CHUNK == 0);
            assert!(whole, "batch {n} was torn: {count} of {batch} docs");
            assert!(
                docs.iter().copied().eq(0..count),
                "batch {n} is not a prefix"
            );
        }
        let info = db.info().unwrap();
        assert_eq!(info.doc_count as usize, total);
        assert_eq!(db.changes(0, false).count(), total);
        assert_eq!(db.pending(0), total as u64);
    }
}
