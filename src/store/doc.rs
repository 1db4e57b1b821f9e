//! Incoming documents: parse, don't validate. A JSON value becomes a [`DocUpdate`] or a
//! [`DocError`]; nothing downstream re-checks shape.

use base64::Engine;
use serde_json::{Map, Value};

use super::error::DocError;
use super::rev::Rev;

/// One document write, as `_bulk_docs` or `PUT /db/doc` carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct DocUpdate {
    pub id: String,
    pub rev: Option<Rev>,
    /// The `_rev` of a `_local` document (`0-N`), kept as given.
    pub local_rev: Option<String>,
    /// The `_revisions` path, newest first, when given.
    pub revisions: Option<Vec<Rev>>,
    pub deleted: bool,
    /// User fields only: every `_`-prefixed member has been taken out.
    pub body: Map<String, Value>,
    pub attachments: Vec<(String, AttInput)>,
}

/// An attachment as a writer sends it.
#[derive(Clone, Debug, PartialEq)]
pub enum AttInput {
    /// New data (inline base64, or a multipart part the HTTP layer already read).
    Data {
        content_type: String,
        data: Vec<u8>,
        revpos: Option<u64>,
    },
    /// "Keep what the previous revision had": resolved against the database.
    Stub {
        digest: Option<String>,
        revpos: Option<u64>,
    },
    /// Data that follows in a multipart body; the HTTP layer must replace it with `Data`.
    Follows {
        content_type: String,
        length: Option<u64>,
        digest: Option<String>,
        revpos: Option<u64>,
    },
}

/// Special members CouchDB accepts in a document and ignores on write.
const IGNORED_SPECIALS: &[&str] = &[
    "_conflicts",
    "_deleted_conflicts",
    "_revs_info",
    "_local_seq",
];

/// Replication-document state fields CouchDB stores as body members (`couch_doc`'s special
/// case for the replicator), so any document may carry them.
const KEPT_SPECIALS: &[&str] = &[
    "_replication_state",
    "_replication_state_time",
    "_replication_state_reason",
    "_replication_id",
    "_replication_stats",
];

pub const LOCAL_PREFIX: &str = "_local/";
pub const DESIGN_PREFIX: &str = "_design/";

/// Checks a document id as CouchDB does for ordinary (non-local) documents.
pub fn validate_doc_id(id: &str) -> Result<(), DocError> {
    if id.is_empty() {
        return Err(DocError::IllegalDocId(
            "Document id must not be empty".into(),
        ));
    }
    if id.starts_with('_') && !id.starts_with(DESIGN_PREFIX) && !id.starts_with(LOCAL_PREFIX) {
        return Err(DocError::IllegalDocId(
            "Only reserved document ids may start with underscore.".into(),
        ));
    }
    if id == DESIGN_PREFIX || id == LOCAL_PREFIX {
        return Err(DocError::IllegalDocId(format!(
            "Document id {id:?} needs a name after the prefix"
        )));
    }
    Ok(())
}

