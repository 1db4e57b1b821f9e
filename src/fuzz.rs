//! Fuzz targets: each takes arbitrary bytes and runs them through one of settee's parsers the
//! way a request or a peer's answer would reach it. A target returns normally for every input;
//! a panic, a hang or unbounded memory is a bug. `make fuzz` runs them under AFL++ (cargo-afl,
//! on the stable toolchain; the binaries in `fuzz/`), and `tests/fuzz_corpus.rs` replays the
//! corpus and every crash found (`fuzz/regressions/`) as part of `make test`.

use serde_json::Value;

use crate::mango::Selector;
use crate::store::{check_shape, DocUpdate, Rev};

/// One fuzz target: arbitrary bytes in, nothing out.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/` and the corpus folders name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("selector", selector),
    ("bulk_docs", bulk_docs),
    ("revs_diff", revs_diff),
    ("replication_doc", replication_doc),
    ("multipart", multipart),
    ("peer_answers", peer_answers),
];

fn json(data: &[u8]) -> Option<Value> {
    serde_json::from_slice(data).ok()
}

/// A selector (`_find`, `_changes?filter=_selector`, a replication's `selector`) parsed and,
/// when it parses, matched against a few documents and against itself.
pub fn selector(data: &[u8]) {
    let Some(v) = json(data) else { return };
    let Ok(sel) = Selector::parse(&v) else { return };
    let docs = [
        serde_json::json!({"_id": "a", "type": "item", "n": 3, "tags": ["x", "y"], "nested": {"k": [1, {"m": null}]}}),
        serde_json::json!({"_id": "b", "_deleted": true}),
        serde_json::json!({}),
        v.clone(),
    ];
    for d in &docs {
        let _ = sel.matches(d);
    }
    let _ = crate::mango::find::FindRequest::parse(&serde_json::json!({ "selector": v }));
}

/// A `_bulk_docs` body: each document parsed as an interactive and as a replicated write.
pub fn bulk_docs(data: &[u8]) {
    let Some(v) = json(data) else { return };
    let docs = v
        .get("docs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| vec![v]);
    for d in docs {
        for new_edits in [true, false] {
            let _ = check_shape(&d, new_edits);
            let _ = DocUpdate::from_json(d.clone(), new_edits.then(crate::ids::new_uuid));
        }
    }
}

/// A `_revs_diff` (or `_purge`) body: ids mapped to revision lists.
pub fn revs_diff(data: &[u8]) {
    let Some(Value::Object(m)) = json(data) else {
        return;
    };
    for (_, revs) in m {
        for r in revs.as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(s) = r.as_str() {
                if let Ok(rev) = Rev::parse(s) {
                    let _ = rev.to_string();
                }
            }
        }
    }
}

/// A replication document: the scheduler's whole check (options, selector, fields, schedule,
/// retry, notify, tls).
pub fn replication_doc(data: &[u8]) {
    let Some(v) = json(data) else { return };
    let _ = crate::scheduler::check::check(&v);
    let _ = crate::replicator::Spec::parse(&v);
}

/// A `multipart/related` upload: the first line is the `Content-Type`, the rest the body.
pub fn multipart(data: &[u8]) {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let ctype = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or(&[]);
    let boundary = crate::http::multipart::related_boundary(&ctype).unwrap_or_else(|| "b".into());
    if let Ok(doc) = crate::http::multipart::related_to_json(body, &boundary) {
        let _ = DocUpdate::from_json(Value::Object(doc), None);
    }
}

/// A peer's answer as the replicator reads it: a `_changes` page, `_bulk_get` results and
/// `open_revs` documents, each document then parsed as the replicated write it becomes.
pub fn peer_answers(data: &[u8]) {
    use crate::replicator::answers;
    let Some(v) = json(data) else { return };
    let _ = answers::changes_page(&v, &Value::Null);
    let mut docs = answers::bulk_get_docs(&v)
        .map(|(d, _)| d)
        .unwrap_or_default();
    docs.extend(answers::open_revs_docs(&v).0);
    for d in docs {
        let _ = check_shape(&d, false);
        let _ = DocUpdate::from_json(d, None);
    }
}
