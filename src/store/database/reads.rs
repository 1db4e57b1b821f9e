//! Reads of documents: by id and revision, `open_revs`, attachments, documents in id order,
//! conflicts and `_revs_diff`.

use std::collections::HashSet;

use serde_json::Value;

use super::render::{body_bytes, Render};
use super::*;

impl Database {
    /// A document's revision tree and sequence, if it exists (deleted or not).
    pub fn doc(&self, id: &str) -> Result<Option<Doc>> {
        Ok(self.record(id)?.map(Doc::new))
    }

    pub(super) fn record(&self, id: &str) -> Result<Option<DocRecord>> {
        match self.tree.get(codec::doc_key(id))? {
            Some(bytes) => Ok(Some(DocRecord::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The stored body of leaf `idx`: a JSON object of the document's members without `_id`,
    /// `_rev` and `_deleted` (attachment stubs are under `_attachments` as stored, not as
    /// [`Database::doc_json`] shows them), which a selector filter decodes only as far as it
    /// reads.
    pub fn leaf_body<'r>(&self, id: &str, doc: &'r Doc, leaf: Leaf<'_>) -> Result<&'r [u8]> {
        Ok(body_bytes(id, &doc.rec, leaf.rev())?)
    }

    /// `GET /db/doc[?rev=]`: the winner (404 `deleted` if it is a tombstone) or a given leaf.
    pub fn get(&self, id: &str, rev: Option<&Rev>, opts: &ReadOpts) -> Result<Value> {
        self.get_with(id, rev, opts, Database::render_json)
    }

    /// [`Database::get`] as JSON bytes, the body spliced in ([`Database::write_doc`]).
    pub fn get_bytes(&self, id: &str, rev: Option<&Rev>, opts: &ReadOpts) -> Result<Vec<u8>> {
        self.get_with(id, rev, opts, Database::render_bytes)
    }

    pub(super) fn get_with<T>(
        &self,
        id: &str,
        rev: Option<&Rev>,
        opts: &ReadOpts,
        render: Render<T>,
    ) -> Result<T> {
        let rec = self.record(id)?.ok_or(StoreError::NotFound("missing"))?;
        let idx = match rev {
            None => {
                let w = rec.tree.winner().ok_or(StoreError::NotFound("missing"))?;
                if rec.tree.node(w).deleted {
                    return Err(StoreError::NotFound("deleted"));
                }
                w
            }
            Some(r) => match rec.tree.find(r) {
                Some(i) if rec.tree.is_leaf(i) => i,
                _ => return Err(StoreError::NotFound("missing")),
            },
        };
        render(self, id, &rec, idx, opts)
    }

    /// `open_revs`: all leaves (`None`) or the given revisions; with `latest`, a non-leaf
    /// revision resolves to its descendant leaves. `Err(rev)` marks a missing revision.
    pub fn open_revs(
        &self,
        id: &str,
        revs: Option<&[Rev]>,
        latest: bool,
        opts: &ReadOpts,
    ) -> Result<Vec<std::result::Result<Value, String>>> {
        self.open_revs_with(id, revs, latest, opts, Database::render_json)
    }

    /// [`Database::open_revs`] as JSON bytes, the bodies spliced in (`_bulk_get`).
    pub fn open_revs_bytes(
        &self,
        id: &str,
        revs: Option<&[Rev]>,
        latest: bool,
        opts: &ReadOpts,
    ) -> Result<Vec<std::result::Result<Vec<u8>, String>>> {
        self.open_revs_with(id, revs, latest, opts, Database::render_bytes)
    }

    pub(super) fn open_revs_with<T>(
        &self,
        id: &str,
        revs: Option<&[Rev]>,
        latest: bool,
        opts: &ReadOpts,
        render: Render<T>,
    ) -> Result<Vec<std::result::Result<T, String>>> {
        let rec = self.record(id)?;
        let mut out = Vec::new();
        match (revs, rec) {
            (None, None) => return Err(StoreError::NotFound("missing")),
            (None, Some(rec)) => {
                for leaf in rec.tree.leaves() {
                    out.push(Ok(render(self, id, &rec, leaf, opts)?));
                }
            }
            (Some(revs), rec) => {
                let mut seen = HashSet::new();
                for r in revs {
                    let found = rec
                        .as_ref()
                        .and_then(|rec| rec.tree.find(r).map(|i| (rec, i)));
                    match found {
                        Some((rec, i)) if rec.tree.is_leaf(i) => {
                            if seen.insert(i) {
                                out.push(Ok(render(self, id, rec, i, opts)?));
                            }
                        }
                        Some((rec, i)) if latest => {
                            for leaf in rec.tree.leaves_under(i) {
                                if seen.insert(leaf) {
                                    out.push(Ok(render(self, id, rec, leaf, opts)?));
                                }
                            }
                        }
                        _ => out.push(Err(r.to_string())),
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn attachment_data(&self, digest: &str) -> Result<Option<sled::IVec>> {
        Ok(self.tree.get(codec::att_key(digest))?)
    }

    /// `GET /db/doc/att`: the attachment's metadata and bytes, from the winner or a given rev.
    pub fn attachment(
        &self,
        id: &str,
        rev: Option<&Rev>,
        name: &str,
    ) -> Result<(AttMeta, sled::IVec)> {
        let doc = self.get(id, rev, &ReadOpts::default())?;
        let att = doc
            .get("_attachments")
            .and_then(|a| a.get(name))
            .ok_or(StoreError::NotFound("Document is missing attachment"))?;
        let meta = AttMeta {
            content_type: att
                .get("content_type")
                .and_then(Value::as_str)
                .unwrap_or("application/octet-stream")
                .to_owned(),
            digest: att
                .get("digest")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            length: att.get("length").and_then(Value::as_u64).unwrap_or(0),
            revpos: att.get("revpos").and_then(Value::as_u64).unwrap_or(0),
        };
        let data = self
            .attachment_data(&meta.digest)?
            .ok_or_else(|| StoreError::Corrupt(format!("attachment {}", meta.digest)))?;
        Ok((meta, data))
    }

    /// Documents in id order (raw byte order, as CouchDB's `_all_docs`), from `start`
    /// inclusive, deleted ones included (callers filter on [`Doc::is_deleted`]).
    pub fn docs_from(
        &self,
        start: &str,
        descending: bool,
    ) -> impl Iterator<Item = Result<(String, Doc)>> + '_ {
        use std::ops::Bound::{Excluded, Included};
        let end = Excluded(vec![codec::DOC + 1]);
        let iter: KvIter = match (descending, start.is_empty()) {
            (false, _) => Box::new(self.tree.range((Included(codec::doc_key(start)), end))),
            (true, true) => Box::new(self.tree.range((Included(vec![codec::DOC]), end)).rev()),
            (true, false) => Box::new(
                self.tree
                    .range((Included(vec![codec::DOC]), Included(codec::doc_key(start))))
                    .rev(),
            ),
        };
        iter.map(|kv| {
            let (k, v) = kv?;
            let id = String::from_utf8(k[1..].to_vec())
                .map_err(|_| StoreError::Corrupt("doc id".into()))?;
            Ok((id, Doc::new(DocRecord::decode(&v)?)))
        })
    }

    /// Documents with more than one live leaf, in id order after `after`, at most `limit`:
    /// each with its winning revision first and then the losing live leaves, as documents
    /// (attachments as stubs). Deleted leaves are not conflicts, as in CouchDB's `_conflicts`.
    pub fn conflicts(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<Value>)>> {
        let mut out = Vec::new();
        for item in self.docs_from(after.unwrap_or(""), false) {
            let (id, doc) = item?;
            if Some(id.as_str()) == after {
                continue;
            }
            // Winner first.
            let live = doc.live_leaves();
            if live.len() < 2 {
                continue;
            }
            let docs = live
                .into_iter()
                .map(|leaf| self.doc_json(&id, &doc, leaf, &ReadOpts::default()))
                .collect::<Result<Vec<_>>>()?;
            out.push((id, docs));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// `_revs_diff`: for each id, the revisions this database does not have.
    pub fn revs_diff(&self, req: Vec<(String, Vec<Rev>)>) -> Result<Vec<RevsDiff>> {
        let mut out = Vec::new();
        for (id, revs) in req {
            let rec = self.record(&id)?;
            let missing: Vec<Rev> = revs
                .into_iter()
                .filter(|r| !rec.as_ref().is_some_and(|rec| rec.tree.contains(r)))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let possible_ancestors = rec
                .map(|rec| rec.tree.possible_ancestors(&missing))
                .unwrap_or_default();
            out.push(RevsDiff {
                id,
                missing,
                possible_ancestors,
            });
        }
        Ok(out)
    }
}
