//! The helper threads of a big interactive write: what the hashing helper computes for an edit
//! ([`Prepared`]) and the [`Applier`] that hands finished chunks to sled. Used by the write
//! pipeline (`write`) and the batch being built (`writer`).

use serde_json::{Map, Value};

use super::*;

/// What an interactive edit without attachments needs no database state for: its revision id,
/// given the parent the client named, and its body as stored.
pub(super) struct Prepared {
    pub(super) parent: Option<Rev>,
    pub(super) rev: Rev,
    pub(super) bytes: Vec<u8>,
    /// Kept for the rare edit whose real parent differs from the named one.
    pub(super) body: Map<String, Value>,
}

impl Prepared {
    /// Takes the body out of an edit that qualifies, for [`Prepared::compute`] on another
    /// thread; [`Writer::apply`] hands it back.
    pub(super) fn job(
        doc: &mut std::result::Result<DocUpdate, DocError>,
    ) -> Option<(Option<Rev>, bool, Map<String, Value>)> {
        match doc {
            Ok(u) if !u.is_local() && u.attachments.is_empty() => {
                Some((u.rev.clone(), u.deleted, std::mem::take(&mut u.body)))
            }
            _ => None,
        }
    }

    pub(super) fn compute(
        (parent, deleted, body): (Option<Rev>, bool, Map<String, Value>),
    ) -> Result<Prepared> {
        let body = Value::Object(body);
        let rev = Rev::for_edit(parent.as_ref(), deleted, &body);
        let bytes = super::super::error::encode("a document body", &body)?;
        let Value::Object(body) = body else {
            unreachable!("built as an object above")
        };
        Ok(Prepared {
            parent,
            rev,
            bytes,
            body,
        })
    }
}

/// Documents per chunk a big interactive write hands to its [`Applier`].
pub(super) const CHUNK: usize = 2 * codec::RUN_MAX;

/// Applies a big write's sled batches, in order, on a thread of its own: sled applies one batch
/// at a time on the calling thread, so without it the writer (and the hashing helper) would
/// wait for sled at the end of every write. Every batch is consistent on its own (see the
/// module invariants); `stop` reports the counters of the last batch sled applied, so that a
/// write failing half-way leaves the database's counters where sled has them.
pub(super) struct Applier {
    batches: std::sync::mpsc::SyncSender<(sled::Batch, Meta)>,
    acks: std::sync::mpsc::Receiver<Result<Meta>>,
    pending: usize,
    applied: Option<Meta>,
}

impl Applier {
    /// `None` when the thread cannot start: the write then applies one batch itself.
    pub(super) fn start<'s>(
        scope: &'s std::thread::Scope<'s, '_>,
        tree: &'s sled::Tree,
    ) -> Option<Applier> {
        let (batches, rx) = std::sync::mpsc::sync_channel::<(sled::Batch, Meta)>(2);
        let (ack, acks) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("settee-apply".into())
            .spawn_scoped(scope, move || {
                for (batch, meta) in rx {
                    let res = tree.apply_batch(batch).map(|()| meta);
                    let failed = res.is_err();
                    if ack.send(res.map_err(StoreError::from)).is_err() || failed {
                        break;
                    }
                }
            })
            .ok()?;
        Some(Applier {
            batches,
            acks,
            pending: 0,
            applied: None,
        })
    }

    pub(super) fn send(&mut self, batch: sled::Batch, meta: Meta) -> Result<()> {
        if self.batches.send((batch, meta)).is_err() {
            // The thread stopped on an error: report that error.
            self.drain()?;
            return Err(StoreError::Bug("the batch applier stopped".into()));
        }
        self.pending += 1;
        Ok(())
    }

    /// Waits until sled has applied every batch sent so far.
    pub(super) fn drain(&mut self) -> Result<()> {
        while self.pending > 0 {
            let ack = self
                .acks
                .recv()
                .map_err(|_| StoreError::Bug("the batch applier stopped".into()))?;
            self.pending -= 1;
            self.applied = Some(ack?);
        }
        Ok(())
    }

    /// Ends the thread; the counters of the last batch sled applied, if any.
    pub(super) fn stop(self) -> Option<Meta> {
        let Applier {
            batches,
            acks,
            mut applied,
            ..
        } = self;
        drop(batches);
        for m in acks.iter().flatten() {
            applied = Some(m);
        }
        applied
    }
}
