//! `/_node/{node}/_prometheus` and `/_node/{node}/_stats` over real HTTP: parsed with a
//! Prometheus text-format parser (and `promtool check metrics` where it is installed), each
//! replication labelled by its id, never by its credentials.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};

use common::{areq, put_doc, wait_for, Server};
use prometheus_parse::{Sample, Scrape, Value as PValue};
use serde_json::{json, Value};

fn scrape_text(s: &Server, path: &str) -> String {
    let (st, headers, body) = s.raw(
        "GET",
        path,
        &[("Authorization", &common::admin_basic())],
        None,
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let ct = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    assert_eq!(ct, Some("text/plain; version=0.0.4; charset=utf-8"));
    String::from_utf8(body).unwrap()
}

fn parse(text: &str) -> Vec<Sample> {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text format")
        .samples
}

/// The value of the sample `metric` whose labels include all of `labels`.
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            PValue::Counter(v) | PValue::Gauge(v) | PValue::Untyped(v) => *v,
            PValue::Histogram(b) => b.last().map_or(0.0, |c| c.count),
            PValue::Summary(_) => f64::NAN,
        })
}

/// What the parser forgives: every sample belongs to a metric introduced by a TYPE line
/// before it, metrics are not interleaved, and no series appears twice.
fn check_strictly(text: &str) {
    let mut typed: HashMap<&str, &str> = HashMap::new();
    let mut current = "";
    let mut finished = HashSet::new();
    let mut series = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(typed.insert(name, kind).is_none(), "{name} typed twice");
            if !current.is_empty() {
                finished.insert(current);
            }
            current = name;
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (head, value) = line.rsplit_once(' ').unwrap();
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line:?}"
        );
        let name = head.split('{').next().unwrap();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| typed.get(b) == Some(&"histogram"))
            })
            .unwrap_or(name);
        assert_eq!(base, current, "sample {line:?} outside its metric's block");
        assert!(!finished.contains(base));
        assert!(series.insert(head.to_owned()), "series twice: {head}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name}"
        );
    }
}

fn wait_state(s: &Server, id: &str, state: &str) {
    wait_for(60, || {
        let (_, v) = areq(
            s,
            "GET",
            &format!("/_scheduler/docs/_replicator/{id}"),
            None,
        );
        (v["state"] == state).then_some(())
    })
    .unwrap_or_else(|| panic!("{id} never reached {state}"));
}

