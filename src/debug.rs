//! Helpers for tests that need a real separate process (the SIGKILL crash test).

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::store::{Store, StoreConfig};

/// Writes batches `0, 1, 2, …` of `batch` docs each into database `crash`, printing
/// `committed N` after batch N is acknowledged. Runs until killed. Every doc of batch N has
/// id `bN-i` and field `batch: N`, so a reader can tell a whole batch from a torn one.
pub fn crash_writer(data: &Path, batch: usize) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(&StoreConfig::new(data))?;
    let db = store.ensure_db("crash")?;
    let mut n = db.info()?.update_seq / batch.max(1) as u64;
    let mut out = std::io::stdout().lock();
    loop {
        let docs = (0..batch)
            .map(|i| json!({"_id": format!("b{n}-{i}"), "batch": n, "pad": "x".repeat(200)}))
            .collect();
        for o in db.bulk_docs(docs, true)? {
            o.result?;
        }
        writeln!(out, "committed {n}")?;
        out.flush()?;
        n += 1;
    }
}
