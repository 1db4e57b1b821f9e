//! Checkpoint documents (`_local/<replication id>` on both ends) in CouchDB's format, and
//! where a replication resumes from them.

use serde_json::{json, Map, Value};

use super::stats::Counts;

/// Newest first, as CouchDB; capped like CouchDB's.
pub const MAX_HISTORY: usize = 50;

/// The sequence to start from, given both checkpoint docs (CouchDB's `compare_replication_logs`):
/// the same session on both ends → the source's `source_last_seq`; otherwise the newest
/// session present in both histories → its `recorded_seq`; otherwise from the beginning.
pub fn start_seq(source: Option<&Value>, target: Option<&Value>) -> Option<Value> {
    let (s, t) = (source?, target?);
    let sid = s.get("session_id")?;
    if Some(sid) == t.get("session_id") {
        return s.get("source_last_seq").cloned();
    }
    let th: Vec<&Value> = history(t)
        .iter()
        .filter_map(|h| h.get("session_id"))
        .collect();
    history(s)
        .iter()
        .find(|h| h.get("session_id").is_some_and(|id| th.contains(&id)))
        .and_then(|h| h.get("recorded_seq").cloned())
}

fn history(doc: &Value) -> &[Value] {
    doc.get("history")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// What one session has done so far.
pub struct Session<'a> {
    pub session_id: &'a str,
    pub start_time: &'a str,
    pub start_seq: &'a Value,
    pub recorded_seq: &'a Value,
    pub counts: Counts,
}

/// The checkpoint body to write (same on both ends), keeping up to [`MAX_HISTORY`] earlier
/// entries from the previous checkpoint of this end.
pub fn body(prev: Option<&Value>, s: &Session<'_>, doc_ids: bool) -> Value {
    let now = rfc1123_now();
    let c = &s.counts;
    let entry = json!({
        "session_id": s.session_id,
        "start_time": s.start_time,
        "end_time": now,
        "start_last_seq": s.start_seq,
        "end_last_seq": s.recorded_seq,
        "recorded_seq": s.recorded_seq,
        "missing_checked": c.revisions_checked,
        "missing_found": c.missing_revisions_found,
        "docs_read": c.docs_read,
        "docs_written": c.docs_written,
        "doc_write_failures": c.doc_write_failures,
        "bulk_get_docs": c.bulk_get_docs,
        "bulk_get_attempts": c.bulk_get_attempts,
    });
    let mut hist = vec![entry];
    hist.extend(
        prev.map(history)
            .unwrap_or(&[])
            .iter()
            .filter(|h| h.get("session_id").and_then(Value::as_str) != Some(s.session_id))
            .take(MAX_HISTORY - 1)
            .cloned(),
    );
    let mut m = Map::new();
    m.insert("session_id".into(), json!(s.session_id));
    m.insert("source_last_seq".into(), s.recorded_seq.clone());
    m.insert("replication_id_version".into(), json!(super::id::VERSION));
    if doc_ids {
        // CouchDB 1.0 compatibility fields for doc_ids replications.
        m.insert("start_time".into(), json!(s.start_time));
        m.insert("end_time".into(), json!(now));
        m.insert("docs_read".into(), json!(c.docs_read));
        m.insert("docs_written".into(), json!(c.docs_written));
        m.insert("doc_write_failures".into(), json!(c.doc_write_failures));
    }
    m.insert("history".into(), Value::Array(hist));
    Value::Object(m)
}

/// `Sun, 11 Aug 2013 20:38:50 GMT`.
pub fn rfc1123_now() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_points() {
        let a = json!({"session_id": "s2", "source_last_seq": "9", "history": [{"session_id": "s2", "recorded_seq": "9"}, {"session_id": "s1", "recorded_seq": "5"}]});
        let b_same = json!({"session_id": "s2", "history": []});
        let b_old =
            json!({"session_id": "s1", "history": [{"session_id": "s1", "recorded_seq": "5"}]});
        let b_none =
            json!({"session_id": "zz", "history": [{"session_id": "zz", "recorded_seq": "7"}]});
        assert_eq!(start_seq(Some(&a), Some(&b_same)), Some(json!("9")));
        assert_eq!(start_seq(Some(&a), Some(&b_old)), Some(json!("5")));
        assert_eq!(start_seq(Some(&a), Some(&b_none)), None);
        assert_eq!(start_seq(None, Some(&b_none)), None);
    }

    #[test]
    fn history_is_newest_first_and_capped() {
        let mut prev: Option<Value> = None;
        for i in 0..60 {
            let sid = format!("s{i}");
            let seq = json!(i);
            let s = Session {
                session_id: &sid,
                start_time: "t",
                start_seq: &seq,
                recorded_seq: &seq,
                counts: Counts::default(),
            };
            prev = Some(body(prev.as_ref(), &s, false));
        }
        let p = prev.unwrap();
        let h = p["history"].as_array().unwrap();
        assert_eq!(h.len(), MAX_HISTORY);
        assert_eq!(h[0]["session_id"], "s59");
        assert_eq!(p["source_last_seq"], 59);
    }
}
