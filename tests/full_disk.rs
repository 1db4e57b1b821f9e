//! A data folder on a small filesystem (a size-limited tmpfs mounted by the test; where the
//! machine does not allow mounting, the test says so and skips): writes past the space settee
//! keeps in reserve are refused with 507 and a reason, nothing acknowledged is lost, reads and
//! `_changes` keep working, and writes succeed again once space is freed, in the same process.

mod common;

use std::path::{Path, PathBuf};

use std::process::Command;

use common::{wait_for, Server};
use serde_json::{json, Value};

/// A tmpfs of `mib` MiB, unmounted on drop (before its mount point is removed).
struct Tmpfs {
    path: PathBuf,
    _mount_point: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs {
            path: dir.path().to_path_buf(),
            _mount_point: dir,
        })
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let Some(fs) = Tmpfs::mount(32) else {
        eprintln!("full_disk: skipped, this machine does not allow mounting a tmpfs");
        return;
    };
    // Ballast to free later, then the server with a 4 MiB reserve.
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 8 << 20]).unwrap();
    let dir = tempfile::Builder::new().tempdir_in(fs.path()).unwrap();
    let s = Server::process_in(dir, &["--disk-reserve", &(4u64 << 20).to_string()]);
    assert_eq!(s.req("PUT", "/db", None).0, 201);

    let pad = "x".repeat(4000);
    let mut acked: Vec<(String, String)> = Vec::new();
    let mut refusal = None;
    for b in 0..400 {
        let docs: Vec<Value> = (0..50)
            .map(|i| json!({"_id": format!("d{:05}", b * 50 + i), "pad": pad}))
            .collect();
        let (st, v) = s.req("POST", "/db/_bulk_docs", Some(&json!({ "docs": docs })));
        if st != 201 {
            refusal = Some((st, v));
            break;
        }
        for r in v.as_array().unwrap() {
            acked.push((
                r["id"].as_str().unwrap().to_owned(),
                r["rev"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let (st, v) = refusal.expect("the disk filled up");
    assert_eq!(st, 507, "{v}");
    assert_eq!(v["error"], "insufficient_storage");
    assert!(
        v["reason"].as_str().unwrap().contains("free some space"),
        "{v}"
    );
    assert!(acked.len() >= 500, "some writes went through first");

    // Reads and feeds go on, with everything acknowledged.
    let (st, info) = s.req("GET", "/db", None);
    assert_eq!(st, 200, "{info}");
    assert_eq!(info["doc_count"], acked.len(), "{info}");
    for (id, rev) in acked.iter().step_by(97) {
        let (st, d) = s.req("GET", &format!("/db/{id}"), None);
        assert_eq!((st, d["_rev"].as_str()), (200, Some(rev.as_str())), "{id}");
    }
    let (st, ch) = s.req("GET", "/db/_changes", None);
    assert_eq!(st, 200);
    assert_eq!(ch["results"].as_array().unwrap().len(), acked.len());

    // Space freed: writes resume in the same process.
    std::fs::remove_file(&ballast).unwrap();
    assert!(
        wait_for(10, || (s
            .req("PUT", "/db/after", Some(&json!({"ok": 1})))
            .0
            == 201)
            .then_some(()))
        .is_some(),
        "writes resume once space is freed"
    );
    let (_, info) = s.req("GET", "/db", None);
    assert_eq!(info["doc_count"], acked.len() + 1);
}
