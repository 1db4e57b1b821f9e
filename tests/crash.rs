//! A writer process is killed with SIGKILL mid-stream; on reopen every batch it reported as
//! committed is there whole, and no batch is half-applied.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use settee::store::{Store, StoreConfig};

const BATCH: usize = 50;

#[test]
fn sigkill_never_loses_or_tears_a_committed_batch() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_settee"))
            .args(["crash-writer", "--batch", &BATCH.to_string(), "--data"])
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
        let mut per_batch: BTreeMap<u64, usize> = BTreeMap::new();
        for r in db.docs_from("", false) {
            let (id, _) = r.unwrap();
            let n: u64 = id[1..id.find('-').unwrap()].parse().unwrap();
            *per_batch.entry(n).or_default() += 1;
        }
        for n in 0..=last {
            assert_eq!(
                per_batch.get(&n),
                Some(&BATCH),
                "committed batch {n} incomplete"
            );
        }
        for (n, count) in &per_batch {
            assert_eq!(*count, BATCH, "batch {n} was torn: {count} of {BATCH} docs");
        }
        let info = db.info().unwrap();
        assert_eq!(info.doc_count as usize, per_batch.len() * BATCH);
        assert_eq!(db.changes(0, false).count(), per_batch.len() * BATCH);
    }
}
