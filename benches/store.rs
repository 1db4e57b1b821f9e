//! Store benchmark (run by `make bench`): batch-write throughput for 1 KiB docs in batches of
//! 1000, changes-read throughput (ids only, and with bodies as `include_docs` needs them), and
//! bytes on disk per 100k docs. Prints one markdown table. The last rows measure sled alone,
//! written in three layouts (the store's old and current ones, and bodies packed many per entry as
//! a value log inside sled would), one batch and one flush per 1000: the floor under any settee
//! write path built on sled, in docs/s and in CPU time per batch.

use std::time::Instant;

use serde_json::json;
use settee::store::{ReadOpts, Store, StoreConfig};

const DOCS: usize = 100_000;
const BATCH: usize = 1000;

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    settee::alloc::tune();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&StoreConfig::new(dir.path())).expect("open");
    let db = store.create_db("bench").expect("create");
    let pad = "x".repeat(1024 - 80);

    let t = Instant::now();
    for b in 0..DOCS / BATCH {
        let docs = (0..BATCH)
            .map(|i| json!({"_id": format!("doc-{b:05}-{i:04}"), "type": "item", "n": i, "pad": pad}))
            .collect();
        for o in db.bulk_docs(docs, true).expect("write") {
            o.result.expect("doc written");
        }
    }
    let write = DOCS as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut n = 0;
    for c in db.changes(0, false) {
        c.expect("change");
        n += 1;
    }
    let changes_ids = n as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut bytes = 0usize;
    for c in db.changes(0, false) {
        let c = c.expect("change");
        let w = c.doc.winner().expect("winner");
        let doc = db
            .doc_json(&c.id, &c.doc, w, &ReadOpts::default())
            .expect("doc");
        bytes += serde_json::to_vec(&doc).expect("json").len();
    }
    let changes_docs = n as f64 / t.elapsed().as_secs_f64();
    assert!(bytes > DOCS * 1000);

    store.flush().expect("flush");
    let on_disk = dir_size(dir.path());

    println!("| store benchmark ({DOCS} docs of 1 KiB) | value |");
    println!("|---|---|");
    println!("| batch write, batches of {BATCH}, flushed | {write:.0} docs/s |");
    println!("| changes read, ids + leaf revs | {changes_ids:.0} docs/s |");
    println!("| changes read with doc bodies | {changes_docs:.0} docs/s |");
    println!(
        "| bytes on disk per 100k docs | {:.1} MiB |",
        on_disk as f64 * (100_000.0 / DOCS as f64) / (1024.0 * 1024.0)
    );
    println!("| group-commit flushes | {} |", store.flushes());
    // Closed first, so that the CPU time below is sled's alone.
    drop(db);
    drop(store);
    for layout in [Layout::RecordAndSeq, Layout::Record, Layout::Packed] {
        let (rate, cpu) = sled_alone(layout);
        println!(
            "| sled alone: {}, batches of {BATCH}, flushed | {rate:.0} docs/s, {cpu:.1} ms CPU per {BATCH} |",
            layout.describe()
        );
    }
}

/// How the sled-alone rows lay a document out in sled.
#[derive(Clone, Copy)]
enum Layout {
    /// A ~1.1 KiB record plus a by-sequence entry: the store's layout until d5edeb9.
    RecordAndSeq,
    /// One ~1.1 KiB record per document: today's layout (by-sequence runs add ~1/64 entry).
    Record,
    /// The bodies of 64 documents packed in one entry, plus a small record per document: the
    /// layout a value log kept inside sled would have.
    Packed,
}

impl Layout {
    fn describe(self) -> &'static str {
        match self {
            Layout::RecordAndSeq => "2 entries per doc (record ~1.1 KiB + by-seq)",
            Layout::Record => "1 entry per doc (record ~1.1 KiB)",
            Layout::Packed => "bodies packed 64 per entry + a 40-byte record per doc",
        }
    }
}

/// CPU time this process has used so far, all threads (sled writes its log on its own threads).
fn cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

/// Docs/s sled itself reaches writing documents of the store's sizes in `layout`, and the CPU
/// time it spends per batch (all threads): on two cores, that time bounds any write path built
/// on sled.
fn sled_alone(layout: Layout) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new()
        .path(dir.path())
        .mode(sled::Mode::HighThroughput)
        .open()
        .expect("sled");
    let tree = db.open_tree("bench").expect("tree");
    let record = vec![b'x'; 1100];
    let page = vec![b'y'; 1100 * 64];
    let mut seq = 0u64;
    let key = |tag: u8, n: u64| {
        let mut k = vec![tag];
        k.extend_from_slice(&n.to_be_bytes());
        k
    };
    let (t, cpu) = (Instant::now(), cpu_ms());
    for b in 0..DOCS / BATCH {
        let mut batch = sled::Batch::default();
        for i in 0..BATCH {
            seq += 1;
            let id = format!("ddoc-{b:05}-{i:04}");
            match layout {
                Layout::RecordAndSeq => {
                    batch.insert(key(b's', seq), &id.as_bytes()[1..]);
                    batch.insert(id.as_bytes(), record.clone());
                }
                Layout::Record => batch.insert(id.as_bytes(), record.clone()),
                Layout::Packed => {
                    if seq.is_multiple_of(64) {
                        batch.insert(key(b'p', seq / 64), page.clone());
                    }
                    batch.insert(id.as_bytes(), &[7u8; 40][..]);
                }
            }
        }
        tree.apply_batch(batch).expect("batch");
        db.flush().expect("flush");
    }
    let per_batch = (cpu_ms() - cpu) / (DOCS / BATCH) as f64;
    (DOCS as f64 / t.elapsed().as_secs_f64(), per_batch)
}
