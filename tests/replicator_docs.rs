//! Every example in `replicator-docs/` does what its README entry says: `settee doc check`
//! accepts it, and once its source and target are pointed at local databases (each distinct
//! URL becomes one database, so the two field offices still aggregate into one) and it is put
//! into `_replicator` with `settee doc apply`, the sample documents that should cross do and
//! the others do not. The sample data lives next to the examples in `samples.json`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{wait_for, Server};
use serde_json::{json, Value};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("replicator-docs")
}

fn settee(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_settee"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn endpoint_url(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other["url"].as_str().expect("endpoint url").to_owned(),
    }
}

/// The number in front of a sequence: another example may write into this source meanwhile,
/// so the job is through once it reaches at least what the source held when it was read.
fn seq_num(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::String(s) => s
            .split('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn examples() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".json") && name != "samples.json" {
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            out.push((name, doc));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_example_passes_doc_check() {
    let all = examples();
    assert!(all.len() >= 6, "expected an example per seed scenario");
    let readme = std::fs::read_to_string(examples_dir().join("README.md")).unwrap();
    for (name, doc) in &all {
        let path = examples_dir().join(name);
        let (ok, text) = settee(&["doc", "check", path.to_str().unwrap()]);
        assert!(ok, "{name}: {text}");
        assert!(text.contains("ok:"), "{name}: {text}");
        assert!(!text.contains("warning:"), "{name}: {text}");
        // Credentials in an example must not be echoed back by the check.
        for ep in ["source", "target"] {
            if let Some(pw) = doc[ep]["auth"]["basic"]["password"].as_str() {
                assert!(!text.contains(pw), "{name}: password printed: {text}");
            }
        }
        assert!(
            readme.contains(name.as_str()),
            "README has no entry for {name}"
        );
        assert!(doc.get("selector").is_some() || doc.get("doc_ids").is_some());
    }
}

#[test]
fn doc_check_explains_problems() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (json!({"target": "http://h/b"}), "source"),
        (
            json!({"source": "http://h/a", "target": "http://h/b", "filter": "d/f"}),
            "filter",
        ),
        (
            json!({"source": "http://h/a", "target": "http://h/b", "selector": {"a": {"$bogus": 1}}}),
            "$bogus",
        ),
        (
            json!({"source": "http://h/a", "target": "http://h/b", "continuous": "yes"}),
            "continuous",
        ),
        (
            json!({"_id": "x", "_rev": "1-abc", "source": "http://h/a", "target": "http://h/b", "selector": {}}),
            "_rev",
        ),
    ];
    for (i, (doc, word)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.json"));
        std::fs::write(&path, doc.to_string()).unwrap();
        let (ok, text) = settee(&["doc", "check", path.to_str().unwrap()]);
        assert!(!ok, "{doc} accepted: {text}");
        assert!(
            text.contains("error:") && text.contains(word),
            "{doc}: {text}"
        );
    }
    // Valid, but the classic trap gets a warning.
    let path = dir.path().join("trap.json");
    std::fs::write(
        &path,
        json!({"source": "http://h/a", "target": "http://h/b",
               "selector": {"type": {"$or": [{"type": "a"}, {"type": "b"}]}}})
        .to_string(),
    )
    .unwrap();
    let (ok, text) = settee(&["doc", "check", path.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("warning:"), "{text}");
    // So does `$ne`, which skips documents without the field.
    std::fs::write(
        &path,
        json!({"source": "http://h/a", "target": "http://h/b",
               "selector": {"$and": [{"draft": {"$ne": true}}]}})
        .to_string(),
    )
    .unwrap();
    let (ok, text) = settee(&["doc", "check", path.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains("warning:") && text.contains("$exists"),
        "{text}"
    );
    // Nothing reaches a server from a document with problems.
    let s = Server::start(&[]);
    let bad = dir.path().join("bad1.json");
    let (ok, _) = settee(&[
        "doc",
        "apply",
        bad.to_str().unwrap(),
        "--server",
        &format!("http://{}", s.addr),
    ]);
    assert!(!ok);
    let (_, r) = s.req("GET", "/_replicator/_all_docs", None);
    assert_eq!(r["rows"].as_array().map(Vec::len), Some(0), "{r}");
}

#[test]
fn every_example_moves_the_right_documents() {
    let samples: Value = serde_json::from_str(
        &std::fs::read_to_string(examples_dir().join("samples.json")).unwrap(),
    )
    .unwrap();
    let s = Server::start(&[]);
    let base = format!("http://{}", s.addr);
    let work = tempfile::tempdir().unwrap();
    // Each distinct URL in the examples becomes one local database.
    let mut dbs: BTreeMap<String, String> = BTreeMap::new();
    let mut local = |url: String| -> String {
        let n = dbs.len();
        dbs.entry(url).or_insert_with(|| format!("ex-{n}")).clone()
    };
    let mut applied = Vec::new();
    for (name, doc) in examples() {
        let sample = &samples[&name];
        assert!(sample.is_object(), "samples.json has no entry for {name}");
        let src = local(endpoint_url(&doc["source"]));
        let dst = local(endpoint_url(&doc["target"]));
        s.req("PUT", &format!("/{src}"), None);
        let (st, r) = s.req(
            "POST",
            &format!("/{src}/_bulk_docs"),
            Some(&json!({"docs": sample["source_docs"]})),
        );
        assert_eq!(st, 201, "{name}: {r}");
        let mut rewritten = doc.clone();
        rewritten["source"] = json!(format!("{base}/{src}"));
        rewritten["target"] = json!(format!("{base}/{dst}"));
        rewritten["create_target"] = json!(true);
        if sample["scheduled"] == true {
            // A scheduled example runs at its due time, not on creation; a last run long ago
            // makes it due now (a run missed while the server was down). Its webhook is
            // dropped: nothing here may call out of the machine.
            rewritten["_replication_state"] = json!("scheduled");
            rewritten["_replication_state_time"] = json!("2020-01-01T00:00:00Z");
            if let Some(o) = rewritten.as_object_mut() {
                o.remove("notify");
            }
        }
        let path = work.path().join(&name);
        std::fs::write(&path, rewritten.to_string()).unwrap();
        let (ok, text) = settee(&["doc", "apply", path.to_str().unwrap(), "--server", &base]);
        assert!(ok, "{name}: {text}");
        applied.push((name, doc["_id"].as_str().unwrap().to_owned(), src, dst));
    }
    for (name, id, src, dst) in &applied {
        let sample = &samples[name];
        let (_, info) = s.req("GET", &format!("/{src}"), None);
        let src_seq = info["update_seq"].clone();
        // The job has looked at every change of the source: what is absent now stays absent.
        let state = wait_for(60, || {
            let (_, d) = s.req("GET", &format!("/_scheduler/docs/_replicator/{id}"), None);
            let through = seq_num(&d["info"]["through_seq"]);
            (d["state"] == "completed" || through >= seq_num(&src_seq)).then_some(d)
        });
        assert!(
            state.is_some(),
            "{name}: job did not get through the source"
        );
        let exists = |doc: &str| s.req("GET", &format!("/{dst}/{doc}"), None).0 == 200;
        for want in sample["expect_present"].as_array().unwrap() {
            let want = want.as_str().unwrap();
            assert!(
                wait_for(20, || exists(want).then_some(())).is_some(),
                "{name}: {want} did not reach the target; job: {}",
                s.req("GET", &format!("/_scheduler/docs/_replicator/{id}"), None)
                    .1
            );
        }
        // Fields outside a field list stay on the source.
        if let Some(missing) = sample["expect_missing_fields"].as_array() {
            for want in sample["expect_present"].as_array().unwrap() {
                let want = want.as_str().unwrap();
                let (_, got) = s.req("GET", &format!("/{dst}/{want}"), None);
                for field in missing {
                    let field = field.as_str().unwrap();
                    assert!(
                        got.get(field).is_none(),
                        "{name}: {want} arrived with `{field}`: {got}"
                    );
                }
            }
        }
        for not in sample["expect_absent"].as_array().unwrap() {
            assert!(
                !exists(not.as_str().unwrap()),
                "{name}: {not} crossed but should not"
            );
        }
        // Every sample document is accounted for.
        let listed = sample["expect_present"].as_array().unwrap().len()
            + sample["expect_absent"].as_array().unwrap().len();
        assert_eq!(
            listed,
            sample["source_docs"].as_array().unwrap().len(),
            "{name}"
        );
    }
    // Continuous examples keep following: a later matching write crosses too.
    for (name, id, src, dst) in &applied {
        let doc = &examples().into_iter().find(|(n, _)| n == name).unwrap().1;
        if doc["continuous"] != true {
            continue;
        }
        let later = &samples[name]["later"];
        let later_id = later["_id"]
            .as_str()
            .expect("samples.json: `later` doc for a continuous example");
        let (st, _) = s.req("POST", &format!("/{src}"), Some(later));
        assert!(st == 201 || st == 202);
        assert!(
            wait_for(20, || (s.req("GET", &format!("/{dst}/{later_id}"), None).0
                == 200)
                .then_some(()))
            .is_some(),
            "{name} ({id}): a later matching write did not cross"
        );
    }
}

/// `POST /_replicator/_validate` (what the web page checks as you type) gives `doc check`'s
/// verdict: every example passes with a redacted summary, every bad one fails naming its
/// problem, and nothing is written.
#[test]
fn the_validate_endpoint_agrees_with_doc_check() {
    let s = common::start_admin();
    for (name, doc) in examples() {
        let (st, v) = common::areq(&s, "POST", "/_replicator/_validate", Some(&doc));
        assert_eq!((st, &v["ok"]), (200, &json!(true)), "{name}: {v}");
        assert!(v["errors"].as_array().unwrap().is_empty(), "{name}: {v}");
        let summary = v["summary"].as_str().unwrap();
        for ep in ["source", "target"] {
            if let Some(pw) = doc[ep]["auth"]["basic"]["password"].as_str() {
                assert!(!summary.contains(pw), "{name}: password in {summary}");
            }
        }
    }
    for (doc, word) in [
        (json!({"target": "http://h/b"}), "source"),
        (
            json!({"source": "http://h/a", "target": "http://h/b", "continous": true}),
            "continuous",
        ),
        (
            json!({"source": "http://h/a", "target": "http://h/b", "selector": {"a": {"$bogus": 1}}}),
            "$bogus",
        ),
    ] {
        let (st, v) = common::areq(&s, "POST", "/_replicator/_validate", Some(&doc));
        assert_eq!((st, &v["ok"]), (200, &json!(false)), "{doc}: {v}");
        assert!(v["errors"].to_string().contains(word), "{doc}: {v}");
        assert!(v["summary"].is_null(), "{v}");
    }
    let (st, v) = common::areq(&s, "GET", "/_replicator/_validate", None);
    assert_eq!(st, 405, "{v}");
    let (_, all) = common::areq(&s, "GET", "/_replicator/_all_docs", None);
    assert_eq!(all["total_rows"], 0, "validating wrote nothing: {all}");
}
