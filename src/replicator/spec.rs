//! A replication definition: the fields of a `_replicator` document or a `POST /_replicate`
//! body, parsed and validated once. The scheduler, `/_replicate`, `settee replicate` and
//! `settee doc check` all go through [`Spec::parse`], so a document is judged the same way
//! everywhere. Unlike CouchDB, a member no replication reads is refused (with the option it
//! probably meant): a misspelt `selectr` silently replicating a whole database is worse than
//! an error. The user's own notes go under `meta`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::project::Fields;
use super::unmatched::Unmatched;
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
    /// Field whitelist: only these members cross, as mapped revisions (settee's own).
    pub fields: Option<Arc<Fields>>,
    /// What happens on the target to documents that stop matching (settee's own).
    pub unmatched: Unmatched,
    /// `"resolve": "source-wins"`: after the push, the target's other live leaves of each
    /// document offered are deleted, so the source's revision is the only one (settee's own).
    pub source_wins: bool,
    /// `"on_write_failure": "stop"`: the run ends at the first document the target refuses
    /// (naming it) instead of counting it and going on, CouchDB's best effort (`"skip"`).
    pub stop_on_write_failure: bool,
    /// How HTTPS peers' certificates are checked (settee's own `"tls"`).
    pub tls: Tls,
}

/// `"tls"` in a replication: peers' certificates are verified against the public roots by
/// default (CouchDB's `verify_ssl_certificates` defaults to off; settee is safer); `"ca"`
/// (PEM, one or more certificates) is trusted as well, for a private CA or a self-signed
/// peer; `"verify": false` checks nothing, for test peers only.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tls {
    pub ca_pem: Option<String>,
    pub verify: bool,
}

impl Default for Tls {
    fn default() -> Tls {
        Tls {
            ca_pem: None,
            verify: true,
        }
    }
}

impl Tls {
    fn parse(v: Option<&Value>) -> Result<Tls, SpecError> {
        let o = match v {
            None | Some(Value::Null) => return Ok(Tls::default()),
            Some(Value::Object(o)) => o,
            Some(v) => {
                return Err(err(format!(
                    "`tls` must be an object such as {{\"ca\": \"-----BEGIN CERTIFICATE-----…\"}} or {{\"verify\": false}}, not {v}"
                )))
            }
        };
        if let Some(k) = o.keys().find(|k| !["ca", "verify"].contains(&k.as_str())) {
            return Err(err(format!(
                "`tls` takes \"ca\" (PEM certificates to trust) and \"verify\" (true or false), not {k:?}"
            )));
        }
        let verify = match o.get("verify") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(err(format!("`tls.verify` must be true or false, not {v}"))),
        };
        let ca_pem = match o.get("ca") {
            None | Some(Value::Null) => None,
            Some(Value::String(pem)) => {
                use rustls::pki_types::{pem::PemObject, CertificateDer};
                let n = CertificateDer::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| err(format!("`tls.ca` is not PEM certificates: {e}")))?
                    .len();
                if n == 0 {
                    return Err(err(
                        "`tls.ca` holds no certificate: give the PEM text, -----BEGIN CERTIFICATE----- included",
                    ));
                }
                Some(pem.clone())
            }
            Some(v) => return Err(err(format!("`tls.ca` must be PEM text, not {v}"))),
        };
        Ok(Tls { ca_pem, verify })
    }
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

/// Members CouchDB 3.5 reads or tolerates in a `_replicator` document or a `/_replicate` body
/// (`couch_replicator_parse`, `couch_replicator_docs`), besides the `_replication_*` state
/// fields the scheduler writes.
const COUCHDB_KEYS: &[&str] = &[
    "_id",
    "_rev",
    "_deleted",
    "_revisions",
    "_conflicts",
    "_local_id",
    "id",
    "replication_id",
    "cancel",
    "owner",
    "user_ctx",
    "source",
    "target",
    "continuous",
    "create_target",
    "create_target_params",
    "winning_revs_only",
    "filter",
    "query_params",
    "doc_ids",
    "selector",
    "since_seq",
    "use_checkpoints",
    "checkpoint_interval",
    "worker_processes",
    "worker_batch_size",
    "http_connections",
    "connection_timeout",
    "retries_per_request",
    "socket_options",
    "ibrowse_options",
    "use_bulk_get",
    "proxy",
    "source_proxy",
    "target_proxy",
];

