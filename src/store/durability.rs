//! Group commit: a write is acknowledged only after sled has flushed it to disk, and writers
//! that arrive while a flush is running share the next one instead of queueing one each.
//!
//! Protocol: a writer applies its batch, then takes a ticket. The flush that *starts* after the
//! ticket was taken covers the batch (sled flushes everything applied before the flush call).
//! One writer at a time is the leader and runs the flush; the others wait for it.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::error::{Result, StoreError};

pub struct GroupCommit {
    db: sled::Db,
    state: Mutex<State>,
    done: Condvar,
    room: Room,
}

/// The free space writes must leave on the data folder's filesystem. sled, once a write to
/// its files fails for want of space, refuses everything after, reads included, until it is
/// reopened; so settee refuses writes (507) while free space is below the reserve, and reads,
/// feeds and replications out keep working. Writes resume by themselves once space is freed.
struct Room {
    path: PathBuf,
    reserve: u64,
    /// The last reading and when it was taken (the filesystem is asked at most every 100 ms).
    last: Mutex<Option<(Instant, u64)>>,
}

impl Room {
    fn check(&self) -> Result<()> {
        if self.reserve == 0 {
            return Ok(());
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let free = match *last {
            Some((at, free)) if at.elapsed() < Duration::from_millis(100) => free,
            _ => {
                let Some(free) = free_bytes(&self.path) else {
                    return Ok(());
                };
                *last = Some((Instant::now(), free));
                free
            }
        };
        if free < self.reserve {
            return Err(StoreError::DiskFull {
                path: self.path.display().to_string(),
                free,
                reserve: self.reserve,
            });
        }
        Ok(())
    }
}

/// Bytes an unprivileged writer may still use on the filesystem holding `path`.
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a `statvfs` the call fills in.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
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
    /// `reserve`: bytes of free space on `path`'s filesystem below which writes are refused
    /// (0: never).
    pub fn new(db: sled::Db, path: PathBuf, reserve: u64) -> GroupCommit {
        GroupCommit {
            db,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            room: Room {
                path,
                reserve,
                last: Mutex::new(None),
            },
        }
    }

    /// `Err(DiskFull)` while the data folder's filesystem has less free space than the
    /// reserve: called before a write takes any lock.
    pub fn room_to_write(&self) -> Result<()> {
        self.room.check()
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
        let gc = Arc::new(GroupCommit::new(
            db.clone(),
            std::path::PathBuf::from("."),
            0,
        ));
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
