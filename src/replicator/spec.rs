//! A replication definition: the fields of a `_replicator` document or a `POST /_replicate`
//! body, parsed and validated once. The scheduler, `/_replicate`, `settee replicate` and
//! `settee doc check` all go through [`Spec::parse`], so a document is judged the same way
//! everywhere. Unknown fields are ignored, as CouchDB does (application data may sit there).

use std::time::Duration;

use serde_json::{Map, Value};

use super::Endpoint;
use crate::mango::Selector;

/// A plain-words reason a replication definition is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// What passes from source to target.
#[derive(Clone, Debug)]
pub enum Filter {
    All,
    /// Sorted, deduplicated.
    DocIds(Vec<String>),
    Selector(Selector),
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub source: Endpoint,
    pub target: Endpoint,
    pub continuous: bool,
    pub create_target: bool,
    pub create_target_params: Option<Map<String, Value>>,
    pub filter: Filter,
    pub since_seq: Option<Value>,
    pub use_checkpoints: bool,
    pub checkpoint_interval: Duration,
    pub worker_processes: usize,
    pub worker_batch_size: usize,
    pub http_connections: usize,
    pub connection_timeout: Duration,
    pub retries_per_request: u32,
    pub winning_revs_only: bool,
    pub use_bulk_get: bool,
}

fn err(msg: impl Into<String>) -> SpecError {
    SpecError(msg.into())
}

fn boolean(o: &Map<String, Value>, k: &str, default: bool) -> Result<bool, SpecError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(err(format!("`{k}` must be true or false, not {v}"))),
    }
}

/// A positive integer; CouchDB also accepts numeric strings here.
fn int(o: &Map<String, Value>, k: &str, default: u64, min: u64) -> Result<u64, SpecError> {
    let n = match o.get(k) {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if n >= min => Ok(n),
        _ => Err(err(format!(
            "`{k}` must be an integer of at least {min}, not {}",
            o.get(k).map(Value::to_string).unwrap_or_default()
        ))),
    }
}

impl Spec {
    /// Parses and validates a definition. Every problem is reported in plain words naming the
    /// field and what to write instead.
    pub fn parse(v: &Value) -> Result<Spec, SpecError> {
        let o = v
            .as_object()
            .ok_or_else(|| err("a replication must be a JSON object"))?;
        let source = Endpoint::parse(o.get("source").unwrap_or(&Value::Null), "source")?;
        let target = Endpoint::parse(o.get("target").unwrap_or(&Value::Null), "target")?;
        if source == target {
            return Err(err("`source` and `target` are the same database"));
        }
        let present = |k: &str| o.get(k).is_some_and(|v| !v.is_null());
        let given: Vec<&str> = ["doc_ids", "filter", "selector"]
            .into_iter()
            .filter(|k| present(k))
            .collect();
        if given.len() > 1 {
            return Err(err(format!(
                "`doc_ids`, `filter` and `selector` are mutually exclusive, but this has {}",
                given.join(" and ")
            )));
        }
        let filter = match given.first().copied() {
            None => Filter::All,
            Some("doc_ids") => {
                let ids = o["doc_ids"]
                    .as_array()
                    .ok_or_else(|| err("`doc_ids` must be an array of document id strings"))?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    let id = id
                        .as_str()
                        .ok_or_else(|| err(format!("`doc_ids` must hold strings only, not {id}")))?;
                    out.push(id.to_owned());
                }
                out.sort();
                out.dedup();
                Filter::DocIds(out)
            }
            Some("selector") => {
                let sel = &o["selector"];
                if !sel.is_object() {
                    return Err(err("`selector` must be a JSON object (a Mango selector)"));
                }
                Filter::Selector(
                    Selector::parse(sel).map_err(|e| err(format!("`selector` is invalid: {e}")))?,
                )
            }
            _ => {
                return Err(err(match o["filter"].as_str() {
                    Some(f) if !f.starts_with('_') => format!(
                        "`filter` {f:?} names a JavaScript filter function; settee runs no JavaScript: use `selector` (a Mango selector) or `doc_ids` instead"
                    ),
                    Some(f) => format!("`filter` {f:?} is not supported: use `selector` or `doc_ids` instead"),
                    None => "`filter` must be a string; settee supports `selector` and `doc_ids` instead".into(),
                }))
            }
        };
        let create_target_params = match o.get("create_target_params") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => return Err(err("`create_target_params` must be an object")),
        };
        if let Some(q) = o.get("query_params") {
            if !q.is_object() && !q.is_null() {
                return Err(err("`query_params` must be an object"));
            }
        }
        for k in ["source_proxy", "target_proxy", "proxy"] {
            if present(k) {
                return Err(err(format!("`{k}` is not supported by settee yet")));
            }
        }
        Ok(Spec {
            source,
            target,
            continuous: boolean(o, "continuous", false)?,
            create_target: boolean(o, "create_target", false)?,
            create_target_params,
            filter,
            since_seq: o.get("since_seq").filter(|v| !v.is_null()).cloned(),
            use_checkpoints: boolean(o, "use_checkpoints", true)?,
            checkpoint_interval: Duration::from_millis(int(o, "checkpoint_interval", 30_000, 100)?),
            worker_processes: int(o, "worker_processes", 4, 1)?.min(64) as usize,
            worker_batch_size: int(o, "worker_batch_size", 500, 1)?.min(10_000) as usize,
            http_connections: int(o, "http_connections", 20, 1)?.min(1000) as usize,
            connection_timeout: Duration::from_millis(int(o, "connection_timeout", 30_000, 1000)?),
            retries_per_request: int(o, "retries_per_request", 5, 0)?.min(100) as u32,
            winning_revs_only: boolean(o, "winning_revs_only", false)?,
            use_bulk_get: boolean(o, "use_bulk_get", true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reason(v: Value) -> String {
        Spec::parse(&v).unwrap_err().0
    }

    #[test]
    fn defaults_and_fields() {
        let s = Spec::parse(&json!({"source": "a", "target": "http://h/b", "continuous": true, "worker_processes": "2"})).unwrap();
        assert!(s.continuous);
        assert_eq!(s.worker_processes, 2);
        assert_eq!(s.worker_batch_size, 500);
        assert!(matches!(s.filter, Filter::All));
        let s = Spec::parse(&json!({"source": "a", "target": "b", "doc_ids": ["y", "x", "y"]}))
            .unwrap();
        let Filter::DocIds(ids) = s.filter else {
            panic!()
        };
        assert_eq!(ids, vec!["x", "y"]);
    }

    #[test]
    fn every_invalid_kind_names_its_field() {
        assert!(reason(json!({"target": "b"})).contains("`source`"));
        assert!(reason(json!({"source": "a"})).contains("`target`"));
        assert!(
            reason(json!({"source": "a", "target": "b", "selector": {}, "doc_ids": []}))
                .contains("mutually exclusive")
        );
        assert!(
            reason(json!({"source": "a", "target": "b", "selector": {"x": {"$bad": 1}}}))
                .contains("`selector`")
        );
        assert!(
            reason(json!({"source": "a", "target": "b", "filter": "ddoc/f"}))
                .contains("JavaScript")
        );
        assert!(
            reason(json!({"source": "a", "target": "b", "continuous": "yes"}))
                .contains("`continuous`")
        );
        assert!(reason(json!({"source": "http://", "target": "b"})).contains("invalid url"));
        assert!(
            reason(json!({"source": "a", "target": "b", "worker_batch_size": 0}))
                .contains("`worker_batch_size`")
        );
        assert!(reason(json!("x")).contains("object"));
    }
}
