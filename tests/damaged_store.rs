//! A data folder damaged on disk (files truncated, overwritten with garbage, or missing) never
//! starts as an empty store and never ends in a panic: `settee serve` either refuses with an
//! error that names the folder and says what to do, or, where sled recovers, serves every
//! document that was there.

mod common;

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;
use settee::store::{Store, StoreConfig};

const DOCS: usize = 300;

/// A store with two databases of `DOCS` documents each, closed and flushed.
fn make_store(dir: &Path) {
    let store = Store::open(&StoreConfig::new(dir)).unwrap();
    for name in ["one", "two"] {
        let db = store.create_db(name).unwrap();
        let docs = (0..DOCS)
            .map(|i| json!({"_id": format!("doc{i:04}"), "n": i, "pad": "y".repeat(300)}))
            .collect();
        db.bulk_docs(docs, true).unwrap();
    }
    drop(store);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// What `settee serve` did with the folder.
enum Outcome {
    Refused { stderr: String, code: Option<i32> },
    Served { addr: String },
}

fn serve(dir: &Path) -> (Outcome, std::process::Child) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_settee"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if let Some(addr) = common::listening_addr(&line) {
        return (Outcome::Served { addr }, child);
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (
        Outcome::Refused {
            stderr,
            code: status.code(),
        },
        child,
    )
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
}

fn garbage(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

#[test]
fn a_damaged_folder_is_refused_with_its_name_or_served_whole() {
    let original = tempfile::tempdir().unwrap();
    make_store(original.path());
    let db_len = std::fs::metadata(original.path().join("db")).unwrap().len();
    assert!(db_len > 0);
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "db truncated to half",
            Box::new(move |d: &Path| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("db"))
                    .unwrap();
                f.set_len(db_len / 2).unwrap();
            }),
        ),
        (
            "db truncated to nothing",
            Box::new(|d: &Path| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("db"))
                    .unwrap();
                f.set_len(0).unwrap();
            }),
        ),
        (
            "db with garbage at its start",
            Box::new(|d: &Path| overwrite(&d.join("db"), 0, &garbage(4096))),
        ),
        (
            "db with garbage in its middle",
            Box::new(move |d: &Path| overwrite(&d.join("db"), db_len / 2, &garbage(8192))),
        ),
        (
            "db all garbage",
            Box::new(move |d: &Path| overwrite(&d.join("db"), 0, &garbage(db_len as usize))),
        ),
        (
            "conf missing",
            Box::new(|d: &Path| std::fs::remove_file(d.join("conf")).unwrap()),
        ),
        (
            "conf garbage",
            Box::new(|d: &Path| std::fs::write(d.join("conf"), garbage(64)).unwrap()),
        ),
    ];
    let mut refused = 0;
    for (what, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        copy_dir(original.path(), &data);
        damage(&data);
        let (outcome, mut child) = serve(&data);
        match outcome {
            Outcome::Refused { stderr, code } => {
                refused += 1;
                eprintln!("{what}: refused: {}", stderr.trim());
                assert_eq!(code, Some(1), "{what}: exits with 1: {stderr}");
                assert!(
                    stderr.contains(&data.display().to_string()),
                    "{what}: the error names the folder: {stderr}"
                );
                assert!(
                    stderr.contains("restore it from a backup"),
                    "{what}: the error says what to do: {stderr}"
                );
                assert!(!stderr.contains("panicked"), "{what}: no panic: {stderr}");
            }
            Outcome::Served { addr } => {
                // Served only if nothing was lost.
                for name in ["one", "two"] {
                    let (st, info) = common::req(&addr, "GET", &format!("/{name}"), None);
                    assert_eq!(st, 200, "{what}: database {name} is there: {info}");
                    assert_eq!(
                        info["doc_count"], DOCS,
                        "{what}: {name} served whole or not at all: {info}"
                    );
                    let (_, docs) = common::req(
                        &addr,
                        "GET",
                        &format!("/{name}/_all_docs?include_docs=true"),
                        None,
                    );
                    let rows = docs["rows"].as_array().unwrap();
                    assert_eq!(rows.len(), DOCS, "{what}");
                    assert!(rows
                        .iter()
                        .enumerate()
                        .all(|(i, r)| r["doc"]["n"] == i && r["doc"]["pad"] == "y".repeat(300)));
                }
                eprintln!("{what}: served, every document there");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    assert!(refused > 0, "some damage must be refused");
}
