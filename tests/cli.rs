//! The command line as scripts use it: `--json` answers, exit codes (0 done, 1 failed, 2 bad
//! usage), quiet ends on closed pipes, plain logs when stderr is not a terminal, and a hint
//! when `settee status` lacks credentials.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

use common::{areq, Server};
use serde_json::{json, Value};

fn settee(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_settee"))
        .args(args)
        .env_remove("SETTEE_SERVER")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn admin_server_url(s: &Server) -> String {
    format!("http://{}@{}", common::ADMIN, s.addr)
}

#[test]
fn status_answers_json_and_says_how_to_pass_credentials() {
    let s = common::start_admin();
    areq(&s, "PUT", "/src", None);
    let (st, v) = areq(
        &s,
        "PUT",
        "/_replicator/nightly",
        Some(&json!({"source": "src", "target": "dst", "create_target": true})),
    );
    assert_eq!(st, 201, "{v}");

    let out = settee(&["status", "--server", &format!("http://{}", s.addr)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("--server http://USER:PASS@"), "{err}");
    assert!(err.contains("SETTEE_SERVER"), "{err}");

    let out = settee(&["status", "--json", "--server", &admin_server_url(&s)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 1, "one JSON value: {lines:?}");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["docs"][0]["doc_id"], "nightly", "{v}");
    assert!(v["jobs"].is_array(), "{v}");

    // --watch --json: one JSON line per round.
    let mut child = Command::new(env!("CARGO_BIN_EXE_settee"))
        .args([
            "status",
            "--watch",
            "--interval",
            "0.2",
            "--json",
            "--server",
        ])
        .arg(admin_server_url(&s))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rounds = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = rounds.next().unwrap().unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["docs"][0]["doc_id"], "nightly");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn exit_codes_separate_bad_usage_from_failed_operations() {
    // Bad usage: clap's own errors and settee's malformed arguments are 2.
    let out = settee(&["status", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = settee(&[
        "share",
        "create",
        "x",
        "--local",
        "a",
        "--remote",
        "http://127.0.0.1:1/b",
        "--selector",
        "{bad",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err: Value = serde_json::from_str(text(&out.stderr).trim()).unwrap();
    assert_eq!(err["error"], "usage");
    assert!(
        err["reason"].as_str().unwrap().contains("--selector"),
        "{err}"
    );

    // A failed operation is 1: an unreachable server, an invalid document.
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let out = settee(&["share", "list", "--server", &dead]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("could not reach"),
        "{}",
        text(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"source": "a", "target": "b", "continous": true}"#).unwrap();
    let out = settee(&["doc", "check", bad.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["errors"].to_string().contains("continuous"), "{v}");
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"source": "a", "target": "b", "selector": {"t": 1}}"#,
    )
    .unwrap();
    let out = settee(&["doc", "check", good.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["summary"].as_str()),
        (Some(true), Some("a -> b"))
    );

    let help = text(&settee(&["--help"]).stdout);
    assert!(
        help.contains("Exit codes: 0") && help.contains("2 bad usage"),
        "{help}"
    );
    let help = text(&settee(&["status", "--help"]).stdout);
    assert!(
        help.contains("Examples:") && help.contains("--watch"),
        "{help}"
    );
    for command in [
        "serve",
        "replicate",
        "status",
        "conflicts",
        "doc",
        "share",
        "inspect",
    ] {
        let help = text(&settee(&[command, "--help"]).stdout);
        assert!(help.contains("Example"), "{command} --help: {help}");
    }
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let s = common::start_admin();
    areq(&s, "PUT", "/db", None);
    // 1,500 conflicted documents: a table far larger than a pipe's buffer.
    let docs: Vec<Value> = (0..1500)
        .flat_map(|i| {
            let id = format!("document-with-a-longish-name-{i:05}");
            [
                json!({"_id": id, "_rev": "1-aaaa", "v": 1}),
                json!({"_id": id, "_rev": "1-bbbb", "v": 2}),
            ]
        })
        .collect();
    let (st, v) = areq(
        &s,
        "POST",
        "/db/_bulk_docs",
        Some(&json!({"docs": docs, "new_edits": false})),
    );
    assert_eq!(st, 201, "{v}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_settee"))
        .args(["conflicts", "db", "--server"])
        .arg(admin_server_url(&s))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before reading anything (as `| head -0` would).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    // The same command with a reader prints every row (so the quiet end above was early).
    let out = settee(&["conflicts", "db", "--server", &admin_server_url(&s)]);
    assert_eq!(text(&out.stdout).lines().count(), 1501);
}

#[test]
fn logs_carry_no_colour_codes_when_stderr_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("settee.log");
    let s = Server::process_logging(&log, &["--admin", common::ADMIN]);
    areq(&s, "PUT", "/src", None);
    let dead = common::free_port();
    let (st, v) = areq(
        &s,
        "PUT",
        "/_replicator/nowhere",
        Some(
            &json!({"source": "src", "target": format!("http://127.0.0.1:{dead}/x"), "continuous": true}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    // The crash is logged as a warning: wait until it is in the file.
    let logged = common::wait_for(30, || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        t.contains("WARN").then_some(t)
    })
    .expect("a warning in the log");
    assert!(
        !logged.contains('\u{1b}'),
        "ANSI codes in a log file: {logged:?}"
    );
}
