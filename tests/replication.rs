//! The replicator over real HTTP: settee↔settee, local↔remote, settee↔pouchdb-server (npm), with
//! inserts, updates, deletions, conflicts, attachments, design docs, selectors and doc_ids;
//! resume after SIGKILL; continuous with a source outage; two-way convergence; bad input.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::{req, trees, wait_for, PouchServer, Server};
use serde_json::{json, Value};

use common::ADMIN as A;

fn url(s: &Server, db: &str) -> String {
    format!("http://{A}@{}/{db}", s.addr)
}

use common::areq_at as areq;

/// Writes the test corpus: 30 docs (even ones `type: public`), updates, two deletions, a
/// conflict with both branches public, an attachment and a design doc.
fn populate(addr: &str, db: &str, auth: bool) {
    let r = |m: &str, p: &str, b: Option<&Value>| {
        if auth {
            areq(addr, m, p, b)
        } else {
            req(addr, m, p, b)
        }
    };
    let (s, _) = r("PUT", &format!("/{db}"), None);
    assert!(s == 201 || s == 412, "create {db}: {s}");
    let docs: Vec<Value> = (0..30)
        .map(|i| json!({"_id": format!("d{i:03}"), "type": if i % 2 == 0 {"public"} else {"private"}, "n": i}))
        .collect();
    let (s, _) = r(
        "POST",
        &format!("/{db}/_bulk_docs"),
        Some(&json!({"docs": docs})),
    );
    assert_eq!(s, 201);
    for i in 1..=5 {
        for _ in 0..2 {
            let id = format!("d{i:03}");
            let (_, cur) = r("GET", &format!("/{db}/{id}"), None);
            let mut d = cur.clone();
            d["n"] = json!(d["n"].as_i64().unwrap() + 100);
            assert_eq!(r("PUT", &format!("/{db}/{id}"), Some(&d)).0, 201);
        }
    }
    for id in ["d006", "d007"] {
        let (_, cur) = r("GET", &format!("/{db}/{id}"), None);
        let rev = cur["_rev"].as_str().unwrap().to_owned();
        let (s, _) = r("DELETE", &format!("/{db}/{id}?rev={rev}"), None);
        assert!(s == 200 || s == 201, "delete {id}: {s}");
    }
    let (_, cur) = r("GET", &format!("/{db}/d008"), None);
    let rev1 = cur["_rev"].as_str().unwrap().to_owned();
    let hash = rev1.split('-').nth(1).unwrap().to_owned();
    let branch = json!({"_id": "d008", "_rev": "2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "type": "public", "n": "branch",
        "_revisions": {"start": 2, "ids": ["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", hash]}});
    let mut d = cur.clone();
    d["n"] = json!("other branch");
    assert_eq!(r("PUT", &format!("/{db}/d008"), Some(&d)).0, 201);
    let (s, _) = r(
        "POST",
        &format!("/{db}/_bulk_docs"),
        Some(&json!({"docs": [branch], "new_edits": false})),
    );
    assert_eq!(s, 201);
    let (_, cur) = r("GET", &format!("/{db}/d010"), None);
    let mut d = cur.clone();
    d["_attachments"] =
        json!({"note.txt": {"content_type": "text/plain", "data": "aGVsbG8gd29ybGQ="}});
    assert_eq!(r("PUT", &format!("/{db}/d010"), Some(&d)).0, 201);
    let ddoc = json!({"_id": "_design/app", "type": "public", "views": {"by_n": {"map": "function(doc){emit(doc.n)}"}}});
    assert_eq!(r("PUT", &format!("/{db}/_design/app"), Some(&ddoc)).0, 201);
}

fn replicate(on: &Server, body: Value) -> Value {
    let (s, v) = areq(&on.addr, "POST", "/_replicate", Some(&body));
    assert_eq!(s, 200, "replicate {body}: {v}");
    assert_eq!(v["ok"], true);
    v
}

fn written(report: &Value) -> u64 {
    report["history"][0]["docs_written"].as_u64().unwrap()
}

/// Trees of the source docs that should pass, compared with the target's, which must hold
/// nothing else.
fn assert_replica(
    src: &BTreeMap<String, Vec<Value>>,
    dst: &BTreeMap<String, Vec<Value>>,
    pass: impl Fn(&str, &[Value]) -> bool,
) {
    let expected: BTreeMap<&String, &Vec<Value>> =
        src.iter().filter(|(id, leaves)| pass(id, leaves)).collect();
    let got: BTreeMap<&String, &Vec<Value>> = dst.iter().collect();
    assert_eq!(
        expected.keys().collect::<BTreeSet<_>>(),
        got.keys().collect::<BTreeSet<_>>(),
        "which documents reached the target"
    );
    for (id, leaves) in expected {
        assert_eq!(leaves, got[id], "revision tree of {id}");
    }
}

