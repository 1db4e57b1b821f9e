//! One write batch ([`Writer`]): documents as they will be after the batch and the sled
//! operations that get them there, built in memory and applied by `finish` (or chunk by chunk
//! through the [`Applier`](super::write::Applier)). Interactive edits, replicated writes
//! (`new_edits=false`) and attachments are decided here.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::render::{body_bytes, parse_body};
use super::threads::{Applier, Prepared, CHUNK};
use super::*;

/// The state of one write batch: documents as they will be after the batch, and the sled
/// operations that get them there. Nothing touches sled until `finish`.
pub(super) struct Writer<'a> {
    pub(super) db: &'a Database,
    pub(super) meta: Meta,
    pub(super) docs: HashMap<String, DocState>,
    /// Ids in the order they were first changed: the order their sequences are assigned in.
    pub(super) order: Vec<String>,
    pub(super) atts: HashMap<String, Vec<u8>>,
    pub(super) locals: HashMap<String, Option<Value>>,
    pub(super) purge_infos: Vec<Value>,
    pub(super) changed: bool,
    /// Where chunks of a big write go to be applied (`None`: one batch at `finish`).
    pub(super) pipe: Option<Applier>,
    /// Attachment data already handed to the applier in an earlier chunk.
    pub(super) atts_sent: HashSet<String>,
}

/// What a document was when this write last saw it in sled (or handed it to the applier).
#[derive(Clone, Copy)]
pub(super) struct Stored {
    pub(super) seq: u64,
    pub(super) deleted: bool,
}

pub(super) struct DocState {
    pub(super) original: Option<Stored>,
    pub(super) current: Option<DocRecord>,
    pub(super) dirty: bool,
}

impl DocState {
    /// The record being built, made empty if the document does not exist yet.
    pub(super) fn record_mut(&mut self) -> &mut DocRecord {
        self.current
            .get_or_insert_with(|| DocRecord::new(0, RevTree::default()))
    }
}

pub(super) type DocResult = std::result::Result<String, DocError>;

