//! When replications run and who hears about them, with the seeds' scenarios: DHIS2 (a
//! scheduled pull of the central server's metadata and push of local data, a central server
//! that is down exhausting `retry` and reporting the failure, the next run succeeding and
//! reporting that) and Directus (a remote that rejects writes notifies the webhook, and says
//! so again when it recovers). Webhooks are received by a small HTTP listener in the test.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use common::{areq, get_doc, put_doc, wait_for, webhook, Server};
use serde_json::{json, Value};

/// A minimal SMTP server on a free loopback port: every message's text arrives on the channel.
fn smtp_server() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let _ = conn.write_all(b"220 test ESMTP\r\n");
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.to_ascii_uppercase();
                    let reply: &[u8] = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                        b"250 test\r\n"
                    } else if cmd.starts_with("DATA") {
                        let _ = conn.write_all(b"354 go ahead\r\n");
                        let mut text = String::new();
                        loop {
                            let mut l = String::new();
                            if reader.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                                break;
                            }
                            text.push_str(&l);
                        }
                        let _ = tx.send(text);
                        b"250 queued\r\n"
                    } else if cmd.starts_with("QUIT") {
                        let _ = conn.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    let _ = conn.write_all(reply);
                }
            });
        }
    });
    (addr, rx)
}

fn next_mail(rx: &mpsc::Receiver<String>, word: &str) -> String {
    loop {
        let m = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no e-mail saying {word}"));
        if m.contains(word) {
            return m;
        }
    }
}

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn status(s: &Server, id: &str) -> Value {
    areq(
        s,
        "GET",
        &format!("/_scheduler/docs/_replicator/{id}"),
        None,
    )
    .1
}

fn next_notification(rx: &mpsc::Receiver<Value>, state: &str) -> Value {
    loop {
        let v = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {state} notification"));
        if v["state"] == state {
            return v;
        }
    }
}