/// settee's own options. `meta` holds whatever the user wants to note; `settee_share` is
/// written by `/_sharing`. `schedule`, `timezone`, `retry` and `notify` are the scheduler's
/// (checked by `scheduler::docs::validate`; a `/_replicate` call refuses them).
pub const SETTEE_KEYS: &[&str] = &[
    "fields",
    "unmatched",
    "resolve",
    "on_write_failure",
    "tls",
    "meta",
    "settee_share",
    "schedule",
    "timezone",
    "after",
    "retry",
    "notify",
];

/// The options only a `_replicator` document can use.
pub const DOCUMENT_ONLY_KEYS: &[&str] = &["schedule", "timezone", "after", "retry", "notify"];

/// The known member closest to a misspelt one, if it is close enough to be a typo.
fn near_miss(k: &str) -> Option<&'static str> {
    COUCHDB_KEYS
        .iter()
        .chain(SETTEE_KEYS)
        .copied()
        .filter(|known| !known.starts_with('_'))
        .map(|known| (strsim::damerau_levenshtein(k, known), known))
        .filter(|(d, known)| *d <= 2.max(known.len() / 4) && *d < known.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

/// A plain sentence for each member no replication reads.
fn unknown_members(o: &Map<String, Value>) -> Vec<String> {
    o.keys()
        .filter(|k| {
            !k.starts_with("_replication_")
                && !COUCHDB_KEYS.contains(&k.as_str())
                && !SETTEE_KEYS.contains(&k.as_str())
        })
        .map(|k| match near_miss(k) {
            Some(m) => format!("`{k}` is not a replication option: did you mean `{m}`?"),
            None => {
                format!("`{k}` is not a replication option; put notes of your own under `meta`")
            }
        })
        .collect()
}

/// Collects problems instead of stopping at the first.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn take<T>(&mut self, r: Result<T, SpecError>) -> Option<T> {
        r.map_err(|e| self.0.push(e.0)).ok()
    }
}

impl Spec {
    /// Parses and validates a definition. Every problem is reported in plain words naming the
    /// field and what to write instead, all of them at once.
    pub fn parse(v: &Value) -> Result<Spec, SpecError> {
        Spec::check(v).map_err(|p| SpecError(p.join("; ")))
    }

    /// settee's own options in force, for status output (`None` when none is given).
    pub fn settee_options(&self) -> Option<Value> {
        let mut o = Map::new();
        if let Some(f) = &self.fields {
            o.insert("fields".into(), f.canonical().clone());
        }
        if self.unmatched != Unmatched::Keep {
            o.insert("unmatched".into(), Value::from(self.unmatched.as_str()));
        }
        if self.source_wins {
            o.insert("resolve".into(), Value::from("source-wins"));
        }
        if self.stop_on_write_failure {
            o.insert("on_write_failure".into(), Value::from("stop"));
        }
        if self.tls != Tls::default() {
            let mut t = Map::new();
            if self.tls.ca_pem.is_some() {
                t.insert("ca".into(), Value::from("(PEM)"));
            }
            if !self.tls.verify {
                t.insert("verify".into(), Value::from(false));
            }
            o.insert("tls".into(), Value::Object(t));
        }
        (!o.is_empty()).then_some(Value::Object(o))
    }

    /// Every problem of a definition, one sentence each (`settee doc check`).
    pub fn problems(v: &Value) -> Vec<String> {
        Spec::check(v).err().unwrap_or_default()
    }

