//! One CouchDB database inside a sled tree. [`Database`] is the facade: its public operations
//! are all the rest of settee sees; what they are made of lives in private modules named for
//! what they hold:
//! - `write`: the write pipeline (parsing a request, running a write, publishing it);
//! - `threads`: the hashing helper's work and the applier thread of a big write;
//! - `writer`: one write batch, where edits, replicated writes and attachments are decided;
//! - `reads`: documents by id and revision, `open_revs`, attachments, `_revs_diff`;
//! - `render`: CouchDB's JSON for a leaf revision;
//! - `by_seq`: the by-sequence index behind `_changes`;
//! - `local`: `_local` documents;
//! - `purge`: purge and purge infos.
//!
//! Invariants:
//! - every sled batch leaves the database consistent: a document's record (with its bodies),
//!   its by-seq entry, the attachment data it refers to and the counters change together or
//!   not at all. A write request is one batch, except a big interactive one, which the writer
//!   hands over in chunks to an applier thread (see `threads::Applier`); none of it is
//!   acknowledged before all of it is on disk, as with CouchDB, whose `_bulk_docs` is not
//!   atomic either;
//! - writers are serialized by `meta`'s mutex; readers never take it;
//! - a body is stored, inside the document record, for every leaf revision and no other;
//! - a document has exactly one entry in the by-seq index (inside a run of entries, see
//!   [`codec::Run`]), at its record's `seq`;
//! - a write is acknowledged only after the group commit put it on disk.

mod by_seq;
mod local;
mod purge;
mod reads;
mod render;
mod threads;
mod write;
mod writer;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use super::codec::{self, DocRecord};
use super::doc::{AttInput, DocUpdate};
use super::durability::GroupCommit;
use super::error::{DocError, Result, StoreError};
use super::rev::Rev;
use super::rev_tree::{Merge, RevTree};
use super::stored::{Doc, Leaf};

pub const DEFAULT_REVS_LIMIT: u64 = 1000;

pub const DEFAULT_PURGED_INFOS_LIMIT: u64 = 1000;

/// Counters and limits, persisted under `m meta` in every write batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    update_seq: u64,
    purge_seq: u64,
    doc_count: u64,
    del_count: u64,
    revs_limit: u64,
    purged_infos_limit: u64,
    /// Bytes of leaf bodies and attachment data: CouchDB's `sizes.external`.
    external: u64,
}

impl Default for Meta {
    fn default() -> Meta {
        Meta {
            update_seq: 0,
            purge_seq: 0,
            doc_count: 0,
            del_count: 0,
            revs_limit: DEFAULT_REVS_LIMIT,
            purged_infos_limit: DEFAULT_PURGED_INFOS_LIMIT,
            external: 0,
        }
    }
}

/// Up to this many, [`Database::pending`] counts exactly.
pub const PENDING_EXACT: usize = 1000;

/// `GET /db` in store terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbInfo {
    pub name: String,
    pub update_seq: u64,
    pub purge_seq: u64,
    pub doc_count: u64,
    pub doc_del_count: u64,
    pub external_size: u64,
    pub instance_start_time: String,
}

/// The answer for one document of a write batch.
#[derive(Clone, Debug, PartialEq)]
pub struct DocOutcome {
    pub id: String,
    /// The new revision, or for a replicated write the revision it carried.
    pub result: std::result::Result<String, DocError>,
}

/// Which attachment bodies a read includes (the rest are stubs).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum AttMode {
    #[default]
    Stubs,
    All,
    /// Data only for attachments newer than the newest of these revisions the doc descends from.
    Since(Vec<Rev>),
}

#[derive(Clone, Debug, Default)]
pub struct ReadOpts {
    pub revs: bool,
    pub revs_info: bool,
    pub conflicts: bool,
    pub deleted_conflicts: bool,
    pub local_seq: bool,
    pub attachments: AttMode,
}

/// A sled range, forwards or reversed.
type KvIter = Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>>;

/// A document id with some of its revisions (purge requests and answers).
pub type IdRevs = (String, Vec<Rev>);

/// One row of `_revs_diff`.
#[derive(Clone, Debug, PartialEq)]
pub struct RevsDiff {
    pub id: String,
    pub missing: Vec<Rev>,
    pub possible_ancestors: Vec<Rev>,
}

/// One entry of the changes feed: a document at its latest sequence.
#[derive(Clone, Debug)]
pub struct Change {
    pub seq: u64,
    pub id: String,
    pub doc: Doc,
}

/// Attachment metadata as stored in a body's `_attachments` (always in stub form).
#[derive(Clone, Debug)]
pub struct AttMeta {
    pub content_type: String,
    pub digest: String,
    pub length: u64,
    pub revpos: u64,
}

pub struct Database {
    name: String,
    tree: sled::Tree,
    instance_start_time: String,
    meta: Mutex<Meta>,
    commit: Arc<GroupCommit>,
    updates: watch::Sender<u64>,
    dropped: AtomicBool,
    /// Whether the log already says this database holds a `validate_doc_update` settee
    /// does not run (once per database and process).
    vdu_warned: AtomicBool,
}