impl DocUpdate {
    /// Parses a document. `default_id` is used when the document has no `_id`
    /// (a server-generated id for `POST /db`, or the id from the URL for `PUT`).
    pub fn from_json(doc: Value, default_id: Option<String>) -> Result<DocUpdate, DocError> {
        let Value::Object(mut map) = doc else {
            return Err(DocError::BadRequest(
                "Document must be a JSON object".into(),
            ));
        };
        let id = match map.shift_remove("_id") {
            Some(Value::String(s)) => s,
            Some(_) => {
                return Err(DocError::IllegalDocId(
                    "Document id must be a string".into(),
                ))
            }
            None => default_id
                .ok_or_else(|| DocError::BadRequest("Document id must be a string".into()))?,
        };
        validate_doc_id(&id)?;
        let local = id.starts_with(LOCAL_PREFIX);
        let mut local_rev = None;
        if local {
            local_rev = match map.shift_remove("_rev") {
                Some(Value::String(s)) => Some(s),
                _ => None,
            };
        }
        let mut rev = match map.shift_remove("_rev") {
            Some(Value::String(s)) => Some(Rev::parse(&s)?),
            Some(Value::Null) | None => None,
            Some(_) => return Err(DocError::BadRequest("Invalid rev format".into())),
        };
        let revisions = match map.shift_remove("_revisions") {
            // `_local` documents have no revision tree; CouchDB's replicator sends its
            // checkpoints with `_revisions: {"start": 0, "ids": ["1"]}`, which means nothing.
            Some(_) if local => None,
            Some(v) => Some(parse_revisions(&v)?),
            None => None,
        };
        if let Some(path) = &revisions {
            // As CouchDB: `_revisions` wins over a `_rev` that is not its newest entry.
            rev = Some(path[0].clone());
        }
        let deleted = match map.shift_remove("_deleted") {
            Some(Value::Bool(b)) => b,
            None => false,
            // CouchDB accepts only a boolean: `"yes"` must not quietly mean "not deleted".
            Some(_) => {
                return Err(DocError::Validation(
                    "Bad special document member: _deleted".into(),
                ))
            }
        };
        let attachments = match map.shift_remove("_attachments") {
            Some(Value::Object(atts)) => atts
                .into_iter()
                .map(|(name, v)| parse_attachment(&name, v).map(|a| (name, a)))
                .collect::<Result<Vec<_>, _>>()?,
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(DocError::BadRequest(
                    "_attachments must be a JSON object".into(),
                ))
            }
        };
        for key in map.keys() {
            if key.starts_with('_')
                && !IGNORED_SPECIALS.contains(&key.as_str())
                && !KEPT_SPECIALS.contains(&key.as_str())
            {
                return Err(DocError::Validation(format!(
                    "Bad special document member: {key}"
                )));
            }
        }
        map.retain(|k, _| !k.starts_with('_') || KEPT_SPECIALS.contains(&k.as_str()));
        Ok(DocUpdate {
            id,
            rev,
            local_rev,
            revisions,
            deleted,
            body: map,
            attachments,
        })
    }

    pub fn is_local(&self) -> bool {
        self.id.starts_with(LOCAL_PREFIX)
    }
}

/// What CouchDB checks of every document of a `_bulk_docs` request before writing any
/// (`couch_db:doc_from_json_obj_validate` and `validate_revs`): a JSON object, a valid id
/// when given, a well-formed `_rev`, no unknown special member, and with `new_edits=false`
/// a revision. One failure refuses the whole request. Reads without copying the document.
pub fn check_shape(doc: &Value, new_edits: bool) -> Result<(), DocError> {
    let Value::Object(m) = doc else {
        return Err(DocError::BadRequest(
            "Document must be a JSON object".into(),
        ));
    };
    match m.get("_id") {
        None => {}
        Some(Value::String(id)) => validate_doc_id(id)?,
        Some(_) => {
            return Err(DocError::IllegalDocId(
                "Document id must be a string".into(),
            ))
        }
    }
    if let Some(Value::String(r)) = m.get("_rev") {
        if !m
            .get("_id")
            .and_then(Value::as_str)
            .is_some_and(|i| i.starts_with(LOCAL_PREFIX))
        {
            Rev::parse(r)?;
        }
    }
    const PARSED: [&str; 5] = ["_id", "_rev", "_revisions", "_deleted", "_attachments"];
    if let Some(key) = m.keys().find(|k| {
        k.starts_with('_')
            && !PARSED.contains(&k.as_str())
            && !IGNORED_SPECIALS.contains(&k.as_str())
            && !KEPT_SPECIALS.contains(&k.as_str())
    }) {
        return Err(DocError::Validation(format!(
            "Bad special document member: {key}"
        )));
    }
    if !new_edits && m.get("_rev").is_none() && m.get("_revisions").is_none() {
        return Err(DocError::BadRequest(
            "When `new_edits: false`, the document needs `_rev` or `_revisions` specified".into(),
        ));
    }
    Ok(())
}

fn parse_revisions(v: &Value) -> Result<Vec<Rev>, DocError> {
    let bad = |why: &str| DocError::BadRequest(format!("Invalid _revisions: {why}"));
    let start = v
        .get("start")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("start must be a positive integer"))?;
    let ids = v
        .get("ids")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("ids must be an array of strings"))?;
    if ids.is_empty() {
        return Err(bad("ids must not be empty"));
    }
    if (ids.len() as u64) > start {
        return Err(bad("more ids than start allows"));
    }
    ids.iter()
        .enumerate()
        .map(|(i, id)| match id.as_str() {
            // An empty id is a hash-less revision (`1-`), which CouchDB allows.
            Some(h) => Ok(Rev::new(start - i as u64, h)),
            None => Err(bad("ids must be strings")),
        })
        .collect()
}

