//! Which revisions of a change a filtered changes feed lets through.
//!
//! Shared by the HTTP `_changes` handler, the replicator's local endpoint and `_find`
//! ([`leaf_matches`]), so a selector-filtered replication from a local database sends exactly
//! what `POST _changes?filter=_selector` would and what `_find` previews.

use std::borrow::Cow;
use std::collections::HashSet;

use crate::mango::json::Doc;
use crate::mango::Selector;
use crate::store::{Change, Database, Doc as StoredDoc, Leaf, ReadOpts, StoreError};

/// Special members [`doc_for_match`] provides.
const SEEN_SPECIALS: &[&str] = &["_id", "_rev", "_deleted"];

/// A `_changes` filter: built-in `_doc_ids`, `_design`, `_selector`, and the feed style.
#[derive(Clone, Debug, Default)]
pub struct FeedFilter {
    /// `style=all_docs`: every leaf is a candidate; otherwise only the winner.
    pub all_docs: bool,
    pub doc_ids: Option<HashSet<String>>,
    pub design_only: bool,
    pub selector: Option<Selector>,
}

impl FeedFilter {
    /// The leaves (winner first) this change contributes to the feed; empty when the change is
    /// filtered out.
    ///
    /// CouchDB's `_selector` filter tests every candidate revision's JSON, tombstones included
    /// and not special-cased, and lists only the revisions that pass.
    pub fn revs<'c>(&self, db: &Database, c: &'c Change) -> Result<Vec<Leaf<'c>>, StoreError> {
        if self.design_only && !c.id.starts_with("_design/") {
            return Ok(Vec::new());
        }
        if self
            .doc_ids
            .as_ref()
            .is_some_and(|ids| !ids.contains(&c.id))
        {
            return Ok(Vec::new());
        }
        let mut leaves = c.doc.leaves();
        if !self.all_docs {
            leaves.truncate(1);
        }
        if let Some(sel) = &self.selector {
            let mut kept = Vec::with_capacity(leaves.len());
            for leaf in leaves {
                if leaf_matches(sel, db, &c.id, &c.doc, leaf, &ReadOpts::default())? {
                    kept.push(leaf);
                }
            }
            leaves = kept;
        }
        Ok(leaves)
    }
}

/// Does `leaf` of document `id` satisfy `sel`? Members the selector cannot see are not
/// decoded, and what it reads is borrowed from the stored body; a selector that reads the
/// whole document, or special members only the full document has (`_attachments`,
/// `_conflicts`…), sees it as [`Database::doc_json`] renders it with `opts`.
pub fn leaf_matches(
    sel: &Selector,
    db: &Database,
    id: &str,
    doc: &StoredDoc,
    leaf: Leaf<'_>,
    opts: &ReadOpts,
) -> Result<bool, StoreError> {
    Ok(match sel.top_fields() {
        Some(f)
            if !f
                .iter()
                .any(|k| k.starts_with('_') && !SEEN_SPECIALS.contains(&k.as_str())) =>
        {
            sel.matches(&doc_for_match(db, id, doc, leaf, f)?)
        }
        _ => sel.matches(&db.doc_json(id, doc, leaf, opts)?),
    })
}

/// `leaf` as a selector whose top fields are `fields` sees it: those members of the
/// stored body, plus `_id`, `_rev` and `_deleted` when named there. Matches exactly when the
/// whole document ([`Database::doc_json`]) does.
fn doc_for_match<'r>(
    db: &Database,
    id: &'r str,
    stored: &'r StoredDoc,
    leaf: Leaf<'_>,
    fields: &[String],
) -> Result<Doc<'r>, StoreError> {
    let body = db.leaf_body(id, stored, leaf)?;
    let mut doc = Doc::object(body, Some(fields))
        .ok_or_else(|| StoreError::Corrupt(format!("body of {id} {}", leaf.rev())))?;
    let named = |f: &str| fields.iter().any(|x| x == f);
    if named("_id") {
        doc.push("_id", Doc::Str(Cow::Borrowed(id)));
    }
    if named("_rev") {
        doc.push("_rev", Doc::Str(Cow::Owned(leaf.rev().to_string())));
    }
    if leaf.deleted() && named("_deleted") {
        doc.push("_deleted", Doc::Bool(true));
    }
    Ok(doc)
}

