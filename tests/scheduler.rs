//! The `_replicator` database and the scheduler over real HTTP: documents start, restart and
//! stop jobs; invalid ones are refused with reasons; runtime failures show as states; jobs
//! survive restarts and SIGKILL; 200 continuous jobs run at once.

mod common;

use common::{wait_for, Server};
use serde_json::{json, Value};

use common::ADMIN as A;

use common::areq;

fn put_docs(s: &Server, db: &str, docs: Vec<Value>) {
    let (st, v) = areq(
        s,
        "POST",
        &format!("/{db}/_bulk_docs"),
        Some(&json!({"docs": docs})),
    );
    assert_eq!(st, 201, "{v}");
}

fn doc_status(s: &Server, id: &str) -> Value {
    areq(
        s,
        "GET",
        &format!("/_scheduler/docs/_replicator/{id}"),
        None,
    )
    .1
}

fn wait_state(s: &Server, id: &str, state: &str) -> Value {
    wait_for(60, || {
        let v = doc_status(s, id);
        (v["state"] == state).then_some(v)
    })
    .unwrap_or_else(|| panic!("{id} never reached {state}: {}", doc_status(s, id)))
}

fn exists(s: &Server, db: &str, id: &str) -> bool {
    areq(s, "GET", &format!("/{db}/{id}"), None).0 == 200
}

fn update_seq(s: &Server, db: &str) -> u64 {
    common::seq_number(&areq(s, "GET", &format!("/{db}"), None).1["update_seq"])
}

