//! What a running replication reports: CouchDB's counters and progress, shared lock-free with
//! status readers (`_active_tasks`, `_scheduler/*`, the progress bar).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde_json::{json, Value};

/// CouchDB's replication counters (`couch_replicator_stats`), public names.
#[derive(Debug, Default)]
pub struct Stats {
    pub revisions_checked: AtomicU64,
    pub missing_revisions_found: AtomicU64,
    pub docs_read: AtomicU64,
    pub docs_written: AtomicU64,
    pub doc_write_failures: AtomicU64,
    pub bulk_get_docs: AtomicU64,
    pub bulk_get_attempts: AtomicU64,
    /// Target copies deleted or purged because their document stopped matching (settee).
    pub docs_removed: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub revisions_checked: u64,
    pub missing_revisions_found: u64,
    pub docs_read: u64,
    pub docs_written: u64,
    pub doc_write_failures: u64,
    pub bulk_get_docs: u64,
    pub bulk_get_attempts: u64,
    pub docs_removed: u64,
}

impl Stats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> Counts {
        Counts {
            revisions_checked: self.revisions_checked.load(Relaxed),
            missing_revisions_found: self.missing_revisions_found.load(Relaxed),
            docs_read: self.docs_read.load(Relaxed),
            docs_written: self.docs_written.load(Relaxed),
            doc_write_failures: self.doc_write_failures.load(Relaxed),
            bulk_get_docs: self.bulk_get_docs.load(Relaxed),
            bulk_get_attempts: self.bulk_get_attempts.load(Relaxed),
            docs_removed: self.docs_removed.load(Relaxed),
        }
    }
}

impl Counts {
    /// Counters accumulated since `before`.
    pub fn since(&self, before: &Counts) -> Counts {
        Counts {
            revisions_checked: self.revisions_checked - before.revisions_checked,
            missing_revisions_found: self.missing_revisions_found - before.missing_revisions_found,
            docs_read: self.docs_read - before.docs_read,
            docs_written: self.docs_written - before.docs_written,
            doc_write_failures: self.doc_write_failures - before.doc_write_failures,
            bulk_get_docs: self.bulk_get_docs - before.bulk_get_docs,
            bulk_get_attempts: self.bulk_get_attempts - before.bulk_get_attempts,
            docs_removed: self.docs_removed - before.docs_removed,
        }
    }

    /// CouchDB's counters, plus settee's `docs_removed` once something was removed (so the
    /// shape of replications without `unmatched` stays CouchDB's).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "revisions_checked": self.revisions_checked,
            "missing_revisions_found": self.missing_revisions_found,
            "docs_read": self.docs_read,
            "docs_written": self.docs_written,
            "doc_write_failures": self.doc_write_failures,
            "bulk_get_docs": self.bulk_get_docs,
            "bulk_get_attempts": self.bulk_get_attempts,
        });
        if self.docs_removed > 0 {
            v["docs_removed"] = json!(self.docs_removed);
        }
        v
    }
}

/// Sequence progress of one job.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Newest sequence the changes reader has seen.
    pub source_seq: Value,
    /// Highest sequence below which every change is written.
    pub through_seq: Value,
    pub checkpointed_source_seq: Value,
    /// When the last checkpoint was recorded on both sides (`None` before the first).
    pub checkpointed_at: Option<std::time::SystemTime>,
    pub changes_pending: Option<u64>,
    /// Which side applies the filter: `"source"` (pushed into `_changes`) or `"settee"`.
    pub filtered_by: Option<&'static str>,
    pub replication_id: Option<String>,
    /// Documents that stopped matching but stayed on the target because another source
    /// wrote them (the newest few).
    pub kept: Vec<String>,
    /// Documents not sent because they were projections of the target's own revisions
    /// (a field list in both directions; the newest few).
    pub loops: Vec<String>,
    /// The last delivery to each webhook of the job's document (`notify`).
    pub notifications: Vec<Value>,
}

impl Progress {
    const KEPT: usize = 20;

    pub fn note_kept(&mut self, ids: Vec<String>) {
        note(&mut self.kept, ids);
    }

    pub fn note_loops(&mut self, ids: Vec<String>) {
        note(&mut self.loops, ids);
    }
}

/// Adds ids to a list of the newest [`Progress::KEPT`], each once.
fn note(list: &mut Vec<String>, ids: Vec<String>) {
    for id in ids {
        list.retain(|k| *k != id);
        list.push(id);
    }
    let extra = list.len().saturating_sub(Progress::KEPT);
    list.drain(..extra);
}

/// Counters plus progress, owned by whoever runs the job and read by status endpoints. It
/// outlives restarts of the job, so counters keep growing across them as CouchDB's do.
#[derive(Debug, Default)]
pub struct JobState {
    pub stats: Stats,
    pub progress: Mutex<Progress>,
    /// Set while requests to a peer are failing and being retried: the reason (credentials
    /// redacted) and how many retries so far; cleared by the next request that succeeds.
    trouble: Mutex<Option<(String, u64)>>,
    troubled: std::sync::atomic::AtomicBool,
}

impl JobState {
    pub fn progress(&self) -> Progress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// A request failed and is being retried.
    pub fn note_retry(&self, reason: String) {
        if let Ok(mut t) = self.trouble.lock() {
            let n = t.as_ref().map_or(0, |(_, n)| *n);
            *t = Some((reason, n + 1));
            self.troubled.store(true, Relaxed);
        }
    }

    /// Whether requests to a peer are failing right now.
    pub fn is_troubled(&self) -> bool {
        self.troubled.load(Relaxed)
    }

    /// A request succeeded: the job is healthy again.
    pub fn clear_trouble(&self) {
        if self.troubled.swap(false, Relaxed) {
            if let Ok(mut t) = self.trouble.lock() {
                *t = None;
            }
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut Progress)) {
        if let Ok(mut p) = self.progress.lock() {
            f(&mut p);
        }
    }

    /// CouchDB's `info` object for `_scheduler/*` and the fields of `_active_tasks`.
    pub fn info_json(&self) -> Value {
        let p = self.progress();
        let mut v = self.stats.snapshot().to_json();
        v["changes_pending"] = json!(p.changes_pending);
        v["checkpointed_source_seq"] = p.checkpointed_source_seq;
        v["source_seq"] = p.source_seq;
        v["through_seq"] = p.through_seq;
        if let Some(f) = p.filtered_by {
            v["filtered_by"] = json!(f);
        }
        if !p.kept.is_empty() {
            v["kept"] = json!(p.kept);
        }
        if !p.loops.is_empty() {
            v["loops"] = json!(p.loops);
        }
        if !p.notifications.is_empty() {
            v["notifications"] = json!(p.notifications);
        }
        if let Some((reason, n)) = self.trouble.lock().ok().and_then(|t| t.clone()) {
            v["error"] = json!(reason);
            v["retries"] = json!(n);
        }
        v
    }
}