    fn check(v: &Value) -> Result<Spec, Vec<String>> {
        let o = v
            .as_object()
            .ok_or_else(|| vec!["a replication must be a JSON object".to_owned()])?;
        let mut p = Problems(unknown_members(o));
        let source = p.take(Endpoint::parse(
            o.get("source").unwrap_or(&Value::Null),
            "source",
        ));
        let target = p.take(Endpoint::parse(
            o.get("target").unwrap_or(&Value::Null),
            "target",
        ));
        if let (Some(s), Some(t)) = (&source, &target) {
            if s == t {
                p.0.push("`source` and `target` are the same database".into());
            }
        }
        let present = |k: &str| o.get(k).is_some_and(|v| !v.is_null());
        let filter = p.take(parse_filter(o));
        let create_target_params = p.take(match o.get("create_target_params") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m.clone())),
            Some(_) => Err(err("`create_target_params` must be an object")),
        });
        if let Some(q) = o.get("query_params") {
            if !q.is_object() && !q.is_null() {
                p.0.push("`query_params` must be an object".into());
            }
        }
        for k in ["source_proxy", "target_proxy", "proxy"] {
            if present(k) {
                p.0.push(format!("`{k}` is not supported by settee yet"));
            }
        }
        let fields = p.take(match o.get("fields") {
            None | Some(Value::Null) => Ok(None),
            Some(f) => Fields::parse(f).map(Some).map_err(SpecError),
        });
        let unmatched = p.take(match o.get("unmatched") {
            None | Some(Value::Null) => Ok(Unmatched::Keep),
            Some(u) => Unmatched::parse(u).map_err(SpecError),
        });
        if let (Some(flt), Some(u), Some(f)) = (&filter, unmatched, &fields) {
            let rules = f.as_ref().is_some_and(Fields::per_kind);
            if u != Unmatched::Keep && !matches!(flt, Filter::Selector(_)) && !rules {
                p.0.push(format!(
                    "`unmatched: \"{}\"` needs a `selector` (or `fields` rules with selectors): without one no document can stop matching",
                    u.as_str()
                ));
            }
        }
        let source_wins = p.take(match o.get("resolve") {
            None | Some(Value::Null) => Ok(false),
            Some(Value::String(r)) if r == "source-wins" => Ok(true),
            Some(v) => Err(err(format!(
                "`resolve` can only be \"source-wins\" (the target's conflicting versions are deleted after the push), not {v}"
            ))),
        });
        let stop_on_write_failure = p.take(match o.get("on_write_failure") {
            None | Some(Value::Null) => Ok(false),
            Some(Value::String(m)) if m == "skip" => Ok(false),
            Some(Value::String(m)) if m == "stop" => Ok(true),
            Some(v) => Err(err(format!(
                "`on_write_failure` must be \"skip\" (count the refused document and go on, as CouchDB) or \"stop\" (end the run at the first refusal), not {v}"
            ))),
        });
        let tls = p.take(Tls::parse(o.get("tls")));
        let continuous = p.take(boolean(o, "continuous", false));
        let create_target = p.take(boolean(o, "create_target", false));
        let use_checkpoints = p.take(boolean(o, "use_checkpoints", true));
        let checkpoint_interval = p.take(int(o, "checkpoint_interval", 30_000, 100));
        let worker_processes = p.take(int(o, "worker_processes", 4, 1));
        let worker_batch_size = p.take(int(o, "worker_batch_size", 500, 1));
        let http_connections = p.take(int(o, "http_connections", 20, 1));
        let connection_timeout = p.take(int(o, "connection_timeout", 30_000, 1000));
        let retries_per_request = p.take(int(o, "retries_per_request", 5, 0));
        let winning_revs_only = p.take(boolean(o, "winning_revs_only", false));
        let use_bulk_get = p.take(boolean(o, "use_bulk_get", true));
        if let Some(c) = o.get("cancel") {
            if !c.is_boolean() {
                p.0.push(format!("`cancel` must be true or false, not {c}"));
            }
        }
        match (
            source,
            target,
            filter,
            create_target_params,
            fields,
            (unmatched, source_wins, stop_on_write_failure, tls),
            (
                continuous,
                create_target,
                use_checkpoints,
                winning_revs_only,
                use_bulk_get,
            ),
            (
                checkpoint_interval,
                worker_processes,
                worker_batch_size,
                http_connections,
                connection_timeout,
                retries_per_request,
            ),
        ) {
            (
                Some(source),
                Some(target),
                Some(filter),
                Some(create_target_params),
                Some(fields),
                (Some(unmatched), Some(source_wins), Some(stop_on_write_failure), Some(tls)),
                (
                    Some(continuous),
                    Some(create_target),
                    Some(use_checkpoints),
                    Some(winning_revs_only),
                    Some(use_bulk_get),
                ),
                (
                    Some(checkpoint_interval),
                    Some(worker_processes),
                    Some(worker_batch_size),
                    Some(http_connections),
                    Some(connection_timeout),
                    Some(retries_per_request),
                ),
            ) if p.0.is_empty() => Ok(Spec {
                source,
                target,
                continuous,
                create_target,
                create_target_params,
                filter,
                since_seq: o.get("since_seq").filter(|v| !v.is_null()).cloned(),
                use_checkpoints,
                checkpoint_interval: Duration::from_millis(checkpoint_interval),
                worker_processes: worker_processes.min(64) as usize,
                worker_batch_size: worker_batch_size.min(10_000) as usize,
                http_connections: http_connections.min(1000) as usize,
                connection_timeout: Duration::from_millis(connection_timeout),
                retries_per_request: retries_per_request.min(100) as u32,
                winning_revs_only,
                use_bulk_get,
                fields: fields.map(Arc::new),
                unmatched,
                source_wins,
                stop_on_write_failure,
                tls,
            }),
            _ => Err(p.0),
        }
    }
}