#[test]
fn one_shot_completes_and_records_its_state() {
    let s = common::start_admin();
    areq(&s, "PUT", "/src", None);
    put_docs(
        &s,
        "src",
        (0..50)
            .map(|i| json!({"_id": format!("d{i}"), "kind": if i < 10 {"shared"} else {"other"}}))
            .collect(),
    );
    let (st, v) = areq(
        &s,
        "PUT",
        "/_replicator/once",
        Some(
            &json!({"source": "src", "target": "dst", "create_target": true, "selector": {"kind": "shared"}}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    let status = wait_state(&s, "once", "completed");
    assert_eq!(status["info"]["docs_written"], 10, "{status}");
    let doc = wait_for(10, || {
        let d = areq(&s, "GET", "/_replicator/once", None).1;
        (d["_replication_state"] == "completed").then_some(d)
    })
    .expect("state written back");
    assert_eq!(doc["_replication_stats"]["docs_written"], 10);
    assert!(doc["_replication_state_time"].is_string());
    assert_eq!(areq(&s, "GET", "/dst", None).1["doc_count"], 10);
    // Completed documents are left alone: nothing runs again.
    assert_eq!(areq(&s, "GET", "/_scheduler/jobs", None).1["total_rows"], 0);
}

#[test]
fn continuous_follows_edit_restarts_delete_stops() {
    let s = common::start_admin();
    areq(&s, "PUT", "/src", None);
    let (st, v) = areq(
        &s,
        "PUT",
        "/_replicator/live",
        Some(
            &json!({"source": "src", "target": "dst", "create_target": true, "continuous": true, "selector": {"kind": "a"}}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    wait_state(&s, "live", "running");
    put_docs(
        &s,
        "src",
        vec![
            json!({"_id": "a1", "kind": "a"}),
            json!({"_id": "b1", "kind": "b"}),
        ],
    );
    assert!(wait_for(30, || exists(&s, "dst", "a1").then_some(())).is_some());
    assert!(!exists(&s, "dst", "b1"));
    let job1 = doc_status(&s, "live")["id"].clone();

    // Edit: the selector now takes kind b too; the job restarts with a new id.
    let (_, cur) = areq(&s, "GET", "/_replicator/live", None);
    let mut edited = cur.clone();
    edited["selector"] = json!({"kind": {"$in": ["a", "b"]}});
    assert_eq!(areq(&s, "PUT", "/_replicator/live", Some(&edited)).0, 201);
    assert!(
        wait_for(30, || exists(&s, "dst", "b1").then_some(())).is_some(),
        "the edited definition runs"
    );
    let job2 = doc_status(&s, "live")["id"].clone();
    assert_ne!(job1, job2);
    let (_, jobs) = areq(&s, "GET", "/_scheduler/jobs", None);
    assert_eq!(jobs["total_rows"], 1, "the old job is gone: {jobs}");
    assert_eq!(jobs["jobs"][0]["history"][0]["type"], "started");

    // Delete: writes stop reaching the target.
    let (_, cur) = areq(&s, "GET", "/_replicator/live", None);
    let rev = cur["_rev"].as_str().unwrap();
    assert_eq!(
        areq(&s, "DELETE", &format!("/_replicator/live?rev={rev}"), None).0 / 100,
        2
    );
    assert!(wait_for(10, || (areq(&s, "GET", "/_scheduler/jobs", None).1
        ["total_rows"]
        == 0)
        .then_some(()))
    .is_some());
    // A witness: a live replication of the same source. Once it has copied `a2`, the
    // deleted one, had it kept running, would have had every chance to as well.
    let (st, v) = areq(
        &s,
        "PUT",
        "/_replicator/witness",
        Some(
            &json!({"source": "src", "target": "witness", "create_target": true, "continuous": true}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    put_docs(&s, "src", vec![json!({"_id": "a2", "kind": "a"})]);
    assert!(
        wait_for(30, || exists(&s, "witness", "a2").then_some(())).is_some(),
        "the witness replication copies a2"
    );
    assert!(
        !exists(&s, "dst", "a2"),
        "a deleted replication no longer writes"
    );
}

#[test]
fn invalid_documents_are_refused_with_reasons() {
    let s = common::start_admin();
    let cases = [
        (json!({"target": "b"}), "`source`"),
        (json!({"source": "a"}), "`target`"),
        (
            json!({"source": "a", "target": "b", "selector": {"x": 1}, "doc_ids": ["x"]}),
            "mutually exclusive",
        ),
        (
            json!({"source": "a", "target": "b", "selector": {"x": {"$regex": "("}}}),
            "`selector` is invalid",
        ),
        (
            json!({"source": "http://exa mple.com/db", "target": "b"}),
            "invalid url",
        ),
        (
            json!({"source": "a", "target": "b", "filter": "ddoc/myfilter"}),
            "JavaScript",
        ),
        (
            json!({"source": "a", "target": "b", "continuous": "yes"}),
            "`continuous` must be true or false",
        ),
        (
            json!({"source": "a", "target": "b", "worker_processes": "many"}),
            "`worker_processes`",
        ),
        (
            json!({"source": "a", "target": "b", "doc_ids": "x"}),
            "`doc_ids` must be an array",
        ),
    ];
    for (i, (doc, reason)) in cases.iter().enumerate() {
        let (st, v) = areq(&s, "PUT", &format!("/_replicator/bad{i}"), Some(doc));
        assert_eq!(st, 403, "{doc}: {v}");
        assert_eq!(v["error"], "forbidden");
        assert!(v["reason"].as_str().unwrap().contains(reason), "{doc}: {v}");
    }
    // The same check by _bulk_docs and POST.
    let (st, v) = areq(&s, "POST", "/_replicator", Some(&json!({"source": "a"})));
    assert_eq!(st, 403, "{v}");
    let (st, v) = areq(
        &s,
        "POST",
        "/_replicator/_bulk_docs",
        Some(&json!({"docs": [{"_id": "x", "source": "a"}]})),
    );
    assert!(st == 403 || v.to_string().contains("forbidden"), "{v}");
    // A new document carrying a _rev: CouchDB's conflict (the sharing seed's troubleshooting case).
    let (st, v) = areq(
        &s,
        "PUT",
        "/_replicator/withrev",
        Some(&json!({"_rev": "1-abc", "source": "a", "target": "b"})),
    );
    assert_eq!((st, v["error"].as_str()), (409, Some("conflict")), "{v}");
    // Nothing was stored.
    assert_eq!(areq(&s, "GET", "/_replicator", None).1["doc_count"], 0);
    // Credentials: non-admins cannot read _replicator at all.
    assert_eq!(
        common::req(&s.addr, "GET", "/_replicator/_all_docs", None).0,
        401
    );
}

#[test]
fn runtime_failures_show_as_states_and_duplicates_fail() {
    let s = common::start_admin();
    areq(&s, "PUT", "/src", None);
    areq(
        &s,
        "PUT",
        "/_replicator/nohost",
        Some(
            &json!({"source": "src", "target": "http://bob:secret@127.0.0.1:9/x", "continuous": true, "retries_per_request": 0}),
        ),
    );
    areq(
        &s,
        "PUT",
        "/_replicator/nodb",
        Some(&json!({"source": "missing", "target": "dst", "continuous": true})),
    );
    let v = wait_state(&s, "nohost", "crashing");
    let err = v["info"]["error"].as_str().unwrap();
    assert!(
        err.contains("127.0.0.1:9") && !err.contains("secret"),
        "{v}"
    );
    assert!(v["error_count"].as_u64().unwrap() >= 1);
    let v = wait_state(&s, "nodb", "crashing");
    assert!(
        v["info"]["error"]
            .as_str()
            .unwrap()
            .contains("db_not_found"),
        "{v}"
    );
    let (_, jobs) = areq(&s, "GET", "/_scheduler/jobs", None);
    assert!(!jobs.to_string().contains("secret"), "{jobs}");
    let hist = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["doc_id"] == "nohost")
        .unwrap()["history"]
        .clone();
    assert!(
        hist.as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "crashed" && e["reason"].is_string()),
        "{hist}"
    );

    // The missing database appears: the crashing job heals on its next retry.
    areq(&s, "PUT", "/missing", None);
    put_docs(&s, "missing", vec![json!({"_id": "late"})]);
    areq(&s, "PUT", "/dst", None);
    assert!(wait_for(60, || exists(&s, "dst", "late").then_some(())).is_some());

    // A duplicate of a running replication fails and names the first document.
    areq(
        &s,
        "PUT",
        "/_replicator/dup",
        Some(&json!({"source": "missing", "target": "dst", "continuous": true})),
    );
    let v = wait_state(&s, "dup", "failed");
    assert!(
        v["info"]["error"].as_str().unwrap().contains("`nodb`"),
        "{v}"
    );
    // The state is recorded in the document by the scheduler's writer, just after.
    let d = wait_for(30, || {
        let d = areq(&s, "GET", "/_replicator/dup", None).1;
        (d["_replication_state"] == "failed").then_some(d)
    })
    .expect("the failed state is recorded in the document");
    assert!(d["_replication_state_reason"]
        .as_str()
        .unwrap()
        .contains("already started"));
}

#[test]
fn jobs_resume_after_restart_and_sigkill_without_resending() {
    let s = Server::process(&["--admin", common::ADMIN]);
    areq(&s, "PUT", "/src", None);
    for c in 0..10 {
        put_docs(
            &s,
            "src",
            (0..1000)
                .map(|i| json!({"_id": format!("k{:05}", c * 1000 + i), "pad": "x".repeat(300)}))
                .collect(),
        );
    }
    areq(
        &s,
        "PUT",
        "/_replicator/big",
        Some(
            &json!({"source": "src", "target": "dst", "create_target": true, "continuous": true, "worker_batch_size": 100, "checkpoint_interval": 200}),
        ),
    );
    // SIGKILL part-way.
    assert!(
        wait_for(60, || (areq(&s, "GET", "/dst", None).1["doc_count"]
            .as_u64()
            .unwrap_or(0)
            >= 1000)
            .then_some(()))
        .is_some()
    );
    let mut s = s;
    s.kill();
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s = Server::process_in(dir, &["--admin", A]);
    assert!(
        wait_for(120, || (areq(&s, "GET", "/dst", None).1["doc_count"]
            == 10_000)
            .then_some(()))
        .is_some(),
        "the job resumed after SIGKILL: {}",
        doc_status(&s, "big")
    );
    assert_eq!(update_seq(&s, "dst"), 10_000, "nothing written twice");
    // A graceful restart: the job resumes from its checkpoint and keeps following.
    let mut s = s;
    unsafe_terminate(&mut s);
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s = Server::start_in(dir, &["--admin", A]);
    put_docs(&s, "src", vec![json!({"_id": "after-restart"})]);
    assert!(wait_for(60, || exists(&s, "dst", "after-restart").then_some(())).is_some());
    assert_eq!(update_seq(&s, "dst"), 10_001);
    // The counter follows the write by a moment (the status can be read in between): wait
    // for it. A job that resent everything would count 10,001, never 1.
    wait_state(&s, "big", "running");
    let counted = wait_for(30, || {
        let v = doc_status(&s, "big");
        (v["info"]["docs_written"] == 1).then_some(())
    });
    assert!(
        counted.is_some(),
        "only the new doc was written after the restart: {}",
        doc_status(&s, "big")
    );
}

/// In `_bulk_docs` an invalid replication document is refused in its own row; the valid ones
/// around it are written (CouchDB's validation hook fails documents, not requests).
#[test]
fn bulk_writes_to_replicator_refuse_only_the_invalid_documents() {
    let s = common::start_admin();
    let body = json!({"docs": [
        {"_id": "fine", "source": "a", "target": "b"},
        {"_id": "broken", "source": 5},
        {"_id": "fine2", "source": "a", "target": "c"},
    ]});
    let (st, v) = areq(&s, "POST", "/_replicator/_bulk_docs", Some(&body));
    assert_eq!(st, 201, "{v}");
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v}");
    assert_eq!(
        (rows[0]["id"].as_str(), rows[0]["ok"].as_bool()),
        (Some("fine"), Some(true))
    );
    assert_eq!(
        (rows[1]["id"].as_str(), rows[1]["error"].as_str()),
        (Some("broken"), Some("forbidden"))
    );
    assert_eq!(
        (rows[2]["id"].as_str(), rows[2]["ok"].as_bool()),
        (Some("fine2"), Some(true))
    );
    assert!(exists(&s, "_replicator", "fine") && exists(&s, "_replicator", "fine2"));
    assert!(!exists(&s, "_replicator", "broken"));
}

/// Deleting `_replicator` stops the jobs of its documents; a `_replicator` created again is
/// followed from its start (the scheduler kept watching the deleted one until a restart).
#[test]
fn a_recreated_replicator_database_is_followed() {
    let s = common::start_admin();
    areq(&s, "PUT", "/src", None);
    put_docs(&s, "src", vec![json!({"_id": "one"})]);
    let rep = json!({"source": "src", "target": "dst", "create_target": true, "continuous": true});
    assert_eq!(areq(&s, "PUT", "/_replicator/old", Some(&rep)).0, 201);
    wait_state(&s, "old", "running");
    assert_eq!(areq(&s, "DELETE", "/_replicator", None).0, 200);
    assert!(
        wait_for(30, || (areq(&s, "GET", "/_scheduler/jobs", None).1["jobs"]
            .as_array()
            .is_some_and(Vec::is_empty))
        .then_some(()))
        .is_some(),
        "the deleted database's job still runs: {}",
        areq(&s, "GET", "/_scheduler/jobs", None).1
    );
    assert_eq!(areq(&s, "PUT", "/_replicator", None).0, 201);
    let one_shot = json!({"source": "src", "target": "dst2", "create_target": true});
    assert_eq!(areq(&s, "PUT", "/_replicator/new", Some(&one_shot)).0, 201);
    let v = wait_state(&s, "new", "completed");
    assert_eq!(v["info"]["docs_written"], 1, "{v}");
    assert!(exists(&s, "dst2", "one"));
    let docs = areq(&s, "GET", "/_scheduler/docs", None).1;
    let ids: Vec<&str> = docs["docs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["doc_id"].as_str())
        .collect();
    assert_eq!(ids, ["new"], "{docs}");
}

/// A job still starting, its source peer having accepted the connection and never answered,
/// has written nothing: shutdown cancels it at once instead of waiting for the peer (it took
/// the scheduler's 10 s grace before, which a user pressing Ctrl-C sees as a hang).
#[test]
fn shutdown_does_not_wait_for_a_silent_peer() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let source = format!("http://{}/quiet", silent.local_addr().unwrap());
    let mut s = Server::process(&["--admin", common::ADMIN]);
    areq(&s, "PUT", "/dst", None);
    let (st, v) = areq(
        &s,
        "PUT",
        "/_replicator/silent",
        Some(&json!({"source": source, "target": "dst", "continuous": true})),
    );
    assert_eq!(st, 201, "{v}");
    // The job has connected and waits for an answer that never comes.
    let (_conn, _) = silent.accept().unwrap();
    let t = std::time::Instant::now();
    unsafe_terminate(&mut s);
    let waited = t.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(5),
        "shutdown waited {waited:?} for a peer that never answers"
    );
}

/// SIGTERM and wait: settee's graceful shutdown (jobs checkpoint, sled flushes).
fn unsafe_terminate(s: &mut Server) {
    let _ = Command::new("kill")
        .arg(s.child().id().to_string())
        .status();
    let _ = s.child().wait();
}

use std::process::Command;

#[test]
fn two_hundred_continuous_replications_at_once() {
    let s = common::start_admin();
    let n = 200;
    for i in 0..n {
        areq(&s, "PUT", &format!("/src{i}"), None);
    }
    let docs: Vec<Value> = (0..n)
        .map(|i| json!({"_id": format!("r{i}"), "source": format!("src{i}"), "target": format!("dst{i}"), "create_target": true, "continuous": true}))
        .collect();
    put_docs(&s, "_replicator", docs);
    assert!(
        wait_for(120, || {
            let (_, v) = areq(&s, "GET", "/_scheduler/docs?states=running", None);
            (v["total_rows"] == n).then_some(())
        })
        .is_some(),
        "all jobs running"
    );
    for i in 0..n {
        areq(&s, "PUT", &format!("/src{i}/doc"), Some(&json!({"i": i})));
    }
    for i in 0..n {
        assert!(
            wait_for(60, || exists(&s, &format!("dst{i}"), "doc").then_some(())).is_some(),
            "dst{i}"
        );
    }
    let (_, tasks) = areq(&s, "GET", "/_active_tasks", None);
    assert_eq!(tasks.as_array().unwrap().len(), n);
}

/// Credentials in a replication document: readable by admins only, redacted in every status
/// output (`/_scheduler/*`, `/_active_tasks`, `settee status`).
#[test]
fn credentials_stay_with_admins_and_out_of_status() {
    let s = common::start_admin();
    areq(&s, "PUT", "/src", None);
    put_docs(&s, "src", vec![json!({"_id": "a"})]);
    let secret = "s3cr3t-pw";
    let header = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("adm:{secret}"))
    };
    // A continuous job whose credentials are wrong keeps crashing: its status carries the
    // endpoint and the error, the places a secret could leak.
    let doc = json!({
        "source": {"url": format!("http://{}/src", s.addr), "auth": {"basic": {"username": "adm", "password": secret}}},
        "target": {"url": format!("http://{}/dst", s.addr), "headers": {"Authorization": format!("Basic {header}")}},
        "create_target": true, "continuous": true
    });
    let (st, v) = areq(&s, "PUT", "/_replicator/creds", Some(&doc));
    assert_eq!(st, 201, "{v}");
    let url_doc = json!({"source": format!("http://adm:{secret}@{}/src", s.addr), "target": format!("http://adm:{secret}@{}/dst2", s.addr), "continuous": true});
    assert_eq!(
        areq(
            &s,
            "PUT",
            "/_replicator/creds-in-the-urls-of-both-ends",
            Some(&url_doc)
        )
        .0,
        201
    );
    // Both documents must have reached the scheduler before their status pages exist.
    for id in ["creds", "creds-in-the-urls-of-both-ends"] {
        wait_for(30, || {
            let v = doc_status(&s, id);
            (v["state"] != "initializing" && !v["state"].is_null()).then_some(())
        });
    }
    for path in [
        "/_scheduler/jobs",
        "/_scheduler/docs",
        "/_scheduler/docs/_replicator/creds",
        "/_scheduler/docs/_replicator/creds-in-the-urls-of-both-ends",
        "/_active_tasks",
    ] {
        let (st, v) = areq(&s, "GET", path, None);
        assert_eq!(st, 200, "{path}: {v}");
        let text = v.to_string();
        assert!(
            !text.contains(secret) && !text.contains(&header),
            "{path}: {text}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_settee"))
        .args(["status", "--server", &format!("http://{A}@{}", s.addr)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("creds"), "{text}");
    // A document id longer than the column is no reason to shift the others.
    let state_col = |line: &str| {
        ["STATE", "running", "crashing", "pending"]
            .iter()
            .find_map(|w| line.find(&format!(" {w} ")))
    };
    let cols: Vec<_> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("error:"))
        .map(state_col)
        .collect();
    assert!(
        cols.len() >= 3 && cols.iter().all(|c| c.is_some() && *c == cols[0]),
        "{text}"
    );
    assert!(!text.contains(secret) && !text.contains(&header), "{text}");
    // The documents themselves: admins only.
    assert_eq!(areq(&s, "GET", "/_replicator/creds", None).0, 200);
    let (st, _, _) = common::raw(&s.addr, "GET", "/_replicator/creds", &[], None);
    assert_eq!(st, 401);
    let user = json!({"name": "reader", "password": "pw", "roles": [], "type": "user"});
    assert_eq!(
        areq(&s, "PUT", "/_users/org.couchdb.user:reader", Some(&user)).0,
        201
    );
    let (st, _, _) = common::raw(
        &s.addr,
        "GET",
        "/_replicator/creds",
        &[("Authorization", "Basic cmVhZGVyOnB3")],
        None,
    );
    assert_eq!(st, 403);
}

#[test]
fn the_first_checkpoint_follows_the_first_batch() {
    let s = common::start_admin();
    areq(&s, "PUT", "/src", None);
    put_docs(
        &s,
        "src",
        (0..10).map(|i| json!({"_id": format!("d{i}")})).collect(),
    );
    // The default checkpoint_interval is 30 s: periodic checkpoints start 15-45 s in.
    areq(
        &s,
        "PUT",
        "/_replicator/early",
        Some(&json!({"source": "src", "target": "dst", "create_target": true, "continuous": true})),
    );
    let checkpointed = wait_for(10, || {
        let v = doc_status(&s, "early");
        let seq = match &v["info"]["checkpointed_source_seq"] {
            Value::String(s) => s.split('-').next().and_then(|n| n.parse().ok()),
            n => n.as_u64(),
        };
        (seq >= Some(10)).then_some(v)
    });
    assert!(
        checkpointed.is_some(),
        "no checkpoint within 10 s of the first batch: {}",
        doc_status(&s, "early")
    );
}

#[test]
fn a_job_whose_peer_fails_says_so_while_it_retries() {
    let a = common::start_admin();
    let b = Server::process(&["--admin", common::ADMIN]);
    let b_addr = b.addr.clone();
    areq(&a, "PUT", "/src", None);
    areq(&b, "PUT", "/dst", None);
    areq(
        &a,
        "PUT",
        "/_replicator/out",
        Some(
            &json!({"source": "src", "target": format!("http://{A}@{b_addr}/dst"), "continuous": true}),
        ),
    );
    put_docs(&a, "src", vec![json!({"_id": "first"})]);
    assert!(wait_for(30, || exists(&b, "dst", "first").then_some(())).is_some());
    // The target goes away; the next write makes the job retry its requests.
    let mut b = b;
    b.kill();
    let dir = std::mem::replace(&mut b.dir, tempfile::tempdir().unwrap());
    put_docs(&a, "src", vec![json!({"_id": "second"})]);
    let troubled = wait_for(7, || {
        let v = doc_status(&a, "out");
        (v["state"] == "running" && v["info"]["error"].is_string()).then_some(v)
    })
    .unwrap_or_else(|| panic!("no error shown while retrying: {}", doc_status(&a, "out")));
    let reason = troubled["info"]["error"].as_str().unwrap();
    assert!(
        reason.contains(&b_addr) && !reason.contains(":pw@"),
        "{reason}"
    );
    assert!(troubled["info"]["retries"].as_u64() >= Some(1));
    // Back on the same port: the document arrives and the error is gone.
    let b = Server::start_at(dir, &b_addr, &["--admin", A]);
    assert!(wait_for(60, || exists(&b, "dst", "second").then_some(())).is_some());
    let healthy = wait_for(30, || {
        let v = doc_status(&a, "out");
        (v["state"] == "running" && v["info"].get("error").is_none()).then_some(v)
    });
    assert!(healthy.is_some(), "{}", doc_status(&a, "out"));
}
