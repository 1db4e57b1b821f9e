//! The README's walkthroughs (sharing, and publishing with a field list), run as written: its shell block is taken from README.md
//! and executed by bash with only these changes: the built binary instead of
//! `./target/release/settee` (and no `make build`), two free ports instead of 5984/5985, a
//! wait for the servers to answer and for the share to deliver (a person typing the commands
//! gives them that time), and labels before the outputs checked here.

mod common;

use std::process::Command;

use common::free_port;

fn sharing_block() -> String {
    block_of("## Sharing part of a database")
}

/// The first shell block of the README section under `heading`.
fn block_of(heading: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split(heading)
        .nth(1)
        .expect("README has the section");
    let start = section.find("```sh\n").expect("a shell block") + 6;
    let len = section[start..].find("```").expect("the block ends");
    section[start..start + len].to_owned()
}

#[test]
fn readme_sharing_walkthrough_works_as_written() {
    let stdout = run_block(
        &sharing_block(),
        &[
            (
                "curl $B/library/_all_docs",
                "for i in $(seq 150); do command curl -s $B/library/_all_docs | grep -q atlas && command curl -s $A/library/_all_docs | grep -q solaris && break; sleep 0.2; done\necho B_ALL_DOCS",
            ),
            ("curl $A/library/_all_docs", "echo A_ALL_DOCS"),
        ],
    );
    // The JSON answer printed right after a label (it may span lines).
    let after = |label: &str| json_after(&stdout, label).to_string();
    let b_docs = after("B_ALL_DOCS");
    assert!(
        b_docs.contains("\"dune\"")
            && b_docs.contains("\"atlas\"")
            && b_docs.contains("db_sharing-"),
        "{b_docs}"
    );
    assert!(!b_docs.contains("diary"), "{b_docs}");
    assert!(after("A_ALL_DOCS").contains("\"solaris\""), "{stdout}");
    // The dry run and the stop list the same purge: what came only from the peer.
    // The CLI prints each answer as pretty JSON starting on its own line.
    let stops: Vec<serde_json::Value> = stdout
        .match_indices("\n{\n")
        .filter_map(|(i, _)| {
            serde_json::Deserializer::from_str(&stdout[i + 1..])
                .into_iter::<serde_json::Value>()
                .next()?
                .ok()
        })
        .filter(|v| v.get("purged").is_some())
        .collect();
    assert_eq!(stops.len(), 2, "{stdout}");
    assert_eq!(stops[0]["dry_run"], true);
    for s in &stops {
        assert_eq!(s["purged"], serde_json::json!(["solaris"]), "{s}");
        let kept: Vec<&str> = s["kept"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k["id"].as_str())
            .collect();
        assert_eq!(kept, ["atlas", "dune"], "{s}");
    }
}

/// Runs a README block with the substitutions described at the top; `before` inserts a
/// line of script before the README line that starts with the given text.
fn run_block(block: &str, before: &[(&str, &str)]) -> String {
    let (pa, pb) = (free_port(), free_port());
    let mut script = String::from(
        "set -e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\ncurl() { command curl -sS \"$@\"; echo; }\n",
    );
    for line in block.lines() {
        let line = line
            .replace("./target/release/settee", env!("CARGO_BIN_EXE_settee"))
            .replace("127.0.0.1:5984", &format!("127.0.0.1:{pa}"))
            .replace("127.0.0.1:5985", &format!("127.0.0.1:{pb}"));
        if line.trim() == "make build" {
            continue;
        }
        for (start, insert) in before {
            if line.starts_with(start) {
                script.push_str(insert);
                script.push('\n');
            }
        }
        script.push_str(&line);
        script.push('\n');
        // `A=http://… B=http://…`: wait until those servers answer.
        let vars: Vec<&str> = line
            .split_whitespace()
            .filter_map(|w| w.split_once("=http://").map(|(v, _)| v))
            .collect();
        if !vars.is_empty() {
            let list: Vec<String> = vars.iter().map(|v| format!("${v}")).collect();
            script.push_str(&format!(
                "for u in {}; do for i in $(seq 100); do command curl -sf $u/_up >/dev/null && break; sleep 0.1; done; done\n",
                list.join(" ")
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "script failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The JSON answer printed right after a label.
fn json_after(stdout: &str, label: &str) -> serde_json::Value {
    stdout
        .split(label)
        .nth(1)
        .and_then(|s| {
            serde_json::Deserializer::from_str(s)
                .into_iter::<serde_json::Value>()
                .next()?
                .ok()
        })
        .unwrap_or_default()
}

#[test]
fn readme_publishing_walkthrough_works_as_written() {
    let block = block_of("## What crosses: field lists, documents that stop matching");
    let stdout = run_block(
        &block,
        &[
            (
                "curl \"$Q/public/_all_docs?include_docs=true\"",
                "for i in $(seq 150); do command curl -s \"$Q/public/_all_docs\" | grep -q person-1 && break; sleep 0.2; done\necho PUBLISHED",
            ),
            (
                "curl \"$Q/public/_all_docs\" ",
                "for i in $(seq 150); do command curl -s \"$Q/public/_all_docs\" | grep -q '\"id\"' || break; sleep 0.2; done\necho AFTER",
            ),
        ],
    );
    let published = json_after(&stdout, "PUBLISHED");
    let ids: Vec<&str> = published["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{stdout}"))
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["case-1", "person-1"], "{stdout}");
    let text = published.to_string();
    assert!(
        text.contains("Flooding in the valley") && text.contains("Ana"),
        "{text}"
    );
    assert!(!text.contains("Witness") && !text.contains("555"), "{text}");
    assert_eq!(
        json_after(&stdout, "AFTER")["rows"],
        serde_json::json!([]),
        "{stdout}"
    );
}
