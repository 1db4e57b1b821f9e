//! Replication documents: what in a `_replicator` document defines a job, validation at write
//! time, and the state fields the scheduler writes back (as CouchDB 3.x).

use serde_json::{Map, Value};

use super::options;
use crate::replicator::{Filter, Spec, SpecError};

/// The replicator database. Any database named so holds replication documents.
pub const REPLICATOR_DB: &str = "_replicator";

/// Fields the scheduler owns; a change to them alone is not an edit of the definition.
pub fn is_state_field(k: &str) -> bool {
    k.starts_with("_replication_") || k == "_rev" || k == "_revisions" || k == "owner"
}

/// The part of a document that defines the replication: everything but `_rev` and the state
/// fields, so the scheduler's own write-backs never restart a job.
pub fn definition(doc: &Value) -> Value {
    match doc {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !is_state_field(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<String, Value>>(),
        ),
        v => v.clone(),
    }
}

/// Whether a write to `_replicator` is judged at all: not deletions, design or `_local`
/// documents, nor documents already marked `failed` (as CouchDB's before-doc-update hook).
pub fn needs_validation(doc: &Value) -> bool {
    let id = doc.get("_id").and_then(Value::as_str).unwrap_or("");
    !(id.starts_with("_design/")
        || id.starts_with("_local/")
        || doc.get("_deleted") == Some(&Value::Bool(true))
        || doc.get("_replication_state").and_then(Value::as_str) == Some("failed"))
}

/// Validates a replication document exactly as the scheduler will parse it: the replication
/// and its scheduling options, every problem named.
pub fn validate(doc: &Value) -> Result<Spec, SpecError> {
    let p = problems(doc);
    if !p.is_empty() {
        return Err(SpecError(p.join("; ")));
    }
    Spec::parse(doc)
}

/// Every problem of a replication document (`settee doc check` lists them all).
pub fn problems(doc: &Value) -> Vec<String> {
    let mut p = Spec::problems(doc);
    if let Some(o) = doc.as_object() {
        let continuous = o.get("continuous") == Some(&Value::Bool(true));
        if let Err(more) = options::parse(o, continuous) {
            p.extend(more);
        }
    }
    p
}

/// The scheduling options of a valid document (none when it has none or is invalid).
pub fn options_of(doc: &Value) -> options::DocOptions {
    doc.as_object()
        .and_then(|o| {
            let continuous = o.get("continuous") == Some(&Value::Bool(true));
            options::parse(o, continuous).ok()
        })
        .unwrap_or_default()
}

/// Whether a replication document has a field list, read from its JSON without parsing it.
pub fn has_fields(doc: &Value) -> bool {
    doc.get("fields").is_some_and(|f| !f.is_null())
}

/// Whether two replications can never send the same document: their selectors require
/// different values of one field (Directus' collections, Uwazi's templates).
fn disjoint(a: &Spec, b: &Spec) -> bool {
    match (&a.filter, &b.filter) {
        (Filter::Selector(x), Filter::Selector(y)) => x.disjoint_from(y),
        (Filter::DocIds(x), Filter::DocIds(y)) => !x.iter().any(|i| y.binary_search(i).is_ok()),
        _ => false,
    }
}

/// The first of `others` (document id and its replication) that runs the other way between
/// the same two databases as `spec`, when either of them has a field list and their filters
/// may share documents: a projected copy
/// sent back would conflict with its own original, so such a pair is refused on this server.
/// Endpoints are compared as written (a local name and this server's own URL for the same
/// database are not recognised as one).
pub fn fields_loop<'a>(
    spec: &Spec,
    others: impl IntoIterator<Item = (&'a str, &'a Spec)>,
) -> Option<String> {
    others
        .into_iter()
        .find(|(_, o)| {
            (spec.fields.is_some() || o.fields.is_some())
                && o.source.same_database(&spec.target)
                && o.target.same_database(&spec.source)
                && !disjoint(spec, o)
        })
        .map(|(id, _)| {
            format!(
                "this replication and `{id}` run in opposite directions between the same databases with a `fields` list: projected copies would come back as conflicts with their originals. A field list works in one direction only; see the README (\"Field lists in both directions\")"
            )
        })
}

/// The terminal state recorded in a document, if any (`completed` or `failed`): such documents
/// are left alone until their state fields are removed, as in CouchDB.
pub fn terminal_state(doc: &Value) -> Option<&str> {
    doc.get("_replication_state")
        .and_then(Value::as_str)
        .filter(|s| *s == "completed" || *s == "failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> Spec {
        Spec::parse(&v).unwrap()
    }

    #[test]
    fn a_swapped_pair_with_a_field_list_is_a_loop() {
        let push = spec(json!({"source": "a", "target": "http://h/b", "fields": ["x"]}));
        let pull = spec(json!({"source": "http://u:p@h/b", "target": "a"}));
        let other = spec(json!({"source": "http://h/c", "target": "a"}));
        let plain_push = spec(json!({"source": "a", "target": "http://h/b"}));
        assert!(fields_loop(&pull, [("push", &push)])
            .unwrap()
            .contains("`push`"));
        assert!(fields_loop(&push, [("pull", &pull)]).is_some());
        assert!(fields_loop(&push, [("other", &other)]).is_none());
        assert!(
            fields_loop(&pull, [("plain", &plain_push)]).is_none(),
            "no fields: CouchDB's two-way sync"
        );
    }
}
