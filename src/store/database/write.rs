//! The write pipeline: a request's documents parsed (`bulk_docs`), then written by one
//! [`Writer`] under the database's lock; a big interactive write overlaps three threads:
//! this one grows revision trees, a helper hashes revision ids ([`Prepared`]), and an
//! [`Applier`] hands finished chunks to sled. Nothing is acknowledged before [`Database::publish`]
//! made it durable.

use std::sync::Mutex;

use serde_json::Value;

use super::threads::{Applier, Prepared};
use super::writer::Writer;
use super::*;

impl Database {
    /// `_bulk_docs`: parses and writes a batch atomically, one outcome per input, in order.
    pub fn bulk_docs(&self, docs: Vec<Value>, new_edits: bool) -> Result<Vec<DocOutcome>> {
        self.warn_of_validation(&docs);
        let parsed = docs
            .into_iter()
            .map(|d| {
                let hint = d.get("_id").and_then(Value::as_str).map(str::to_owned);
                let default_id = new_edits.then(crate::ids::new_uuid);
                (hint, DocUpdate::from_json(d, default_id))
            })
            .collect();
        self.write(parsed, new_edits)
    }

    /// Design documents with `validate_doc_update` are stored and replicated as they are
    /// (design documents must interoperate) but never run: the operator is told once.
    pub(super) fn warn_of_validation(&self, docs: &[Value]) {
        if self.vdu_warned.load(Ordering::Relaxed) {
            return;
        }
        let found = docs.iter().find(|d| {
            d.get("validate_doc_update").is_some()
                && d.get("_id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.starts_with("_design/"))
        });
        if let Some(d) = found {
            if !self.vdu_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    db = %self.name,
                    ddoc = %d["_id"].as_str().unwrap_or_default(),
                    "this design document has a validate_doc_update function: settee stores and replicates it but does not run it, so writes it would refuse are accepted"
                );
            }
        }
    }

    /// Writes already-parsed documents (the multipart path parses attachments itself).
    /// Each entry carries the id to report if parsing failed.
    pub fn write(
        &self,
        docs: Vec<(Option<String>, std::result::Result<DocUpdate, DocError>)>,
        new_edits: bool,
    ) -> Result<Vec<DocOutcome>> {
        self.commit.room_to_write()?;
        let mut meta = self.lock()?;
        let mut w = Writer::new(self, meta.clone(), docs.len());
        let outcomes = if new_edits && docs.len() >= PREPARE_MIN {
            // Revision ids and body bytes on a second thread, while this one looks documents
            // up and grows their trees: the two halves of a big interactive write overlap.
            let mut docs = docs;
            let jobs: Vec<_> = docs.iter_mut().map(|(_, d)| Prepared::job(d)).collect();
            // Borrowed by the helper, so that if it cannot start the jobs are still here.
            let jobs = Mutex::new(jobs);
            let take = || std::mem::take(&mut *jobs.lock().unwrap_or_else(|e| e.into_inner()));
            std::thread::scope(|s| {
                // In groups: a channel message per document cost more in wake-ups than the
                // hashing it carried.
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Result<Option<Prepared>>>>(8);
                let helper = std::thread::Builder::new()
                    .name("settee-hash".into())
                    .spawn_scoped(s, move || {
                        let mut group = Vec::with_capacity(PREPARE_GROUP);
                        for job in take() {
                            group.push(job.map(Prepared::compute).transpose());
                            if group.len() == PREPARE_GROUP {
                                let full = std::mem::replace(
                                    &mut group,
                                    Vec::with_capacity(PREPARE_GROUP),
                                );
                                if tx.send(full).is_err() {
                                    return;
                                }
                            }
                        }
                        if !group.is_empty() {
                            let _ = tx.send(group);
                        }
                    });
                if helper.is_err() {
                    let inline = take()
                        .into_iter()
                        .map(|j| j.map(Prepared::compute).transpose());
                    let out = w.apply(docs, new_edits, inline)?;
                    return Ok((out, w.finish()?));
                }
                let mut group = Vec::new().into_iter();
                let prepared = std::iter::from_fn(move || loop {
                    if let Some(p) = group.next() {
                        return Some(p);
                    }
                    match rx.recv() {
                        Ok(g) => group = g.into_iter(),
                        Err(_) => {
                            return Some(Err(StoreError::Bug(
                                "revision hashing thread stopped".into(),
                            )))
                        }
                    }
                });
                // sled applies one batch on one thread at a time; while it applies a chunk,
                // this thread builds the next one and the helper hashes further ahead. Reads
                // wait for sled's batches (a lock inside sled), so every record this write
                // needs is read first, while the helper starts hashing.
                for (_, d) in &docs {
                    if let Ok(u) = d {
                        if !u.is_local() {
                            w.state(&u.id)?;
                        }
                    }
                }
                w.pipe = Applier::start(s, &self.tree);
                let res = w
                    .apply(docs, new_edits, prepared)
                    .and_then(|out| Ok((out, w.finish()?)));
                let applied = w.pipe.take().and_then(Applier::stop);
                if res.is_err() {
                    // Chunks sled applied before the failure are in the tree: later writes
                    // must number after them.
                    if let Some(m) = applied {
                        *meta = m;
                    }
                }
                res
            })
        } else {
            w.apply(docs, new_edits, std::iter::repeat_with(|| Ok(None)))
                .and_then(|out| Ok((out, w.finish()?)))
        };
        let (outcomes, changed) = outcomes?;
        *meta = w.meta;
        let seq = meta.update_seq;
        drop(meta);
        if changed {
            self.publish(seq)?;
        }
        Ok(outcomes)
    }

    /// Makes an applied batch durable, then wakes changes listeners: a feed never shows a
    /// write that could still be lost.
    pub(super) fn publish(&self, seq: u64) -> Result<()> {
        self.commit.commit()?;
        self.updates.send_if_modified(|s| {
            let bumped = *s < seq;
            *s = (*s).max(seq);
            bumped
        });
        Ok(())
    }
}

/// Interactive writes of at least this many documents hash revisions on a second thread.
const PREPARE_MIN: usize = 64;

/// Documents the hashing thread hands over at a time.
const PREPARE_GROUP: usize = 32;
