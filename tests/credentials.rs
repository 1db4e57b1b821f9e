//! Credentials given to settee (in replication documents' URLs and headers, in a share's remote,
//! in a notification's URL) appear nowhere but in the documents themselves, read by an admin:
//! not in the log at its most verbose, `_scheduler/*`, `_active_tasks`, error reasons,
//! notifications, replication checkpoints, metrics, `_sharing`, nor the page at `/_utils`.
//! One server runs with `RUST_LOG=trace` and everything it shows is searched for the password
//! and for its Basic header.

mod common;

use base64::Engine;
use common::{areq, wait_for, webhook, Client, Server, ADMIN};
use serde_json::{json, Value};

/// The peer's password: long and odd enough that a match is never an accident.
const SECRET: &str = "Zq7-peer-SENTINEL-pw-91x";

fn basic(user_pw: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(user_pw)
}

#[test]
fn credentials_appear_nowhere_but_in_the_documents() {
    let peer_admin = format!("peer:{SECRET}");
    let peer = Server::start(&["--admin", &peer_admin]);
    let log = tempfile::NamedTempFile::new().unwrap();
    let s = Server::process_logging_with(
        log.path(),
        &["--admin", ADMIN],
        &[("RUST_LOG", "trace"), ("NO_COLOR", "1")],
    );
    let peer_c = Client::basic(&peer.addr, &peer_admin);
    assert_eq!(peer_c.req("PUT", "/dst", None).0, 201);
    assert_eq!(peer_c.req("PUT", "/shared", None).0, 201);
    for db in ["src", "col"] {
        assert_eq!(areq(&s, "PUT", &format!("/{db}"), None).0, 201);
    }
    let docs: Vec<Value> = (0..20)
        .map(|i| json!({"_id": format!("d{i}"), "type": "shared"}))
        .collect();
    areq(
        &s,
        "POST",
        "/src/_bulk_docs",
        Some(&json!({ "docs": docs })),
    );
    areq(
        &s,
        "POST",
        "/col/_bulk_docs",
        Some(&json!({ "docs": docs })),
    );

    let (hook, notes) = webhook();
    let hook_with_userinfo = hook.replacen("http://", &format!("http://hook:{SECRET}@"), 1);
    let in_url = format!("http://{peer_admin}@{}/dst", peer.addr);
    let wrong = format!("http://peer:{SECRET}-wrong@{}/dst", peer.addr);
    let unreachable = format!(
        "http://peer:{SECRET}@127.0.0.1:{}/nowhere",
        common::free_port()
    );
    let jobs = [
        // Credentials in the URL, a continuous job that runs and checkpoints.
        json!({"_id": "url", "source": "src", "target": in_url, "continuous": true,
            "notify": [{"url": hook_with_userinfo, "on": ["completed", "crashing", "failed", "recovered"]}]}),
        // Credentials as a header, one-shot: it completes and notifies.
        json!({"_id": "header", "source": "src", "target": {"url": format!("http://{}/dst", peer.addr),
            "headers": {"Authorization": format!("Basic {}", basic(&peer_admin))}},
            "notify": [{"url": hook, "on": ["completed", "failed"]}]}),
        // Refused by the peer (a wrong password): an error reason.
        json!({"_id": "refused", "source": "src", "target": wrong, "retry": {"count": 1, "interval": "1s"},
            "notify": [{"url": hook, "on": ["failed", "crashing"]}]}),
        // A peer that is not there: an error reason.
        json!({"_id": "unreachable", "source": "src", "target": unreachable, "continuous": true}),
    ];
    for doc in &jobs {
        let id = doc["_id"].as_str().unwrap();
        let (st, v) = areq(&s, "PUT", &format!("/_replicator/{id}"), Some(doc));
        assert_eq!(st, 201, "{id}: {v}");
    }
    // A share with the peer.
    let (st, v) = areq(
        &s,
        "POST",
        "/_sharing",
        Some(
            &json!({"id": "pair", "local": "col", "remote": format!("http://{peer_admin}@{}/shared", peer.addr),
            "selector": {"type": "shared"}, "mode": "read-write"}),
        ),
    );
    assert_eq!(st, 201, "{v}");

    // Everything has happened once: documents crossed both ways, the one-shot completed and
    // notified, the refused and unreachable jobs show their errors.
    let count = |db: &str| peer_c.req("GET", &format!("/{db}"), None).1["doc_count"].as_u64();
    assert!(
        wait_for(60, || (count("dst") == Some(20)
            && count("shared") >= Some(20))
        .then_some(()))
        .is_some(),
        "the jobs ran"
    );
    let state = |id: &str| {
        areq(
            &s,
            "GET",
            &format!("/_scheduler/docs/_replicator/{id}"),
            None,
        )
        .1
    };
    assert!(
        wait_for(60, || (state("header")["state"] == "completed"
            && state("refused")["info"]["error"].is_string()
            && state("unreachable")["info"]["error"].is_string())
        .then_some(()))
        .is_some(),
        "states: {} {} {}",
        state("header"),
        state("refused"),
        state("unreachable")
    );
    let note = notes
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("a notification");
    let mut notes_seen = vec![note];
    while let Ok(n) = notes.recv_timeout(std::time::Duration::from_millis(500)) {
        notes_seen.push(n);
    }

    // What settee shows.
    let mut shown: Vec<(String, String)> = Vec::new();
    for path in [
        "/_scheduler/jobs",
        "/_scheduler/docs",
        "/_scheduler/docs/_replicator/url",
        "/_scheduler/docs/_replicator/header",
        "/_scheduler/docs/_replicator/refused",
        "/_scheduler/docs/_replicator/unreachable",
        "/_active_tasks",
        "/_sharing",
        "/_sharing/pair",
        "/src/_local_docs?include_docs=true",
        "/_node/_local/_stats",
        "/_utils/",
        "/_utils/app.js",
    ] {
        let (st, _, body) = common::raw(
            &s.addr,
            "GET",
            path,
            &[("Authorization", &common::admin_basic())],
            None,
        );
        assert_eq!(st, 200, "{path}");
        shown.push((path.into(), String::from_utf8_lossy(&body).into_owned()));
    }
    let (st, _, metrics) = common::raw(
        &s.addr,
        "GET",
        "/_node/_local/_prometheus",
        &[("Authorization", &common::admin_basic())],
        None,
    );
    assert_eq!(st, 200);
    shown.push((
        "metrics".into(),
        String::from_utf8_lossy(&metrics).into_owned(),
    ));
    // The checkpoints settee wrote on the peer.
    let (_, peer_locals) = peer_c.req("GET", "/dst/_local_docs?include_docs=true", None);
    assert!(
        peer_locals.to_string().contains("history"),
        "a checkpoint on the peer: {peer_locals}"
    );
    shown.push(("peer checkpoints".into(), peer_locals.to_string()));
    for n in &notes_seen {
        shown.push(("notification".into(), n.to_string()));
    }
    // Errors a client gets back.
    let (_, bad) = areq(
        &s,
        "POST",
        "/_replicate",
        Some(&json!({"source": "src", "target": format!("http://peer:{SECRET}@127.0.0.1:1/x")})),
    );
    shown.push(("_replicate error".into(), bad.to_string()));
    // The documents themselves keep them, for admins: the search can find what it looks for.
    let (_, doc) = areq(&s, "GET", "/_replicator/url", None);
    assert!(doc.to_string().contains(SECRET), "{doc}");
    let (_, doc) = areq(&s, "GET", "/_replicator/header", None);
    assert!(doc.to_string().contains(&basic(&peer_admin)), "{doc}");
    // Shutdown, so the log holds everything the process will ever write.
    let mut s = s;
    let pid = s.child().id();
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = s.child().wait();
    let log_text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        log_text.contains("TRACE") || log_text.contains("DEBUG"),
        "the log is at its most verbose"
    );
    shown.push(("log".into(), log_text));

    let needles = [
        SECRET.to_owned(),
        basic(&peer_admin),
        basic(&format!("peer:{SECRET}-wrong")),
    ];
    for (what, text) in &shown {
        for n in &needles {
            assert!(
                !text.contains(n.as_str()),
                "{what} shows a credential ({n}):\n{}",
                &text[text.find(n.as_str()).unwrap().saturating_sub(300)..]
                    .chars()
                    .take(600)
                    .collect::<String>()
            );
        }
    }
}
