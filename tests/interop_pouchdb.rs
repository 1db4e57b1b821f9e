//! Interop with real third-party peers from the npm registry (tests/node, installed by
//! `make node-deps` from its lockfile): PouchDB's replicator moves 1,000 docs with updates,
//! deletions, a conflict and an attachment out of settee and back into a second settee
//! database, through an in-memory PouchDB and through pouchdb-server; both ends must hold
//! identical revision trees and a second replication must write nothing (roundtrip.js checks
//! every doc with open_revs=all&revs=true and exits non-zero on any difference).

mod common;

use std::process::Command;

use common::{PouchServer, Server};
use serde_json::Value;

fn roundtrip(source: &str, via: &str, target: &str) -> Value {
    let out = Command::new("node")
        .current_dir(common::node_dir())
        .args(["roundtrip.js", "--populate", "--timeout", "240"])
        .args(["--source", source, "--via", via, "--target", target])
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "roundtrip failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.lines().last().unwrap_or("")).expect("one JSON line")
}

fn check(r: &Value) {
    assert_eq!(r["docs"], 1001);
    assert_eq!(r["leaf_revs"], 1002);
    assert_eq!(r["deleted_leaves"], 50);
    assert_eq!(r["conflicted_docs"], 1);
    assert_eq!(r["attachments"], 1);
    for leg in ["leg1", "leg2"] {
        assert_eq!(r["first"][leg]["docs_written"], 1002, "{leg}: {r}");
        assert_eq!(r["first"][leg]["doc_write_failures"], 0, "{leg}: {r}");
        assert_eq!(
            r["second"][leg]["docs_written"], 0,
            "second {leg} wrote: {r}"
        );
    }
}

#[test]
fn pouchdb_replicates_out_of_settee_and_back_through_memory() {
    let s = Server::start(&[]);
    let url = format!("http://{}", s.addr);
    let r = roundtrip(&format!("{url}/src"), "memory", &format!("{url}/dst"));
    check(&r);
}

#[test]
fn pouchdb_replicator_between_settee_and_pouchdb_server() {
    let s = Server::start(&[]);
    let p = PouchServer::start(&[]);
    let url = format!("http://{}", s.addr);
    let r = roundtrip(
        &format!("{url}/src"),
        &format!("{}/mid", p.1),
        &format!("{url}/dst"),
    );
    check(&r);
}