#[test]
fn dhis2_scheduled_sync_retries_then_reports_failure_and_success() {
    let (smtp, mails) = smtp_server();
    let local = Server::start(&[
        "--admin",
        common::ADMIN,
        "--smtp-url",
        &format!("smtp://{smtp}"),
        "--smtp-from",
        "dhis2 sync <sync@field-a.example>",
    ]);
    let central_addr = free_addr();
    let (hook, notes) = webhook();
    areq(&local, "PUT", "/_replicator", None);
    areq(&local, "PUT", "/datavalues", None);
    put_doc(
        &local,
        "datavalues",
        json!({"_id": "dv-1", "ou": "field-a", "value": 7}),
    );
    let central = |db: &str| format!("http://{}@{central_addr}/{db}", common::ADMIN);
    // Daily, as DHIS2's metadata sync; its last run was long ago, so it is due at start-up.
    let pull = |meta: Value, rev: Option<&str>| {
        let mut d = json!({"_id": "metadata-pull", "source": central("metadata"), "target": "metadata",
            "create_target": true, "schedule": "@daily", "timezone": "UTC", "retries_per_request": 0,
            "retry": {"count": 2, "interval": "1s"},
            "notify": [{"url": hook, "headers": {"X-Token": "s3cret-token"}, "on": ["failed", "completed"]},
                       {"email": "ops@field-a.example", "on": ["failed", "completed"]}],
            "_replication_state": "scheduled", "_replication_state_time": "2020-01-01T00:00:00Z",
            "meta": meta});
        if let Some(r) = rev {
            d["_rev"] = json!(r);
        }
        put_doc(&local, "_replicator", d)
    };
    let rev = pull(json!({"note": "central metadata, daily"}), None);

    // The central server is down: three attempts (one and two retries), then the failure.
    let failed = next_notification(&notes, "failed");
    assert_eq!(failed["doc_id"], "metadata-pull");
    assert!(
        failed["reason"].as_str().unwrap().contains(&central_addr),
        "{failed}"
    );
    assert!(
        !failed.to_string().contains(":pw@"),
        "credentials redacted: {failed}"
    );
    let mail = next_mail(&mails, "failed");
    assert!(
        mail.contains("To: ops@field-a.example") && mail.contains("metadata-pull"),
        "{mail}"
    );
    assert!(!mail.contains(":pw@"), "{mail}");
    let st = wait_for(10, || {
        let v = status(&local, "metadata-pull");
        (v["state"] == "scheduled" && v["info"]["last_run"]["state"] == "failed").then_some(v)
    })
    .unwrap_or_else(|| panic!("{}", status(&local, "metadata-pull")));
    assert!(
        st["info"]["next_run"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z"),
        "{st}"
    );
    assert!(
        !st.to_string().contains("s3cret-token"),
        "headers redacted in status: {st}"
    );
    let jobs = areq(&local, "GET", "/_scheduler/jobs", None).1;
    let history: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|j| j["history"].as_array().unwrap().iter())
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        history.iter().filter(|t| **t == "crashed").count(),
        3,
        "{history:?}"
    );
    assert_eq!(get_doc(&local, "metadata", "de-1").0, 404);

    // The central server is back; the next run (forced here by editing the document with
    // an old last run, as a missed run at start-up would be) succeeds and says so.
    let c = Server::start_at(
        tempfile::tempdir().unwrap(),
        &central_addr,
        &["--admin", common::ADMIN],
    );
    areq(&c, "PUT", "/metadata", None);
    areq(&c, "PUT", "/datavalues", None);
    put_doc(
        &c,
        "metadata",
        json!({"_id": "de-1", "type": "dataElement", "name": "Malaria cases"}),
    );
    // The failed run is also written back to the document (a new revision, written apart from
    // the notifications): wait for it, or the edit below could carry the revision it replaces.
    let doc = wait_for(30, || {
        let (_, doc) = get_doc(&local, "_replicator", "metadata-pull");
        (doc["_replication_stats"]["run_state"] == "failed").then_some(doc)
    })
    .expect("the failed run is written back to its document");
    assert_ne!(doc["_rev"].as_str(), Some(rev.as_str()));
    pull(
        json!({"note": "central metadata, daily", "edited": true}),
        doc["_rev"].as_str(),
    );
    let done = next_notification(&notes, "completed");
    let mail = next_mail(&mails, "completed");
    assert!(
        mail.contains("Subject: settee: replication metadata-pull completed"),
        "{mail}"
    );
    assert_eq!(done["stats"]["docs_written"], 1, "{done}");
    assert_eq!(
        get_doc(&local, "metadata", "de-1").1["name"],
        "Malaria cases"
    );
    let st = wait_for(10, || {
        let v = status(&local, "metadata-pull");
        (v["state"] == "scheduled" && v["info"]["last_run"]["state"] == "completed").then_some(v)
    });
    assert!(st.is_some(), "{}", status(&local, "metadata-pull"));
    let (_, stored) = get_doc(&local, "_replicator", "metadata-pull");
    assert_eq!(
        stored["_replication_state"], "scheduled",
        "never a final state: {stored}"
    );

    // Local data goes the other way on its own schedule, and does not run on creation.
    put_doc(
        &local,
        "_replicator",
        json!({"_id": "data-push", "source": "datavalues", "target": central("datavalues"),
            "schedule": "0 2 * * *", "selector": {"ou": "field-a"}}),
    );
    // A sentinel replication written after it completes; the scheduled one has not run.
    let (st, v) = areq(
        &local,
        "POST",
        "/_replicate",
        Some(
            &json!({"source": "datavalues", "target": central("sentinel"), "create_target": true}),
        ),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(get_doc(&c, "sentinel", "dv-1").0, 200);
    assert_eq!(
        get_doc(&c, "datavalues", "dv-1").0,
        404,
        "a schedule does not run on creation"
    );
    let st = status(&local, "data-push");
    assert_eq!(st["state"], "scheduled", "{st}");
    assert!(
        st["info"]["next_run"]
            .as_str()
            .unwrap()
            .contains("T02:00:00"),
        "{st}"
    );
}

#[test]
fn directus_a_remote_that_rejects_writes_notifies_and_then_recovers() {
    let one = common::start_admin();
    let two = common::start_admin();
    let (hook, notes) = webhook();
    // A second webhook that is down: its failure shows, and the first one is not held up.
    let dead_hook = format!("http://{}/down", free_addr());
    areq(&one, "PUT", "/directus", None);
    areq(&two, "PUT", "/directus", None);
    // The sync user may not write into instance two's database yet.
    common::add_user(&two, "sync", "pw");
    common::set_members(&two, "directus", &["someone-else"]);
    put_doc(
        &one,
        "directus",
        json!({"_id": "a1", "collection": "articles", "title": "T"}),
    );
    areq(&one, "PUT", "/_replicator", None);
    put_doc(
        &one,
        "_replicator",
        json!({"_id": "to-two", "source": "directus", "target": format!("http://sync:pw@{}/directus", two.addr),
            "continuous": true, "selector": {"collection": "articles"}, "retries_per_request": 0,
            "notify": [{"url": hook, "on": ["crashing", "recovered", "failed"]},
                       {"url": dead_hook, "on": ["crashing"]}]}),
    );
    let crashing = next_notification(&notes, "crashing");
    assert_eq!(crashing["doc_id"], "to-two");
    assert!(!crashing.to_string().contains("sync:pw"), "{crashing}");
    // Permission granted: the job comes back and says so, once.
    common::set_members(&two, "directus", &["sync"]);
    let recovered = next_notification(&notes, "recovered");
    assert_eq!(recovered["doc_id"], "to-two");
    assert!(wait_for(30, || (get_doc(&two, "directus", "a1").0 == 200)
        .then_some(()))
    .is_some());
    let delivered = wait_for(10, || {
        let v = status(&one, "to-two");
        v["info"]["notifications"]
            .as_array()
            .and_then(|n| n.iter().find(|x| x["transition"] == "recovered").cloned())
    });
    assert_eq!(delivered.expect("the delivery is shown")["ok"], true);
    let undelivered = wait_for(20, || {
        let v = status(&one, "to-two");
        v["info"]["notifications"].as_array().and_then(|n| {
            n.iter()
                .find(|x| x["url"].as_str().is_some_and(|u| u.ends_with("/down")))
                .cloned()
        })
    })
    .expect("the failed delivery is shown");
    assert_eq!(undelivered["ok"], false, "{undelivered}");
    assert_eq!(undelivered["attempts"], 3, "{undelivered}");
}

