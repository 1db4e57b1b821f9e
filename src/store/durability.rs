//! Group commit: a write is acknowledged only after sled has flushed it to disk, and writers
//! that arrive while a flush is running share the next one instead of queueing one each.
//!
//! Protocol: a writer applies its batch, then takes a ticket. The flush that *starts* after the
//! ticket was taken covers the batch (sled flushes everything applied before the flush call).
//! One writer at a time is the leader and runs the flush; the others wait for it.

use std::sync::{Condvar, Mutex};

use super::error::{Result, StoreError};

pub struct GroupCommit {
    db: sled::Db,
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    /// Tickets handed out so far.
    issued: u64,
    /// Every ticket up to this one is on disk.
    durable: u64,
    flushing: bool,
    flushes: u64,
}

impl GroupCommit {
    pub fn new(db: sled::Db) -> GroupCommit {
        GroupCommit {
            db,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        }
    }

    /// Blocks until everything this thread applied to sled before the call is on disk.
    pub fn commit(&self) -> Result<()> {
        let mut st = self.lock();
        st.issued += 1;
        let ticket = st.issued;
        loop {
            if st.durable >= ticket {
                return Ok(());
            }
            if st.flushing {
                st = self
                    .done
                    .wait(st)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            st.flushing = true;
            let covers = st.issued;
            drop(st);
            let res = self.db.flush();
            st = self.lock();
            st.flushing = false;
            if res.is_ok() {
                st.durable = st.durable.max(covers);
                st.flushes += 1;
            }
            self.done.notify_all();
            res.map_err(StoreError::from)?;
        }
    }

    /// How many flushes have run: fewer than commits when writers shared them.
    pub fn flushes(&self) -> u64 {
        self.lock().flushes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_writers_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let gc = Arc::new(GroupCommit::new(db.clone()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (gc, db) = (gc.clone(), db.clone());
                std::thread::spawn(move || {
                    for i in 0..25u32 {
                        db.insert(format!("{t}-{i}"), &i.to_le_bytes()).unwrap();
                        gc.commit().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(gc.flushes() >= 1);
        assert!(gc.flushes() <= 200, "each commit ran at most one flush");
        assert_eq!(db.len(), 200);
    }
}
