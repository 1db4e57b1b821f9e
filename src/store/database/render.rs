//! CouchDB's JSON for one leaf revision: the stored body with `_id`, `_rev`, `_deleted`,
//! attachments (stubs or inline data) and the members read options ask for. Two renderings
//! that must agree: a `Value` ([`Database::doc_json`]) and bytes with the stored body spliced
//! in ([`Database::write_doc`]), which feeds and `_bulk_get` use because rebuilding every body
//! was most of their cost.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::*;

/// How a read turns one leaf revision into its answer: a JSON value or JSON bytes.
pub(super) type Render<T> = fn(&Database, &str, &DocRecord, usize, &ReadOpts) -> Result<T>;

impl Database {
    /// The JSON CouchDB returns for one leaf revision of `doc`.
    pub fn doc_json(&self, id: &str, doc: &Doc, leaf: Leaf<'_>, opts: &ReadOpts) -> Result<Value> {
        self.render_json(id, &doc.rec, leaf.idx, opts)
    }

    /// Appends to `out` what [`Database::doc_json`] returns, as bytes, the stored body spliced
    /// in as it is (see `render_into`).
    pub fn write_doc(
        &self,
        out: &mut Vec<u8>,
        id: &str,
        doc: &Doc,
        leaf: Leaf<'_>,
        opts: &ReadOpts,
    ) -> Result<()> {
        self.render_into(out, id, &doc.rec, leaf.idx, opts)
    }

    pub(super) fn render_bytes(
        &self,
        id: &str,
        rec: &DocRecord,
        idx: usize,
        opts: &ReadOpts,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(1024);
        self.render_into(&mut out, id, rec, idx, opts)?;
        Ok(out)
    }

    /// Builds the JSON CouchDB returns for one leaf revision.
    pub(super) fn render_json(
        &self,
        id: &str,
        rec: &DocRecord,
        idx: usize,
        opts: &ReadOpts,
    ) -> Result<Value> {
        let tree = &rec.tree;
        let node = tree.node(idx);
        let mut body = parse_body(id, &node.rev, body_bytes(id, rec, &node.rev)?)?;
        let mut m = Map::with_capacity(body.len() + 4);
        m.insert("_id".into(), Value::String(id.to_owned()));
        m.insert("_rev".into(), Value::String(node.rev.to_string()));
        let atts = body.shift_remove("_attachments");
        m.extend(body);
        if node.deleted {
            m.insert("_deleted".into(), Value::Bool(true));
        }
        if let Some(Value::Object(mut atts)) = atts {
            let since = match &opts.attachments {
                AttMode::Stubs => Some(u64::MAX),
                AttMode::All => None,
                AttMode::Since(revs) => {
                    let path = tree.path(idx);
                    Some(
                        revs.iter()
                            .filter(|r| path.contains(r))
                            .map(|r| r.pos)
                            .max()
                            .unwrap_or(0),
                    )
                }
            };
            for (_, att) in atts.iter_mut() {
                let revpos = att.get("revpos").and_then(Value::as_u64).unwrap_or(0);
                if since.is_some_and(|s| revpos <= s) {
                    continue;
                }
                let digest = att.get("digest").and_then(Value::as_str).unwrap_or("");
                let data = self
                    .attachment_data(digest)?
                    .ok_or_else(|| StoreError::Corrupt(format!("attachment {digest}")))?;
                if let Value::Object(a) = att {
                    // As CouchDB (`couch_att:to_json`): `length` goes with stubs only; inline
                    // data says its length itself.
                    a.shift_remove("stub");
                    a.shift_remove("length");
                    a.insert(
                        "data".into(),
                        Value::String(base64::engine::general_purpose::STANDARD.encode(&data)),
                    );
                }
            }
            m.insert("_attachments".into(), Value::Object(atts));
        }
        m.extend(self.extras(rec, idx, opts).map(|(k, v)| (k.to_owned(), v)));
        Ok(Value::Object(m))
    }