#[test]
fn after_runs_a_document_when_another_completes_and_refuses_cycles() {
    let s = common::start_admin();
    areq(&s, "PUT", "/_replicator", None);
    for db in ["data", "metadata"] {
        areq(&s, "PUT", &format!("/{db}"), None);
        put_doc(&s, db, json!({"_id": format!("{db}-1")}));
    }
    // DHIS2: data is pushed first, then metadata pulled.
    put_doc(
        &s,
        "_replicator",
        json!({"_id": "pull-metadata", "source": "metadata", "target": "metadata-copy",
            "create_target": true, "after": "push-data"}),
    );
    // The scheduler follows `_replicator` asynchronously: wait until it knows the document.
    let st = wait_for(30, || {
        let v = status(&s, "pull-metadata");
        (!v["state"].is_null()).then_some(v)
    })
    .expect("the scheduler sees the document");
    assert_eq!(st["state"], "scheduled", "{st}");
    assert_eq!(st["info"]["after"], "push-data");
    put_doc(
        &s,
        "_replicator",
        json!({"_id": "push-data", "source": "data", "target": "data-copy", "create_target": true}),
    );
    assert!(
        wait_for(30, || (get_doc(&s, "metadata-copy", "metadata-1").0 == 200)
            .then_some(()))
        .is_some()
    );
    let st = wait_for(10, || {
        let v = status(&s, "pull-metadata");
        (v["info"]["last_run"]["state"] == "completed").then_some(v)
    });
    assert!(
        st.is_some_and(|v| v["state"] == "scheduled"),
        "{}",
        status(&s, "pull-metadata")
    );
    // A chain that comes back to itself never starts: refused.
    put_doc(
        &s,
        "_replicator",
        json!({"_id": "c1", "source": "data", "target": "x", "after": "c2"}),
    );
    let (st, v) = areq(
        &s,
        "PUT",
        "/_replicator/c2",
        Some(&json!({"source": "data", "target": "y", "after": "c1"})),
    );
    assert_eq!(st, 403, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("leads back"), "{v}");
}