/// The result of one pass over the by-sequence index.
pub struct Scan {
    /// Changes that passed, each with the revisions to list (winner first).
    pub hits: Vec<(Change, Vec<String>)>,
    /// The last sequence looked at: the `last_seq` to answer and resume from.
    pub last: u64,
}

impl FeedFilter {
    /// Changes after `since`, at most `limit` passing ones. When the scan reaches the end of an
    /// ascending feed, `last` is at least the update seq seen before it started, so a caller
    /// that resumes from it never skips a change and never rescans filtered-out ones.
    pub fn scan(
        &self,
        db: &Database,
        since: u64,
        limit: Option<u64>,
        descending: bool,
    ) -> Result<Scan, StoreError> {
        let snapshot = db.update_seq();
        let mut hits = Vec::new();
        let mut last = since;
        let mut limited = false;
        for c in db.changes(since, descending) {
            let c = c?;
            if limit.is_some_and(|l| hits.len() as u64 >= l) {
                limited = true;
                break;
            }
            last = if descending { last.max(c.seq) } else { c.seq };
            let revs: Vec<String> = self
                .revs(db, &c)?
                .iter()
                .map(|l| l.rev().to_string())
                .collect();
            if !revs.is_empty() {
                hits.push((c, revs));
            }
        }
        if !limited && !descending {
            last = last.max(snapshot);
        }
        Ok(Scan { hits, last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreConfig};
    use serde_json::json;

    /// The feed decodes only a selector's top fields; it must pass exactly the revisions the
    /// whole documents would.
    #[test]
    fn selector_sees_the_same_through_top_fields() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        let db = store.create_db("d").unwrap();
        let docs = vec![
            json!({"_id": "a", "type": "item", "tags": ["x", "y"], "pad": "p"}),
            json!({"_id": "b", "type": "collection", "n": 3, "nested": {"k": 1}}),
            json!({"_id": "c", "_deleted": true, "type": "item"}),
            json!({"_id": "d", "other": "\u{e9}t\u{e9}", "type": null}),
            json!({"_id": "e", "type": "item", "_attachments": {"f": {"content_type": "text/plain", "data": "aGk="}}}),
        ];
        db.bulk_docs(docs, true).unwrap();
        for sel in [
            json!({"type": "item"}),
            json!({"$or": [{"type": "collection", "nested.k": 1}, {"tags": {"$elemMatch": {"$eq": "y"}}}]}),
            json!({"_id": {"$gt": "b"}, "type": {"$exists": true}}),
            json!({"_deleted": true}),
            json!({"_rev": {"$regex": "^1-"}, "type": "item"}),
            json!({"_deleted": {"$exists": false}}),
            json!({"type": {"$type": "null"}}),
            json!({"_attachments.f": {"$exists": true}}),
            json!({"$and": [{"$gt": null}]}),
        ] {
            let s = Selector::parse(&sel).unwrap();
            let full = |c: &Change| {
                let doc = db
                    .doc_json(&c.id, &c.doc, c.doc.leaves()[0], &ReadOpts::default())
                    .unwrap();
                s.matches(&doc)
            };
            let f = FeedFilter {
                selector: Some(s.clone()),
                ..Default::default()
            };
            for c in db.changes(0, false) {
                let c = c.unwrap();
                assert_eq!(
                    !f.revs(&db, &c).unwrap().is_empty(),
                    full(&c),
                    "{sel} on {}",
                    c.id
                );
            }
        }
    }
}