fn parse_attachment(name: &str, v: Value) -> Result<AttInput, DocError> {
    let bad = |why: &str| DocError::BadRequest(format!("Invalid attachment {name:?}: {why}"));
    if name.starts_with('_') {
        return Err(bad("attachment name must not start with '_'"));
    }
    let Value::Object(m) = v else {
        return Err(bad("must be a JSON object"));
    };
    let content_type = m
        .get("content_type")
        .and_then(Value::as_str)
        .unwrap_or("application/octet-stream")
        .to_owned();
    let revpos = m.get("revpos").and_then(Value::as_u64);
    let digest = m.get("digest").and_then(Value::as_str).map(str::to_owned);
    if let Some(data) = m.get("data") {
        let s = data.as_str().ok_or_else(|| bad("data must be a string"))?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|_| bad("data is not valid base64"))?;
        return Ok(AttInput::Data {
            content_type,
            data,
            revpos,
        });
    }
    if m.get("stub") == Some(&Value::Bool(true)) {
        return Ok(AttInput::Stub { digest, revpos });
    }
    if m.get("follows") == Some(&Value::Bool(true)) {
        return Ok(AttInput::Follows {
            content_type,
            length: m.get("length").and_then(Value::as_u64),
            digest,
            revpos,
        });
    }
    Err(bad("needs data, stub or follows"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn doc_ids_follow_couchdb() {
        for ok in ["a", "_design/x", "_local/x", "é"] {
            assert!(validate_doc_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "_x", "_design/", "_local/", "_designx"] {
            assert!(validate_doc_id(bad).is_err(), "{bad}");
        }
        let del = DocUpdate::from_json(json!({"_id": "a", "_deleted": "yes"}), None);
        assert!(matches!(del, Err(DocError::Validation(_))));
    }

    #[test]
    fn strips_specials_and_keeps_body() {
        let d = DocUpdate::from_json(
            json!({"_id":"a","_rev":"1-x","_deleted":true,"_conflicts":[],"k":1}),
            None,
        )
        .unwrap();
        assert_eq!(d.id, "a");
        assert_eq!(d.rev, Some(Rev::new(1, "x")));
        assert!(d.deleted);
        assert_eq!(Value::Object(d.body), json!({"k":1}));
    }

    #[test]
    fn rejects_bad_input() {
        let cases = [
            json!([1]),
            json!({"_id": 5}),
            json!({"_id": ""}),
            json!({"_id": "_bad"}),
            json!({"_id": "a", "_rev": "nope"}),
            json!({"_id": "a", "_foo": 1}),
            json!({"_id": "a", "_revisions": {"start": 1, "ids": ["c", "a"]}}),
            json!({"_id": "a", "_attachments": {"x": {"data": "!!"}}}),
            json!({"_id": "a", "_attachments": {"x": {}}}),
        ];
        for c in cases {
            assert!(DocUpdate::from_json(c.clone(), None).is_err(), "{c}");
        }
        assert!(matches!(
            DocUpdate::from_json(json!({"_id":"a","_foo":1}), None),
            Err(DocError::Validation(_))
        ));
    }

    #[test]
    fn revisions_win_over_a_rev_that_is_not_their_newest_and_mean_nothing_on_local_docs() {
        let d = DocUpdate::from_json(
            json!({"_id": "a", "_rev": "2-b", "_revisions": {"start": 2, "ids": ["c", "a"]}}),
            None,
        )
        .unwrap();
        assert_eq!(d.rev, Some(Rev::new(2, "c")));
        // CouchDB's replicator writes its checkpoints so.
        let l = DocUpdate::from_json(
            json!({"_id": "_local/x", "_rev": "0-1", "_revisions": {"start": 0, "ids": ["1"]}}),
            None,
        );
        assert!(l.is_ok(), "{l:?}");
    }

    #[test]
    fn revisions_imply_rev() {
        let d = DocUpdate::from_json(
            json!({"_id":"a","_revisions":{"start":3,"ids":["c","b","a"]}}),
            None,
        )
        .unwrap();
        assert_eq!(d.rev, Some(Rev::new(3, "c")));
        assert_eq!(d.revisions.unwrap()[2], Rev::new(1, "a"));
    }

    #[test]
    fn design_and_local_ids_are_allowed() {
        assert!(DocUpdate::from_json(json!({"_id":"_design/x"}), None).is_ok());
        assert!(DocUpdate::from_json(json!({"_id":"_local/x"}), None)
            .unwrap()
            .is_local());
    }
}