#[test]
fn on_write_failure_skip_counts_and_stop_ends_the_run_naming_the_document() {
    let a = common::start_admin();
    let b = common::start_admin();
    areq(&a, "PUT", "/src", None);
    areq(&b, "PUT", "/dst", None);
    areq(&b, "PUT", "/dst2", None);
    // A member may write documents but not design documents.
    common::add_user(&b, "w", "pw");
    for db in ["dst", "dst2"] {
        common::set_members(&b, db, &["w"]);
    }
    put_doc(&a, "src", json!({"_id": "_design/app", "views": {}}));
    for i in 0..5 {
        put_doc(&a, "src", json!({"_id": format!("d{i}")}));
    }
    let target = |db: &str| format!("http://w:pw@{}/{db}", b.addr);
    // Best effort (CouchDB's): the design document is counted, the rest written.
    let (st, v) = areq(
        &a,
        "POST",
        "/_replicate",
        Some(&json!({"source": "src", "target": target("dst")})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["history"][0]["doc_write_failures"], 1, "{v}");
    assert_eq!(v["history"][0]["docs_written"], 5, "{v}");
    // Stop: the run ends at the refusal, naming the document, and fails.
    areq(&a, "PUT", "/_replicator", None);
    put_doc(
        &a,
        "_replicator",
        json!({"_id": "strict", "source": "src", "target": target("dst2"), "on_write_failure": "stop"}),
    );
    let failed = wait_for(30, || {
        let v = status(&a, "strict");
        (v["state"] == "failed").then_some(v)
    })
    .unwrap_or_else(|| panic!("{}", status(&a, "strict")));
    let reason = failed["info"]["error"].as_str().unwrap();
    assert!(
        reason.contains("_design/app") && reason.contains("stop"),
        "{reason}"
    );
    assert!(!reason.contains("w:pw"), "{reason}");
}

#[test]
fn a_job_resumes_when_its_peer_answers_not_when_its_backoff_ends() {
    let a = common::start_admin();
    let b_addr = free_addr();
    areq(&a, "PUT", "/src", None);
    put_doc(&a, "src", json!({"_id": "waiting"}));
    areq(&a, "PUT", "/_replicator", None);
    // Ten minutes between attempts: only the probe of the peer can bring it back sooner.
    put_doc(
        &a,
        "_replicator",
        json!({"_id": "out", "source": "src", "target": format!("http://{}@{b_addr}/dst", common::ADMIN),
            "create_target": true, "continuous": true, "retries_per_request": 0,
            "retry": {"count": 100, "interval": "10m"}}),
    );
    let crashing = wait_for(30, || {
        let v = status(&a, "out");
        (v["state"] == "crashing").then_some(v)
    });
    assert!(crashing.is_some(), "{}", status(&a, "out"));
    let b = Server::start_at(
        tempfile::tempdir().unwrap(),
        &b_addr,
        &["--admin", common::ADMIN],
    );
    assert!(
        wait_for(30, || (get_doc(&b, "dst", "waiting").0 == 200)
            .then_some(()))
        .is_some(),
        "the job did not come back when its peer did: {}",
        status(&a, "out")
    );
}

#[test]
fn dhis2_central_metadata_out_to_two_field_servers_and_their_data_back_on_schedules() {
    let central = common::start_admin();
    let fields = [common::start_admin(), common::start_admin()];
    let url = |s: &Server, db: &str| format!("http://{}@{}/{db}", common::ADMIN, s.addr);
    // Due now: a last run long ago, as after a weekend with the servers down.
    let due = json!({"_replication_state": "scheduled", "_replication_state_time": "2020-01-01T00:00:00Z"});
    let scheduled = |id: &str, source: String, target: String, schedule: &str| {
        let mut d = json!({"_id": id, "source": source, "target": target, "create_target": true,
            "schedule": schedule, "retry": {"count": 3, "interval": "1s"}});
        for (k, v) in due.as_object().unwrap() {
            d[k] = v.clone();
        }
        d
    };
    areq(&central, "PUT", "/metadata", None);
    areq(&central, "PUT", "/datavalues", None);
    areq(&central, "PUT", "/_replicator", None);
    put_doc(
        &central,
        "metadata",
        json!({"_id": "de-malaria", "type": "dataElement"}),
    );
    put_doc(
        &central,
        "metadata",
        json!({"_id": "ou-root", "type": "organisationUnit"}),
    );
    for (i, f) in fields.iter().enumerate() {
        areq(f, "PUT", "/datavalues", None);
        areq(f, "PUT", "/_replicator", None);
        put_doc(
            f,
            "datavalues",
            json!({"_id": format!("dv-field-{i}"), "value": i}),
        );
        // The central server pushes its metadata to each field server, daily...
        put_doc(
            &central,
            "_replicator",
            scheduled(
                &format!("metadata-to-field-{i}"),
                "metadata".into(),
                url(f, "metadata"),
                "@daily",
            ),
        );
        // ...and each field server pushes its data values to the centre, nightly at two.
        put_doc(
            f,
            "_replicator",
            scheduled(
                "data-to-central",
                "datavalues".into(),
                url(&central, "datavalues"),
                "0 2 * * *",
            ),
        );
    }
    for (i, f) in fields.iter().enumerate() {
        for id in ["de-malaria", "ou-root"] {
            assert!(wait_for(30, || (get_doc(f, "metadata", id).0 == 200).then_some(())).is_some());
        }
        let dv = format!("dv-field-{i}");
        assert!(
            wait_for(30, || (get_doc(&central, "datavalues", &dv).0 == 200)
                .then_some(()))
            .is_some()
        );
        let st = wait_for(10, || {
            let v = status(f, "data-to-central");
            (v["info"]["last_run"]["state"] == "completed").then_some(v)
        })
        .unwrap_or_else(|| panic!("{}", status(f, "data-to-central")));
        assert_eq!(st["state"], "scheduled");
        assert!(
            st["info"]["next_run"]
                .as_str()
                .unwrap()
                .contains("T02:00:00"),
            "{st}"
        );
        // The run ends (final checkpoint, state recorded) a moment after its documents land.
        let doc = format!("metadata-to-field-{i}");
        let st = wait_for(10, || {
            let v = status(&central, &doc);
            (v["state"] == "scheduled").then_some(v)
        });
        assert!(st.is_some(), "{}", status(&central, &doc));
    }
}