fn parse_filter(o: &Map<String, Value>) -> Result<Filter, SpecError> {
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
    Ok(match given.first().copied() {
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
    })
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

    #[test]
    fn unknown_members_are_refused_with_what_was_meant() {
        let r = reason(json!({"source": "a", "target": "b", "selectr": {"type": "item"}}));
        assert!(
            r.contains("`selectr`") && r.contains("did you mean `selector`"),
            "{r}"
        );
        let r = reason(json!({"source": "a", "target": "b", "continous": true}));
        assert!(r.contains("did you mean `continuous`"), "{r}");
        let r = reason(json!({"source": "a", "target": "b", "colour": "red"}));
        assert!(
            r.contains("`colour`") && r.contains("`meta`") && !r.contains("did you mean"),
            "{r}"
        );
        // CouchDB's own members, state fields and the user's notes are fine.
        Spec::parse(
            &json!({"_id": "r", "_rev": "1-a", "source": "a", "target": "b",
            "owner": "bob", "user_ctx": {"name": "bob"}, "_replication_state": "triggered",
            "_replication_whatever": 1, "socket_options": "[{keepalive, true}]",
            "meta": {"note": "anything"}}),
        )
        .unwrap();
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let p = Spec::problems(&json!({"source": "a", "selectr": {}, "continuous": "yes",
            "fields": "title", "unmatched": "drop"}));
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p.iter().any(|x| x.contains("`target`")));
        assert!(p.iter().any(|x| x.contains("`selectr`")));
        assert!(p.iter().any(|x| x.contains("`continuous`")));
        assert!(p.iter().any(|x| x.contains("`fields`")));
        assert!(p.iter().any(|x| x.contains("`unmatched`")));
        assert!(Spec::problems(&json!({"source": "a", "target": "b"})).is_empty());
    }

    #[test]
    fn settee_options_parse_and_unmatched_needs_something_to_stop_matching() {
        let s = Spec::parse(
            &json!({"source": "a", "target": "b", "selector": {"public": true},
            "fields": ["title"], "unmatched": "delete"}),
        )
        .unwrap();
        assert!(s.fields.is_some());
        assert_eq!(s.unmatched, Unmatched::Delete);
        assert!(
            reason(json!({"source": "a", "target": "b", "unmatched": "purge"}))
                .contains("needs a `selector`")
        );
        assert!(reason(
            json!({"source": "a", "target": "b", "doc_ids": ["x"], "unmatched": "delete"})
        )
        .contains("needs a `selector`"));
        Spec::parse(&json!({"source": "a", "target": "b", "unmatched": "delete",
            "fields": [{"selector": {"t": "x"}, "fields": ["a"]}]}))
        .unwrap();
    }
}
