//! What `settee doc check` and `POST /_replicator/_validate` say of a replication document:
//! every problem the scheduler would refuse it for, warnings about selectors that are valid
//! but probably not meant, and a one-line summary when it is fine. One function, so the
//! command line and the web page never disagree with the scheduler.

use serde_json::{json, Value};

use crate::replicator::Spec;

/// The verdict on one replication document.
#[derive(Debug, Default, PartialEq)]
pub struct Check {
    /// Each a sentence that says what to fix; empty when the document would be accepted.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// `source -> target (continuous)`, credentials redacted; only when there is no error.
    pub summary: Option<String>,
}

impl Check {
    pub fn to_json(&self) -> Value {
        json!({"ok": self.errors.is_empty(), "errors": self.errors,
               "warnings": self.warnings, "summary": self.summary})
    }
}

/// Judges a new replication document as the scheduler will (see [`super::docs::problems`]).
pub fn check(doc: &Value) -> Check {
    let mut errors = super::docs::problems(doc);
    if doc.get("_rev").is_some() {
        errors.push("`_rev` is set: a new document must not carry one (CouchDB answers conflict); remove it".into());
    }
    let mut warnings = Vec::new();
    if let Some(sel) = doc.get("selector") {
        warnings.extend(selector_warnings(sel));
    }
    if doc.pointer("/tls/verify") == Some(&Value::Bool(false)) {
        warnings.push(
            "`tls.verify` is false: peers' certificates are not checked, anyone on the path can read and change what crosses (for test peers only; name the peer's CA in `tls.ca` instead)".to_owned(),
        );
    }
    if doc.get("selector").is_none() && doc.get("doc_ids").is_none() {
        warnings.push(
            "no `selector` or `doc_ids`: every document of the source is replicated".to_owned(),
        );
    }
    let summary = match (errors.is_empty(), Spec::parse(doc)) {
        (true, Ok(spec)) => Some(format!(
            "{} -> {}{}",
            spec.source,
            spec.target,
            if spec.continuous { " (continuous)" } else { "" }
        )),
        (true, Err(e)) => {
            errors.push(e.to_string());
            None
        }
        (false, _) => None,
    };
    Check {
        errors,
        warnings,
        summary,
    }
}

/// Mistakes a valid selector can still hide: an operator object nested under a field name,
/// which CouchDB reads as a sub-field path (`{"type": {"$or": [...]}}` looks inside `type`).
pub fn selector_warnings(sel: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(o) = sel.as_object() {
        for (field, v) in o {
            if field.starts_with('$') {
                continue;
            }
            if let Some(inner) = v.as_object() {
                for op in ["$or", "$and", "$nor"] {
                    if let Some(list) = inner.get(op).and_then(Value::as_array) {
                        if list
                            .iter()
                            .any(|x| x.as_object().is_some_and(|m| m.keys().any(|k| k == field)))
                        {
                            out.push(format!(
                                "selector field `{field}` holds `{op}` whose conditions name `{field}` again: this matches `{field}.{field}`, probably not what you meant; put `{op}` at the top level"
                            ));
                        }
                    }
                }
            }
        }
    }
    negations_on_missing(sel, &mut out);
    out
}

/// `$ne` and `$nin` only match documents that have the field (CouchDB's semantics, unlike
/// PouchDB's), which surprises people filtering out a flag most documents lack. An `$or` that
/// also has `{field: {"$exists": false}}` already covers them.
fn negations_on_missing(sel: &Value, out: &mut Vec<String>) {
    walk_negations(sel, &[], out)
}

fn walk_negations(sel: &Value, covered: &[&str], out: &mut Vec<String>) {
    match sel {
        Value::Array(list) => list.iter().for_each(|v| walk_negations(v, covered, out)),
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$or" {
                    let mut more = covered.to_vec();
                    for alt in v.as_array().into_iter().flatten() {
                        for (f, c) in alt.as_object().into_iter().flatten() {
                            if c.get("$exists") == Some(&Value::Bool(false)) {
                                more.push(f);
                            }
                        }
                    }
                    walk_negations(v, &more, out);
                    continue;
                }
                if k.starts_with('$') {
                    walk_negations(v, covered, out);
                    continue;
                }
                if covered.contains(&k.as_str()) {
                    continue;
                }
                for op in ["$ne", "$nin"] {
                    if let Some(arg) = v.as_object().and_then(|o| o.get(op)) {
                        out.push(format!(
                            "`{k}: {{{op}: {arg}}}` does not match documents without `{k}` (nor does `$not`); to include them write `{{\"$or\": [{{\"{k}\": {{\"$exists\": false}}}}, {{\"{k}\": {{\"{op}\": {arg}}}}}]}}`"
                        ));
                    }
                }
            }
        }
        _ => {}
    }
}
