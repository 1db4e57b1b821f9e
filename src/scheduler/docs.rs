//! Replication documents: what in a `_replicator` document defines a job, validation at write
//! time, and the state fields the scheduler writes back (as CouchDB 3.x).

use serde_json::{Map, Value};

use crate::replicator::{Spec, SpecError};

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

/// Validates a replication document exactly as the scheduler will parse it.
pub fn validate(doc: &Value) -> Result<Spec, SpecError> {
    Spec::parse(doc)
}

/// The terminal state recorded in a document, if any (`completed` or `failed`): such documents
/// are left alone until their state fields are removed, as in CouchDB.
pub fn terminal_state(doc: &Value) -> Option<&str> {
    doc.get("_replication_state")
        .and_then(Value::as_str)
        .filter(|s| *s == "completed" || *s == "failed")
}