impl<'a> Writer<'a> {
    /// A writer for a batch of about `docs` documents (sized up front: growing the map
    /// while writing was a tenth of a `_bulk_docs` call's time).
    pub(super) fn new(db: &'a Database, meta: Meta, docs: usize) -> Writer<'a> {
        Writer {
            db,
            meta,
            pipe: None,
            atts_sent: HashSet::new(),
            docs: HashMap::with_capacity(docs),
            order: Vec::with_capacity(docs),
            atts: HashMap::new(),
            locals: HashMap::new(),
            purge_infos: Vec::new(),
            changed: false,
        }
    }

    pub(super) fn state(&mut self, id: &str) -> Result<&mut DocState> {
        if !self.docs.contains_key(id) {
            let current = self.db.record(id)?;
            self.docs.insert(
                id.to_owned(),
                DocState {
                    original: current.as_ref().map(|r| Stored {
                        seq: r.seq,
                        deleted: r.tree.is_deleted(),
                    }),
                    current,
                    dirty: false,
                },
            );
        }
        Ok(self.docs.get_mut(id).expect("inserted above"))
    }

    /// A leaf's body as the batch has it so far (the document's state was loaded first).
    pub(super) fn body(&self, id: &str, rev: &Rev) -> Result<Map<String, Value>> {
        let rec = self
            .docs
            .get(id)
            .and_then(|st| st.current.as_ref())
            .ok_or_else(|| StoreError::Bug(format!("no record for {id} in this write")))?;
        parse_body(id, rev, body_bytes(id, rec, rev)?)
    }

    /// The record this batch is building for a document.
    pub(super) fn current(&mut self, id: &str) -> Result<&mut DocRecord> {
        Ok(self.state(id)?.record_mut())
    }

    pub(super) fn put_body(&mut self, id: &str, rev: &Rev, body: &Value) -> Result<()> {
        let bytes = super::super::error::encode("a document body", body)?;
        self.put_body_bytes(id, rev, bytes)
    }

    pub(super) fn put_body_bytes(&mut self, id: &str, rev: &Rev, bytes: Vec<u8>) -> Result<()> {
        self.meta.external += bytes.len() as u64;
        self.current(id)?.set_body(rev.clone(), bytes.into());
        Ok(())
    }

    pub(super) fn remove_body(&mut self, id: &str, rev: &Rev) -> Result<()> {
        if let Some(b) = self.current(id)?.remove_body(rev) {
            self.meta.external = self.meta.external.saturating_sub(b.len() as u64);
        }
        Ok(())
    }

    pub(super) fn mark_edited(&mut self, id: &str) {
        if let Some(rec) = self.docs.get_mut(id).and_then(|st| st.current.as_mut()) {
            rec.edited = true;
        }
    }

    pub(super) fn att_known(&self, digest: &str) -> Result<bool> {
        Ok(self.atts.contains_key(digest)
            || self.atts_sent.contains(digest)
            || self.db.tree.contains_key(codec::att_key(digest))?)
    }

    pub(super) fn store_att(&mut self, data: Vec<u8>) -> Result<(String, u64)> {
        let digest = att_digest(&data);
        let len = data.len() as u64;
        if !self.att_known(&digest)? {
            self.meta.external += len;
            self.atts.insert(digest.clone(), data);
        }
        Ok((digest, len))
    }

    pub(super) fn set_record(&mut self, id: &str, tree: RevTree) -> Result<()> {
        let limit = self.meta.revs_limit as usize;
        let st = self.state(id)?;
        let mut tree = tree;
        tree.stem(limit);
        st.record_mut().tree = tree;
        if !st.dirty {
            st.dirty = true;
            self.order.push(id.to_owned());
        }
        self.changed = true;
        Ok(())
    }

    /// Applies a request's documents in order. `prepared` yields, per document, what
    /// [`Prepared::compute`] made of it (`None` when it was not a candidate).
    pub(super) fn apply(
        &mut self,
        docs: Vec<(Option<String>, std::result::Result<DocUpdate, DocError>)>,
        new_edits: bool,
        mut prepared: impl Iterator<Item = Result<Option<Prepared>>>,
    ) -> Result<Vec<DocOutcome>> {
        let mut outcomes = Vec::with_capacity(docs.len());
        for (hint, doc) in docs {
            let prep = prepared.next().transpose()?.flatten();
            let outcome = match doc {
                Err(e) => DocOutcome {
                    id: hint.unwrap_or_default(),
                    result: Err(e),
                },
                Ok(mut upd) => {
                    let id = upd.id.clone();
                    let result = if upd.is_local() {
                        self.write_local(upd, new_edits)?
                    } else if new_edits {
                        let r = match prep {
                            Some(p) => self.edit_prepared(upd, p)?,
                            None => self.edit(upd)?,
                        };
                        if r.is_ok() {
                            self.mark_edited(&id);
                        }
                        r
                    } else {
                        if let Some(p) = prep {
                            upd.body = p.body;
                        }
                        self.replicate(upd)?
                    };
                    DocOutcome { id, result }
                }
            };
            outcomes.push(outcome);
            if self.pipe.is_some() && self.order.len() >= CHUNK {
                let batch = self.batch(false)?;
                let meta = self.meta.clone();
                if let Some(pipe) = &mut self.pipe {
                    pipe.send(batch, meta)?;
                }
            }
        }
        Ok(outcomes)
    }

    /// [`Writer::edit`] with the revision id and body bytes already computed for the parent
    /// the client named; falls back to computing them when the edit turns out to have
    /// another parent (recreating a deleted document).
    pub(super) fn edit_prepared(&mut self, mut upd: DocUpdate, p: Prepared) -> Result<DocResult> {
        let st = self.state(&upd.id)?;
        let tree = st.current.as_ref().map(|r| &r.tree);
        let parent = match (tree, &upd.rev) {
            (None, None) => None,
            (Some(t), None) if t.is_empty() => None,
            (Some(t), Some(r)) if !t.is_empty() => match t.find(r) {
                Some(i) if t.is_leaf(i) => Some((i, t.node(i).rev.clone())),
                _ => return Ok(Err(DocError::Conflict)),
            },
            // A conflict, or a recreation on top of a tombstone: the general path decides.
            _ => {
                upd.body = p.body;
                return self.edit(upd);
            }
        };
        if parent.as_ref().map(|(_, r)| r) != p.parent.as_ref() {
            upd.body = p.body;
            return self.edit(upd);
        }
        let mut tree = tree.cloned().unwrap_or_default();
        if tree.contains(&p.rev) {
            return Ok(Err(DocError::Conflict));
        }
        tree.add_child(parent.as_ref().map(|(i, _)| *i), p.rev.clone(), upd.deleted);
        if let Some((_, old)) = &parent {
            self.remove_body(&upd.id, old)?;
        }
        self.put_body_bytes(&upd.id, &p.rev, p.bytes)?;
        self.set_record(&upd.id, tree)?;
        Ok(Ok(p.rev.to_string()))
    }

    /// An interactive edit (`new_edits=true`).
    pub(super) fn edit(&mut self, upd: DocUpdate) -> Result<DocResult> {
        let tree = self
            .state(&upd.id)?
            .current
            .as_ref()
            .map(|r| r.tree.clone())
            .unwrap_or_default();
        let parent = match (tree.is_empty(), &upd.rev) {
            (true, None) => None,
            (true, Some(_)) => return Ok(Err(DocError::Conflict)),
            (false, None) if tree.is_deleted() => tree.winner(),
            (false, None) => return Ok(Err(DocError::Conflict)),
            (false, Some(r)) => match tree.find(r) {
                Some(i) if tree.is_leaf(i) => Some(i),
                _ => return Ok(Err(DocError::Conflict)),
            },
        };
        let parent_rev = parent.map(|i| tree.node(i).rev.clone());
        // Only stubs refer to the parent's attachments; without any, its body is not read.
        let parent_atts = match &parent_rev {
            Some(r) if !upd.attachments.is_empty() => {
                self.body(&upd.id, r)?.shift_remove("_attachments")
            }
            _ => None,
        };
        let pos = parent_rev.as_ref().map_or(1, |r| r.pos + 1);
        let mut body = upd.body;
        match self.resolve_atts(&upd.id, upd.attachments, pos, false, |name, _| {
            parent_atts.as_ref().and_then(|a| a.get(name)).cloned()
        })? {
            Ok(Some(atts)) => {
                body.insert("_attachments".into(), atts);
            }
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        let body = Value::Object(body);
        let rev = Rev::for_edit(parent_rev.as_ref(), upd.deleted, &body);
        if tree.contains(&rev) {
            return Ok(Err(DocError::Conflict));
        }
        let mut tree = tree;
        tree.add_child(parent, rev.clone(), upd.deleted);
        if let Some(p) = &parent_rev {
            self.remove_body(&upd.id, p)?;
        }
        self.put_body(&upd.id, &rev, &body)?;
        self.set_record(&upd.id, tree)?;
        Ok(Ok(rev.to_string()))
    }

    /// A replicated write (`new_edits=false`): merge the path, whatever the current leaves.
    pub(super) fn replicate(&mut self, upd: DocUpdate) -> Result<DocResult> {
        let Some(rev) = upd.rev.clone() else {
            return Ok(Err(DocError::BadRequest(
                "A document written with new_edits=false needs a _rev".into(),
            )));
        };
        let path = upd.revisions.clone().unwrap_or_else(|| vec![rev.clone()]);
        let mut tree = self
            .state(&upd.id)?
            .current
            .as_ref()
            .map(|r| r.tree.clone())
            .unwrap_or_default();
        if tree.contains(&rev) {
            return Ok(Ok(rev.to_string()));
        }
        // Stubs may refer to any attachment a current leaf has.
        let mut leaf_atts = Vec::new();
        for i in tree.leaves() {
            if let Some(Value::Object(a)) = self
                .body(&upd.id, &tree.node(i).rev)?
                .shift_remove("_attachments")
            {
                leaf_atts.push(a);
            }
        }
        let mut body = upd.body;
        let found = |name: &str, digest: Option<&str>| {
            leaf_atts.iter().find_map(|atts| {
                atts.get(name)
                    .filter(|a| {
                        digest.is_none_or(|d| a.get("digest").and_then(Value::as_str) == Some(d))
                    })
                    .cloned()
            })
        };
        match self.resolve_atts(&upd.id, upd.attachments, rev.pos, true, found)? {
            Ok(Some(atts)) => {
                body.insert("_attachments".into(), atts);
            }
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        let before: Vec<Rev> = tree
            .leaves()
            .into_iter()
            .map(|i| tree.node(i).rev.clone())
            .collect();
        if tree.merge_path(&path, upd.deleted) == Merge::AlreadyPresent {
            return Ok(Ok(rev.to_string()));
        }
        let after: HashSet<Rev> = tree
            .leaves()
            .into_iter()
            .map(|i| tree.node(i).rev.clone())
            .collect();
        for old in before.iter().filter(|r| !after.contains(r)) {
            self.remove_body(&upd.id, old)?;
        }
        self.put_body(&upd.id, &rev, &Value::Object(body))?;
        self.set_record(&upd.id, tree)?;
        Ok(Ok(rev.to_string()))
    }

    /// Turns incoming attachments into stored stub metadata, storing new data. `existing`
    /// finds the metadata a stub refers to (by name and, when given, digest). New data is of
    /// revision `pos`, as CouchDB sets it on an edit; a replicated write (`keep_revpos`)
    /// keeps the `revpos` it carries.
    pub(super) fn resolve_atts(
        &mut self,
        id: &str,
        atts: Vec<(String, AttInput)>,
        pos: u64,
        keep_revpos: bool,
        existing: impl Fn(&str, Option<&str>) -> Option<Value>,
    ) -> Result<std::result::Result<Option<Value>, DocError>> {
        if atts.is_empty() {
            return Ok(Ok(None));
        }
        let mut out = Map::new();
        for (name, att) in atts {
            let meta = match att {
                AttInput::Data {
                    content_type,
                    data,
                    revpos,
                } => {
                    let (digest, length) = self.store_att(data)?;
                    let revpos = if keep_revpos {
                        revpos.unwrap_or(pos)
                    } else {
                        pos
                    };
                    json!({"content_type": content_type, "revpos": revpos,
                           "digest": digest, "length": length, "stub": true})
                }
                AttInput::Stub { digest, .. } => match existing(&name, digest.as_deref()) {
                    Some(m) => m,
                    None => return Ok(Err(DocError::MissingStub(format!("{id}/{name}")))),
                },
                AttInput::Follows { .. } => {
                    return Ok(Err(DocError::BadRequest(format!(
                        "attachment {name} says it follows, but no multipart body carried it"
                    ))))
                }
            };
            out.insert(name, meta);
        }
        Ok(Ok(Some(Value::Object(out))))
    }

    /// Assigns sequences, fixes counters and applies everything not applied yet as one sled
    /// batch (through the applier, waiting for it, when there is one).
    pub(super) fn finish(&mut self) -> Result<bool> {
        if !self.changed {
            return Ok(false);
        }
        let batch = self.batch(true)?;
        match &mut self.pipe {
            Some(pipe) => {
                pipe.send(batch, self.meta.clone())?;
                pipe.drain()?;
            }
            None => self.db.tree.apply_batch(batch)?,
        }
        Ok(true)
    }

    /// The sled batch for the documents changed since the last one, with their sequences,
    /// by-sequence runs, the attachment data written so far and the counters; with `all`, also
    /// `_local` documents and purge infos (only a whole write has those).
    pub(super) fn batch(&mut self, all: bool) -> Result<sled::Batch> {
        let mut batch = sled::Batch::default();
        let mut purged_whole = 0;
        // By-sequence index: the sequences this batch retires, and its new (seq, id) pairs.
        let mut retired = Vec::new();
        let mut fresh: Vec<(u64, String)> = Vec::new();
        for id in std::mem::take(&mut self.order) {
            let Some(st) = self.docs.get_mut(&id) else {
                continue;
            };
            let (was, was_deleted) = match st.original {
                Some(r) => (true, r.deleted),
                None => (false, false),
            };
            if let Some(orig) = st.original {
                retired.push(orig.seq);
            }
            match &mut st.current {
                Some(rec) => {
                    self.meta.update_seq += 1;
                    rec.seq = self.meta.update_seq;
                    batch.insert(codec::doc_key(&id), rec.encode());
                    fresh.push((rec.seq, id.clone()));
                    let deleted = rec.tree.is_deleted();
                    if !was || was_deleted != deleted {
                        if was {
                            dec(&mut self.meta, was_deleted);
                        }
                        if deleted {
                            self.meta.del_count += 1;
                        } else {
                            self.meta.doc_count += 1;
                        }
                    }
                }
                None => {
                    batch.remove(codec::doc_key(&id));
                    if was {
                        dec(&mut self.meta, was_deleted);
                    }
                    purged_whole += 1;
                }
            }
            st.original = st.current.as_ref().map(|r| Stored {
                seq: r.seq,
                deleted: r.tree.is_deleted(),
            });
            st.dirty = false;
        }
        // A purge that removed whole documents still moves the update sequence.
        self.meta.update_seq += purged_whole;
        if !retired.is_empty() {
            // Retiring reads runs from sled, which must hold every chunk handed over so far.
            if let Some(pipe) = &mut self.pipe {
                pipe.drain()?;
            }
        }
        self.retire_seqs(&mut batch, retired)?;
        for run in fresh.chunks(codec::RUN_MAX) {
            let run = codec::Run {
                items: run.to_vec(),
            };
            batch.insert(&codec::seq_key(run.items[0].0)[..], run.encode());
        }
        for (digest, data) in self.atts.drain() {
            batch.insert(codec::att_key(&digest), data);
            if self.pipe.is_some() {
                self.atts_sent.insert(digest);
            }
        }
        if all {
            self.finish_extras(&mut batch)?;
        }
        batch.insert(codec::meta_key("meta"), encode_meta(&self.meta)?);
        Ok(batch)
    }

    /// `_local` documents and purge infos: written with the last batch of a write.
    pub(super) fn finish_extras(&mut self, batch: &mut sled::Batch) -> Result<()> {
        for (id, doc) in self.locals.drain() {
            match doc {
                Some(d) => batch.insert(
                    codec::local_key(&id),
                    super::super::error::encode("a _local document", &d)?,
                ),
                None => batch.remove(codec::local_key(&id)),
            }
        }
        if !self.purge_infos.is_empty() {
            let first = self.meta.purge_seq + 1 - self.purge_infos.len() as u64;
            for (i, info) in self.purge_infos.drain(..).enumerate() {
                batch.insert(
                    &codec::purge_key(first + i as u64)[..],
                    super::super::error::encode("a purge info", &info)?,
                );
            }
            // Keep at most `purged_infos_limit` purge infos.
            let keep_from = self
                .meta
                .purge_seq
                .saturating_sub(self.meta.purged_infos_limit)
                + 1;
            for kv in self
                .db
                .tree
                .range(codec::purge_key(0)..codec::purge_key(keep_from))
            {
                let (k, _) = kv?;
                batch.remove(k);
            }
        }
        Ok(())
    }
}