impl Database {
    pub(super) fn open(
        name: String,
        tree: sled::Tree,
        instance_start_time: String,
        commit: Arc<GroupCommit>,
    ) -> Result<Database> {
        let meta: Meta = match tree.get(codec::meta_key("meta"))? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("database meta: {e}")))?,
            None => Meta::default(),
        };
        let (updates, _) = watch::channel(meta.update_seq);
        Ok(Database {
            name,
            tree,
            instance_start_time,
            meta: Mutex::new(meta),
            commit,
            updates,
            dropped: AtomicBool::new(false),
            vdu_warned: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn instance_start_time(&self) -> &str {
        &self.instance_start_time
    }

    /// Marks the database deleted and wakes every subscriber, so open feeds and longpolls
    /// notice at once (they find it dropped) instead of waiting for a change that never comes.
    pub(super) fn mark_dropped(&self) {
        self.dropped.store(true, Ordering::SeqCst);
        self.updates.send_modify(|_| {});
    }

    /// `true` once the database was deleted: this handle answers nothing any more, and one
    /// created later under the same name is another database.
    pub fn is_dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Meta>> {
        if self.dropped.load(Ordering::SeqCst) {
            return Err(StoreError::DbNotFound);
        }
        Ok(self.meta.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Wakes up on every committed change of `update_seq`.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.updates.subscribe()
    }

    pub fn update_seq(&self) -> u64 {
        *self.updates.borrow()
    }

    pub fn info(&self) -> Result<DbInfo> {
        let m = self.lock()?.clone();
        Ok(DbInfo {
            name: self.name.clone(),
            update_seq: m.update_seq,
            purge_seq: m.purge_seq,
            doc_count: m.doc_count,
            doc_del_count: m.del_count,
            external_size: m.external,
            instance_start_time: self.instance_start_time.clone(),
        })
    }

    /// A single interactive write (`PUT /db/doc`), surfacing the per-doc error.
    pub fn put(&self, doc: DocUpdate) -> Result<String> {
        let out = self.write(vec![(Some(doc.id.clone()), Ok(doc))], true)?;
        out.into_iter()
            .next()
            .map(|o| o.result.map_err(StoreError::Doc))
            .unwrap_or_else(|| Err(StoreError::Bug("empty write result".into())))
    }

    pub fn revs_limit(&self) -> Result<u64> {
        Ok(self.lock()?.revs_limit)
    }

    pub fn set_revs_limit(&self, limit: u64) -> Result<()> {
        self.set_meta(|m| m.revs_limit = limit.max(1))
    }

    pub fn purged_infos_limit(&self) -> Result<u64> {
        Ok(self.lock()?.purged_infos_limit)
    }

    pub fn set_purged_infos_limit(&self, limit: u64) -> Result<()> {
        self.set_meta(|m| m.purged_infos_limit = limit.max(1))
    }

    fn set_meta(&self, f: impl FnOnce(&mut Meta)) -> Result<()> {
        let mut meta = self.lock()?;
        let mut next = meta.clone();
        f(&mut next);
        self.tree
            .insert(codec::meta_key("meta"), encode_meta(&next)?)?;
        *meta = next;
        drop(meta);
        self.commit.commit()
    }

    /// The `_security` object, if one was ever set.
    pub fn security(&self) -> Result<Option<Value>> {
        match self.tree.get(codec::meta_key("security"))? {
            Some(b) => {
                Ok(Some(serde_json::from_slice(&b).map_err(|_| {
                    StoreError::Corrupt("security object".into())
                })?))
            }
            None => Ok(None),
        }
    }

    pub fn set_security(&self, sec: &Value) -> Result<()> {
        let _guard = self.lock()?;
        self.tree.insert(
            codec::meta_key("security"),
            super::error::encode("_security", sec)?,
        )?;
        drop(_guard);
        self.commit.commit()
    }

    /// Drops attachment data no leaf refers to any more. Returns how many were removed.
    pub fn compact(&self) -> Result<usize> {
        let mut meta = self.lock()?;
        let mut referenced = HashSet::new();
        for r in self.docs_from("", false) {
            let (_, doc) = r?;
            for v in doc.rec.bodies() {
                if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(v) {
                    if let Some(Value::Object(atts)) = body.get("_attachments") {
                        for att in atts.values() {
                            if let Some(d) = att.get("digest").and_then(Value::as_str) {
                                referenced.insert(d.to_owned());
                            }
                        }
                    }
                }
            }
        }
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        let mut freed = 0u64;
        for kv in self.tree.scan_prefix([codec::ATT]) {
            let (k, v) = kv?;
            let digest = String::from_utf8_lossy(&k[1..]).into_owned();
            if !referenced.contains(&digest) {
                batch.remove(k);
                removed += 1;
                freed += v.len() as u64;
            }
        }
        if removed > 0 {
            let mut next = meta.clone();
            next.external = next.external.saturating_sub(freed);
            batch.insert(codec::meta_key("meta"), encode_meta(&next)?);
            self.tree.apply_batch(batch)?;
            *meta = next;
            drop(meta);
            self.commit.commit()?;
        }
        Ok(removed)
    }
}

/// The update sequence stored in a database's tree, without opening it as a [`Database`].
pub(super) fn stored_update_seq(tree: &sled::Tree) -> Result<u64> {
    Ok(match tree.get(codec::meta_key("meta"))? {
        Some(bytes) => {
            serde_json::from_slice::<Meta>(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("database meta: {e}")))?
                .update_seq
        }
        None => 0,
    })
}

fn encode_meta(m: &Meta) -> Result<Vec<u8>> {
    super::error::encode("database meta", m)
}

/// `md5-<base64>` of attachment bytes, CouchDB's digest form.
pub fn att_digest(data: &[u8]) -> String {
    format!(
        "md5-{}",
        base64::engine::general_purpose::STANDARD.encode(Md5::digest(data))
    )
}

fn dec(meta: &mut Meta, deleted: bool) {
    if deleted {
        meta.del_count = meta.del_count.saturating_sub(1);
    } else {
        meta.doc_count = meta.doc_count.saturating_sub(1);
    }
}