#[test]
fn prometheus_names_each_replication_by_its_id_and_counts_requests() {
    let s = common::start_admin();
    areq(&s, "PUT", "/src", None);
    for i in 0..20 {
        put_doc(&s, "src", json!({"_id": format!("d{i}")}));
    }
    let dead = common::free_port();
    let secret = "s3cret-pw-4242";
    for (id, doc) in [
        (
            "done",
            json!({"source": "src", "target": "dst", "create_target": true}),
        ),
        (
            "live",
            json!({"source": "src", "target": "live_dst", "create_target": true, "continuous": true}),
        ),
        (
            "broken",
            json!({"source": "src", "target": format!("http://bob:{secret}@127.0.0.1:{dead}/x"), "continuous": true, "retries_per_request": 0}),
        ),
    ] {
        let (st, v) = areq(&s, "PUT", &format!("/_replicator/{id}"), Some(&doc));
        assert_eq!(st, 201, "{v}");
    }
    let (st, v) = areq(
        &s,
        "POST",
        "/_replicate",
        Some(
            &json!({"source": "src", "target": "tr_dst", "create_target": true, "continuous": true}),
        ),
    );
    assert_eq!(st, 202, "{v}");
    let job_id = v["_local_id"].as_str().unwrap().to_owned();
    wait_state(&s, "done", "completed");
    wait_state(&s, "broken", "crashing");
    // A sentinel: once it reached the live target, the live job has written all 21.
    put_doc(&s, "src", json!({"_id": "sentinel"}));
    wait_for(60, || {
        (common::get_doc(&s, "live_dst", "sentinel").0 == 200).then_some(())
    })
    .expect("the continuous job delivers");

    // An open continuous feed is counted while it is open.
    let mut feed = std::net::TcpStream::connect(&s.addr).unwrap();
    write!(
        feed,
        "GET /src/_changes?feed=continuous&heartbeat=1000&since=now HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
        common::admin_basic()
    )
    .unwrap();
    let mut first = [0u8; 12];
    feed.read_exact(&mut first).unwrap(); // the response head has started
    let open = |s: &Server| {
        value(
            &parse(&scrape_text(s, "/_node/_local/_prometheus")),
            "settee_http_open_feeds",
            &[],
        )
    };
    assert_eq!(open(&s), Some(1.0));

    // Each job counts on its own, and 'broken' alternates between crashing (its backoff) and
    // running (its retry): wait for one scrape that shows every job where the test expects it,
    // rather than assume what a first scrape catches.
    let samples = wait_for(30, || {
        let text = scrape_text(&s, "/_node/_local/_prometheus");
        let samples = parse(&text);
        let written =
            |k: &str, v: &str| value(&samples, "settee_replication_docs_written_total", &[(k, v)]);
        let age = value(
            &samples,
            "settee_replication_checkpoint_age_seconds",
            &[("doc_id", "live")],
        );
        let crashing = value(
            &samples,
            "settee_replication_state",
            &[("doc_id", "broken"), ("state", "crashing")],
        );
        (written("doc_id", "live") == Some(21.0)
            && written("job_id", &job_id) == Some(21.0)
            && age.is_some()
            && crashing == Some(1.0))
        .then(|| {
            check_strictly(&text);
            assert!(!text.contains(secret), "a password in the metrics");
            promtool_accepts(&text);
            samples
        })
    })
    .expect("a scrape shows both live jobs at 21 documents and broken crashing");
    let written =
        |k: &str, v: &str| value(&samples, "settee_replication_docs_written_total", &[(k, v)]);
    assert_eq!(written("doc_id", "done"), Some(20.0));
    assert_eq!(written("job_id", &job_id), Some(21.0));
    assert_eq!(
        value(
            &samples,
            "settee_replication_docs_read_total",
            &[("doc_id", "live")]
        ),
        Some(21.0)
    );
    // One state per replication is 1, the others 0.
    for (doc, state) in [
        ("done", "completed"),
        ("live", "running"),
        ("broken", "crashing"),
    ] {
        let on: Vec<&str> = samples
            .iter()
            .filter(|x| {
                x.metric == "settee_replication_state" && x.labels.get("doc_id") == Some(doc)
            })
            .filter(|x| matches!(x.value, PValue::Gauge(v) if v == 1.0))
            .map(|x| x.labels.get("state").unwrap())
            .collect();
        assert_eq!(on, vec![state], "{doc}");
    }
    assert!(
        value(
            &samples,
            "settee_replication_crashes_total",
            &[("doc_id", "broken")]
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        value(
            &samples,
            "settee_replication_crashes_total",
            &[("doc_id", "live")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "settee_replication_jobs",
            &[("state", "crashing")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "settee_replication_jobs", &[("state", "running")]),
        Some(2.0)
    );
    // Server-wide: the 21 document writes above, and their latencies.
    let created = value(
        &samples,
        "settee_http_requests_total",
        &[("family", "document"), ("code", "201")],
    );
    assert!(created.unwrap() >= 21.0, "{created:?}");
    let timed = value(
        &samples,
        "settee_http_request_duration_seconds",
        &[("family", "document")],
    );
    assert!(timed.unwrap() >= 21.0, "{timed:?}");
    assert!(value(&samples, "settee_store_size_bytes", &[]).unwrap() > 0.0);
    assert!(value(&samples, "settee_databases", &[]).unwrap() >= 5.0);

    drop(feed);
    wait_for(30, || (open(&s) == Some(0.0)).then_some(()))
        .expect("a closed feed is no longer counted");

    // The node by name, another node, and who may read.
    scrape_text(&s, "/_node/settee@127.0.0.1/_prometheus");
    let (st, v) = areq(&s, "GET", "/_node/couchdb@elsewhere/_prometheus", None);
    assert_eq!((st, v["error"].as_str()), (404, Some("not_found")), "{v}");
    let (st, _) = s.req("GET", "/_node/_local/_prometheus", None);
    assert_eq!(st, 401);
}

/// `promtool check metrics` where Prometheus' own tool is installed (`.ci/run` installs it).
fn promtool_accepts(text: &str) {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: checked with the Rust parser only");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn stats_have_couchdbs_shape() {
    let s = common::start_admin();
    areq(&s, "PUT", "/src", None);
    put_doc(&s, "src", json!({"_id": "a"}));
    let (st, v) = areq(
        &s,
        "PUT",
        "/_replicator/r",
        Some(&json!({"source": "src", "target": "dst", "create_target": true, "continuous": true})),
    );
    assert_eq!(st, 201, "{v}");
    wait_state(&s, "r", "running");
    let (st, stats) = areq(&s, "GET", "/_node/_local/_stats", None);
    assert_eq!(st, 200, "{stats}");
    let jobs = &stats["couch_replicator"]["jobs"];
    assert_eq!(
        jobs["running"],
        json!({"value": 1, "type": "gauge", "desc": "replicator scheduler running jobs"})
    );
    assert!(jobs["starts"]["value"].as_u64().unwrap() >= 1, "{jobs}");
    assert_eq!(jobs["starts"]["type"], "counter");
    let requests = stats["couchdb"]["httpd"]["requests"]["value"]
        .as_u64()
        .unwrap();
    assert!(requests >= 4, "{stats}");
    assert!(
        stats["couchdb"]["httpd_status_codes"]["201"]["value"]
            .as_u64()
            .unwrap()
            >= 2
    );
    let rt = &stats["couchdb"]["request_time"];
    assert_eq!(rt["type"], "histogram");
    assert!(rt["value"]["n"].as_u64().unwrap() >= 4);
    // A path inside the statistics, as CouchDB serves it.
    let (st, one) = areq(
        &s,
        "GET",
        "/_node/_local/_stats/couch_replicator/jobs/running",
        None,
    );
    assert_eq!((st, &one["value"]), (200, &json!(1)));
    let (st, _) = areq(&s, "GET", "/_node/_local/_stats/nothing", None);
    assert_eq!(st, 404);
    let (st, v): (u16, Value) = s.req("GET", "/_node/_local/_stats", None);
    assert_eq!(st, 401, "{v}");
}