    /// Appends to `out` the JSON [`Database::doc_json`] builds, as bytes. The stored body is
    /// spliced in as it is (no parse, no map, no reserialization) unless attachment data must
    /// be inlined into it: feeds, `_all_docs` and `_bulk_get` send thousands of bodies, and
    /// rebuilding each one was most of their cost. Equal to `doc_json` as JSON; only the
    /// position of `_attachments` among the members may differ.
    pub(super) fn render_into(
        &self,
        out: &mut Vec<u8>,
        id: &str,
        rec: &DocRecord,
        idx: usize,
        opts: &ReadOpts,
    ) -> Result<()> {
        let node = rec.tree.node(idx);
        let bytes = body_bytes(id, rec, &node.rev)?;
        let inline_atts = opts.attachments != AttMode::Stubs
            && memchr::memmem::find(bytes, b"\"_attachments\":").is_some();
        let inner = bytes.strip_prefix(b"{").and_then(|b| b.strip_suffix(b"}"));
        let Some(inner) = inner.filter(|_| !inline_atts) else {
            return write_json(out, &self.render_json(id, rec, idx, opts)?);
        };
        out.extend_from_slice(b"{\"_id\":");
        write_json(out, id)?;
        out.extend_from_slice(b",\"_rev\":\"");
        out.extend_from_slice(node.rev.to_string().as_bytes());
        out.push(b'"');
        if !inner.is_empty() {
            out.push(b',');
            out.extend_from_slice(inner);
        }
        if node.deleted {
            out.extend_from_slice(b",\"_deleted\":true");
        }
        for (k, v) in self.extras(rec, idx, opts) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            write_json(out, &v)?;
        }
        out.push(b'}');
        Ok(())
    }

    /// The members a read adds after the body: `_conflicts`, `_deleted_conflicts`,
    /// `_local_seq`, `_revs_info`, `_revisions`, as the options ask.
    pub(super) fn extras(
        &self,
        rec: &DocRecord,
        idx: usize,
        opts: &ReadOpts,
    ) -> impl Iterator<Item = (&'static str, Value)> {
        let tree = &rec.tree;
        let node = tree.node(idx);
        let mut m = Vec::new();
        let winner = tree.winner();
        if opts.conflicts && winner == Some(idx) {
            let c = self.other_leaves(tree, idx, false);
            if !c.is_empty() {
                m.push(("_conflicts", json!(c)));
            }
        }
        if opts.deleted_conflicts && winner == Some(idx) {
            let c = self.other_leaves(tree, idx, true);
            if !c.is_empty() {
                m.push(("_deleted_conflicts", json!(c)));
            }
        }
        if opts.local_seq {
            m.push(("_local_seq", json!(rec.seq)));
        }
        if opts.revs_info {
            let info: Vec<Value> = tree
                .path(idx)
                .into_iter()
                .map(|r| {
                    let i = tree.find(&r);
                    let status = match i {
                        Some(i) if tree.is_leaf(i) && tree.node(i).deleted => "deleted",
                        Some(i) if tree.is_leaf(i) => "available",
                        _ => "missing",
                    };
                    json!({"rev": r.to_string(), "status": status})
                })
                .collect();
            m.push(("_revs_info", Value::Array(info)));
        }
        if opts.revs {
            let path = tree.path(idx);
            let ids: Vec<&str> = path.iter().map(|r| r.hash.as_str()).collect();
            m.push(("_revisions", json!({"start": node.rev.pos, "ids": ids})));
        }
        m.into_iter()
    }

    pub(super) fn other_leaves(&self, tree: &RevTree, winner: usize, deleted: bool) -> Vec<String> {
        tree.leaves()
            .into_iter()
            .filter(|&i| i != winner && tree.node(i).deleted == deleted)
            .map(|i| tree.node(i).rev.to_string())
            .collect()
    }
}

/// The stored body of a leaf revision as a JSON object.
pub(super) fn parse_body(id: &str, rev: &Rev, bytes: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(StoreError::Corrupt(format!("body of {id} {rev}"))),
    }
}

/// The stored body bytes of a leaf revision: every leaf has one (a record invariant).
pub(super) fn body_bytes<'r>(id: &str, rec: &'r DocRecord, rev: &Rev) -> Result<&'r sled::IVec> {
    rec.body(rev)
        .ok_or_else(|| StoreError::Corrupt(format!("missing body of {id} {rev}")))
}

pub(super) fn write_json(out: &mut Vec<u8>, v: &(impl serde::Serialize + ?Sized)) -> Result<()> {
    serde_json::to_writer(out, v)
        .map_err(|e| StoreError::Bug(format!("a response does not serialize: {e}")))
}