fn all(_: &str, _: &[Value]) -> bool {
    true
}

/// Docs whose live leaves are public: a selector replication sends those (tombstones do not
/// match `type`, so deletions before the first run never arrive).
fn public(_: &str, leaves: &[Value]) -> bool {
    leaves
        .iter()
        .any(|l| l["type"] == "public" && l.get("_deleted").is_none())
}

#[test]
fn settee_to_settee_over_http_all_selector_and_doc_ids() {
    let a = common::start_admin();
    let b = common::start_admin();
    populate(&a.addr, "src", true);
    let src = trees_auth(&a, "src");
    assert_eq!(src.len(), 31);

    let r = replicate(
        &b,
        json!({"source": url(&a, "src"), "target": url(&b, "all"), "create_target": true}),
    );
    assert_eq!(written(&r), 32, "31 docs, one with two leaves: {r}");
    assert_replica(&src, &trees_auth(&b, "all"), all);
    // A second run finds everything there.
    let r = replicate(
        &b,
        json!({"source": url(&a, "src"), "target": url(&b, "all")}),
    );
    assert_eq!(written(&r), 0);
    // One connection per endpoint for four workers and small batches: slower, never stuck.
    let r = replicate(
        &b,
        json!({"source": url(&a, "src"), "target": url(&b, "one"), "create_target": true,
               "http_connections": 1, "worker_processes": 4, "worker_batch_size": 5}),
    );
    assert_eq!(written(&r), 32, "{r}");
    assert_replica(&src, &trees_auth(&b, "one"), all);
    // The attachment arrived with its bytes.
    let (_, _, body) = common::raw(
        &b.addr,
        "GET",
        "/all/d010/note.txt",
        &[("Authorization", &common::admin_basic())],
        None,
    );
    assert_eq!(body, b"hello world");

    let r = replicate(
        &b,
        json!({"source": url(&a, "src"), "target": url(&b, "sel"), "create_target": true, "selector": {"type": "public"}}),
    );
    assert_replica(&src, &trees_auth(&b, "sel"), public);
    assert!(written(&r) >= 15);
    assert!(
        trees_auth(&b, "sel").contains_key("_design/app"),
        "design docs replicate too"
    );

    replicate(
        &b,
        json!({"source": url(&a, "src"), "target": url(&b, "ids"), "create_target": true, "doc_ids": ["d003", "d008", "d006", "nope"]}),
    );
    assert_replica(&src, &trees_auth(&b, "ids"), |id, _| {
        ["d003", "d008", "d006"].contains(&id)
    });
}

fn trees_auth(s: &Server, db: &str) -> BTreeMap<String, Vec<Value>> {
    common::trees_with(&s.addr, db, &[("Authorization", &common::admin_basic())])
}

fn trees_via(addr: &str, db: &str) -> BTreeMap<String, Vec<Value>> {
    trees(addr, db)
}

#[test]
fn local_database_to_remote_and_back() {
    let a = common::start_admin();
    let b = common::start_admin();
    populate(&a.addr, "src", true);
    let src = trees_auth(&a, "src");
    let r = replicate(
        &a,
        json!({"source": "src", "target": url(&b, "mid"), "create_target": true}),
    );
    assert_eq!(written(&r), 32);
    assert_replica(&src, &trees_auth(&b, "mid"), all);
    let r = replicate(
        &a,
        json!({"source": url(&b, "mid"), "target": "back", "create_target": true}),
    );
    assert_eq!(written(&r), 32);
    assert_replica(&src, &trees_auth(&a, "back"), all);
    // Local to local with a selector.
    replicate(
        &a,
        json!({"source": "src", "target": "pub", "create_target": true, "selector": {"type": "public"}}),
    );
    assert_replica(&src, &trees_auth(&a, "pub"), public);
}

#[test]
fn settee_and_pouchdb_server_both_ways() {
    let a = common::start_admin();
    let p = PouchServer::start(&["--no-selector-shim"]);
    populate(&a.addr, "src", true);
    let src = trees_auth(&a, "src");
    let purl = |db: &str| format!("{}/{db}", p.1.trim_end_matches('/'));

    // settee -> pouchdb-server, everything.
    let r = replicate(
        &a,
        json!({"source": "src", "target": purl("fromsettee"), "create_target": true}),
    );
    assert_eq!(written(&r), 32, "{r}");
    assert_replica(&src, &trees_via(p.addr(), "fromsettee"), all);

    // pouchdb-server -> settee, everything, then with a selector the stock server cannot
    // take by POST: settee filters on its side and says so.
    let r = replicate(
        &a,
        json!({"source": purl("fromsettee"), "target": "back", "create_target": true}),
    );
    assert_eq!(written(&r), 32, "{r}");
    assert_replica(&src, &trees_auth(&a, "back"), all);
    let (s, v) = areq(
        &a.addr,
        "POST",
        "/_replicate",
        Some(
            &json!({"source": purl("fromsettee"), "target": "pubback", "create_target": true, "selector": {"type": "public"}}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    // Settee-side filtering matches the winning revision, so only docs whose winner is public.
    let pub_back = trees_auth(&a, "pubback");
    assert!(
        pub_back.contains_key("d000") && !pub_back.contains_key("d001"),
        "{:?}",
        pub_back.keys()
    );
    for (id, leaves) in &pub_back {
        assert_eq!(leaves, &src[id], "tree of {id}");
        assert!(leaves.iter().any(|l| l["type"] == "public"));
    }
    // doc_ids from pouchdb-server.
    replicate(
        &a,
        json!({"source": purl("fromsettee"), "target": "idsback", "create_target": true, "doc_ids": ["d002", "d008"]}),
    );
    assert_replica(&src, &trees_auth(&a, "idsback"), |id, _| {
        id == "d002" || id == "d008"
    });
}

fn run_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_settee"))
        .arg("replicate")
        .arg("--quiet")
        .args(args)
        .output()
        .unwrap()
}

fn cli_written(out: &std::process::Output) -> u64 {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "settee replicate failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = text
        .split_whitespace()
        .skip_while(|w| *w != "docs_written")
        .nth(1)
        .expect("docs_written in output");
    w.parse().unwrap()
}

fn update_seq(s: &Server, db: &str) -> u64 {
    let (_, v) = areq(&s.addr, "GET", &format!("/{db}"), None);
    common::seq_number(&v["update_seq"])
}

#[test]
fn killed_one_shot_resumes_and_writes_only_what_was_missing() {
    let a = common::start_admin();
    let b = common::start_admin();
    assert_eq!(areq(&a.addr, "PUT", "/big", None).0, 201);
    for chunk in 0..20 {
        let docs: Vec<Value> = (0..1000).map(|i| json!({"_id": format!("k{:05}", chunk * 1000 + i), "v": i, "pad": "x".repeat(200)})).collect();
        assert_eq!(
            areq(
                &a.addr,
                "POST",
                "/big/_bulk_docs",
                Some(&json!({"docs": docs}))
            )
            .0,
            201
        );
    }
    let (src, dst) = (url(&a, "big"), url(&b, "big"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_settee"))
        .args(["replicate", "--quiet", "--create-target", &src, &dst])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it part-way, as a crash would.
    let got = wait_for(120, || {
        let (s, v) = areq(&b.addr, "GET", "/big", None);
        (s == 200 && v["doc_count"].as_u64().unwrap_or(0) >= 3000).then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(got.is_some(), "the first run wrote nothing in time");
    // A write the killed client had already sent may still land (the server finishes a
    // request whose body it has, client or not): wait until the target has been still for
    // 2 s. No request can serve as a sentinel here, since the server orders nothing across
    // connections; 2 s is far beyond one batch's write even on a loaded machine.
    let mut before = update_seq(&b, "big");
    let mut still = 0;
    while still < 4 {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = update_seq(&b, "big");
        still = if now == before { still + 1 } else { 0 };
        before = now;
    }
    assert!(
        before < 20_000,
        "killed too late to prove anything ({before})"
    );
    let out = run_cli(&["--create-target", &src, &dst]);
    let w = cli_written(&out);
    assert_eq!(
        w,
        20_000 - before,
        "the second run writes exactly what was missing"
    );
    assert_eq!(
        update_seq(&b, "big"),
        20_000,
        "no revision was written twice"
    );
    let out = run_cli(&[&src, &dst]);
    assert_eq!(cli_written(&out), 0);
    assert_eq!(update_seq(&b, "big"), 20_000);
}

#[test]
fn continuous_follows_and_survives_a_source_outage() {
    let a = Server::process(&["--admin", common::ADMIN]);
    let b = common::start_admin();
    assert_eq!(areq(&a.addr, "PUT", "/live", None).0, 201);
    let (s, v) = areq(
        &b.addr,
        "POST",
        "/_replicate",
        Some(
            &json!({"source": url(&a, "live"), "target": "copy", "create_target": true, "continuous": true}),
        ),
    );
    assert_eq!(s, 202, "{v}");
    let job = v["_local_id"].as_str().unwrap().to_owned();
    assert!(job.ends_with("+continuous+create_target"));
    areq(&a.addr, "PUT", "/live/one", Some(&json!({"x": 1})));
    assert!(
        wait_for(30, || (areq(&b.addr, "GET", "/copy/one", None).0 == 200)
            .then_some(()))
        .is_some(),
        "a write on the source reaches the target"
    );
    let (_, tasks) = areq(&b.addr, "GET", "/_active_tasks", None);
    assert_eq!(tasks[0]["replication_id"], job.as_str());
    assert!(
        !tasks.to_string().contains(":pw@"),
        "no password in status: {tasks}"
    );

    // The source goes away for 10 s and comes back on the same port with the same data.
    let addr = a.addr.clone();
    let mut a = a;
    a.kill();
    let dir = std::mem::replace(&mut a.dir, tempfile::tempdir().unwrap());
    std::thread::sleep(std::time::Duration::from_secs(10));
    let a2 = Server::start_at(dir, &addr, &["--admin", A]);
    areq(&a2.addr, "PUT", "/live/two", Some(&json!({"x": 2})));
    assert!(
        wait_for(60, || (areq(&b.addr, "GET", "/copy/two", None).0 == 200)
            .then_some(()))
        .is_some(),
        "caught up after the outage without restarting the job"
    );
    let (_, j) = areq(
        &b.addr,
        "GET",
        &format!("/_scheduler/jobs/{}", job.replace('+', "%2B")),
        None,
    );
    assert!(
        j["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "crashed"),
        "{j}"
    );
    let (s, v) = areq(
        &b.addr,
        "POST",
        "/_replicate",
        Some(&json!({"replication_id": job, "cancel": true})),
    );
    assert_eq!(s, 200, "{v}");
    let (_, tasks) = areq(&b.addr, "GET", "/_active_tasks", None);
    assert_eq!(tasks, json!([]));
}

#[test]
fn two_way_pair_converges_and_then_idles() {
    let a = common::start_admin();
    let b = common::start_admin();
    for s in [&a, &b] {
        assert_eq!(areq(&s.addr, "PUT", "/shared", None).0, 201);
    }
    let sel = json!({"type": "shared"});
    for (on, src, dst) in [
        (&a, url(&a, "shared"), url(&b, "shared")),
        (&a, url(&b, "shared"), url(&a, "shared")),
    ] {
        let (s, v) = areq(
            &on.addr,
            "POST",
            "/_replicate",
            Some(&json!({"source": src, "target": dst, "continuous": true, "selector": sel})),
        );
        assert_eq!(s, 202, "{v}");
    }
    // Edits on both sides, a doc outside the selector, then a concurrent edit of the same doc.
    let base = common::put_doc(
        &a,
        "shared",
        json!({"_id": "x", "type": "shared", "from": "a"}),
    );
    common::put_doc(
        &b,
        "shared",
        json!({"_id": "y", "type": "shared", "from": "b"}),
    );
    common::put_doc(&a, "shared", json!({"_id": "private", "type": "mine"}));
    let arrived = |s: &Server, id: &str| {
        (areq(&s.addr, "GET", &format!("/shared/{id}"), None).0 == 200).then_some(())
    };
    assert!(wait_for(30, || arrived(&b, "x")).is_some());
    assert!(wait_for(30, || arrived(&a, "y")).is_some());
    // The concurrent edit: a edits x, and b's edit of the same revision lands as a sibling
    // (as if b had made it offline). Two plain PUTs could race the running replication: a's
    // edit can reach b before b's PUT, which then rightly gets 409 and no conflict exists.
    let hash = base.split_once('-').unwrap().1.to_owned();
    common::edit_doc(&a, "shared", "x", json!({"from": "a-edit"}));
    let eb = json!({"_id": "x", "_rev": format!("2-{}", "b".repeat(32)), "type": "shared", "from": "b-edit",
        "_revisions": {"start": 2, "ids": ["b".repeat(32), hash]}});
    let (s, v) = areq(
        &b.addr,
        "POST",
        "/shared/_bulk_docs",
        Some(&json!({"docs": [eb], "new_edits": false})),
    );
    assert_eq!(s, 201, "{v}");
    let converged = || {
        let (ta, tb) = (trees_auth(&a, "shared"), trees_auth(&b, "shared"));
        let ta: BTreeMap<_, _> = ta.into_iter().filter(|(k, _)| k != "private").collect();
        (ta == tb && tb.get("x").is_some_and(|l| l.len() == 2)).then_some(())
    };
    assert!(
        wait_for(30, converged).is_some(),
        "both sides hold both branches of x"
    );
    let (_, wa) = areq(&a.addr, "GET", "/shared/x", None);
    let (_, wb) = areq(&b.addr, "GET", "/shared/x", None);
    assert_eq!(wa["_rev"], wb["_rev"], "same winner");
    assert_eq!(
        areq(&b.addr, "GET", "/shared/private", None).0,
        404,
        "outside the selector never crosses"
    );
    // Idle: no ping-pong.
    common::assert_pair_idles(
        &common::Client::admin(&a.addr),
        &common::Client::admin(&b.addr),
        "shared",
        &json!({"type": "shared"}),
    );
}

#[test]
fn bad_input_ends_in_clear_errors_with_credentials_redacted() {
    let a = common::start_admin();
    areq(&a.addr, "PUT", "/src", None);
    // Unreachable peer.
    let (s, v) = areq(
        &a.addr,
        "POST",
        "/_replicate",
        Some(
            &json!({"source": "src", "target": "http://bob:hunter2@127.0.0.1:9/x", "retries_per_request": 0}),
        ),
    );
    // The peer's failure, not this server's: 502, never 500.
    assert_eq!((s, v["error"].as_str()), (502, Some("unreachable")), "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("http://bob:*****@127.0.0.1:9/x/") && !reason.contains("hunter2"),
        "{reason}"
    );
    // Wrong password.
    let bad = format!("http://adm:wrong@{}/src", a.addr);
    let (s, v) = areq(
        &a.addr,
        "POST",
        "/_replicate",
        Some(&json!({"source": bad, "target": "t2", "create_target": true})),
    );
    assert_eq!(s, 401, "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("adm:*****@") && !v.to_string().contains("wrong"),
        "{v}"
    );
    // Not CouchDB: an endpoint answering JSON without database information.
    let not_couch = format!("http://{A}@{}/_up", a.addr);
    let (s, v) = areq(
        &a.addr,
        "POST",
        "/_replicate",
        Some(&json!({"source": not_couch, "target": "t3", "create_target": true})),
    );
    assert!(s >= 400, "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("not a CouchDB"),
        "{v}"
    );
    // A malformed selector, a JS filter, a missing database.
    let (s, v) = areq(
        &a.addr,
        "POST",
        "/_replicate",
        Some(&json!({"source": "src", "target": "t4", "selector": {"a": {"$nope": 1}}})),
    );
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("selector"));
    let (s, v) = areq(
        &a.addr,
        "POST",
        "/_replicate",
        Some(&json!({"source": "src", "target": "t4", "filter": "app/mine"})),
    );
    assert_eq!(s, 400);
    assert!(v["reason"].as_str().unwrap().contains("JavaScript"));
    let (s, v) = areq(
        &a.addr,
        "POST",
        "/_replicate",
        Some(&json!({"source": "missing", "target": "t5"})),
    );
    assert_eq!((s, v["error"].as_str()), (404, Some("db_not_found")), "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("could not open") && reason.contains("missing"),
        "the reason names the database and does not repeat the tag: {v}"
    );
    // The server is still fine.
    assert_eq!(areq(&a.addr, "GET", "/_up", None).0, 200);
}

/// A peer on a raw socket that answers every request with `reply`, whatever it asked.
fn fake_peer(reply: Vec<u8>) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 65536];
            let _ = c.read(&mut buf);
            let _ = c.write_all(&reply);
        }
    });
    format!("http://{addr}/db")
}

/// A peer's answer is bounded in what it can make the replicator hold: a huge body fails the
/// request at once (it could take the server's memory), a huge error reason is cut short (it
/// lands in status output and job history).
#[test]
fn a_peer_cannot_flood_the_replicator() {
    let a = common::start_admin();
    let replicate_from = |source: &str| {
        areq(
            &a.addr,
            "POST",
            "/_replicate",
            Some(
                &json!({"source": source, "target": "t", "create_target": true, "retries_per_request": 0}),
            ),
        )
    };
    let huge = fake_peer(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400000000\r\n\r\n{"
            .to_vec(),
    );
    let (s, v) = replicate_from(&huge);
    assert_eq!((s, v["error"].as_str()), (502, Some("not_couchdb")), "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("larger than 256 MiB"),
        "{v}"
    );
    let long = "R".repeat(100_000);
    let body = json!({"error": "x", "reason": long}).to_string();
    let wordy = fake_peer(
        format!("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes(),
    );
    let (s, v) = replicate_from(&wordy);
    assert_eq!(s, 502, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("RRR") && reason.len() < 1000,
        "{} bytes of reason",
        reason.len()
    );
    assert_eq!(areq(&a.addr, "GET", "/_up", None).0, 200);
}
