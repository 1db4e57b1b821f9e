//! The scheduler: replication documents in `_replicator` and `POST /_replicate` calls become
//! jobs; it runs up to `max_jobs` of them, rotates the rest fairly, retries crashed ones with
//! capped exponential backoff, and writes terminal states back to their documents.
//!
//! One task (started by [`Scheduler::start`]) owns every decision: it follows `_replicator`'s
//! changes, receives job endings, and ticks. Status readers take the state lock briefly.
//! Invariants: a job id runs at most once at a time; a document's own state write-backs never
//! restart its job; every job task is owned by the scheduler's `JoinSet` and is cancelled
//! (with a final checkpoint) on shutdown.

pub mod docs;
pub mod notify;
pub mod options;
pub mod rotation;
pub mod status;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::replicator::{self, id::replication_id, Env, JobState, Outcome, ReplError, Spec};
use crate::store::{ReadOpts, Store};
use docs::REPLICATOR_DB;
use options::{DocOptions, Transition};

/// CouchDB's `[replicator]` knobs.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub max_jobs: usize,
    pub interval: Duration,
    pub max_churn: usize,
    /// First retry delay after a crash; doubles per consecutive crash up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Where e-mail notifications go out (`--smtp-url`); none configured: e-mail
    /// notifications fail with that reason in `info.notifications`.
    pub smtp: Option<notify::Smtp>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_jobs: 500,
            interval: Duration::from_secs(60),
            max_churn: 20,
            // CouchDB starts at 30 s; a replication that lost its peer for a moment should
            // not wait that long to catch up.
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            smtp: None,
        }
    }
}

/// A job's scheduling state (CouchDB's states; `completed`/`failed` live on documents).
#[derive(Debug)]
pub enum Phase {
    Pending,
    Running {
        cancel: watch::Sender<bool>,
        since: Instant,
    },
    Crashing {
        retry_at: Instant,
        reason: String,
        /// The peers (`host:port`) it could not reach: probed, so the job restarts as soon
        /// as they answer instead of sleeping out its backoff.
        unreachable: Vec<String>,
    },
    /// A scheduled document between runs: it starts again at `at`.
    Waiting {
        until: Instant,
        at: SystemTime,
    },
    /// A document with `after` (and no schedule) between runs: it starts when that
    /// document's run completes.
    After,
}

#[derive(Clone, Debug)]
pub struct Event {
    pub at: SystemTime,
    pub kind: &'static str,
    pub reason: Option<String>,
}

/// Where a one-shot `POST /_replicate` caller waits for its job's ending.
pub type Waiter = oneshot::Receiver<Result<Outcome, ReplError>>;

/// Who asked for a job.
#[derive(Debug)]
pub enum Origin {
    Doc(String),
    /// `POST /_replicate`; a one-shot caller waits for the ending.
    Transient(Option<oneshot::Sender<Result<Outcome, ReplError>>>),
}

pub struct Job {
    pub id: String,
    pub spec: Spec,
    pub origin: Origin,
    pub state: Arc<JobState>,
    pub phase: Phase,
    pub history: VecDeque<Event>,
    pub consecutive_crashes: u32,
    pub added: SystemTime,
    pub started: Option<SystemTime>,
    /// Bumped at each start, so an ending from an older run is recognised.
    generation: u64,
    /// `schedule`, `retry` and `notify` of its document.
    pub opts: DocOptions,
    /// Failed attempts in a row under a `retry` policy.
    failures: u32,
    /// A scheduled job's last run: `state`, `reason`, `stats`, `at`.
    pub last_run: Option<Value>,
    /// The last transition notified, so each change of state is told once.
    notified: Option<Transition>,
}

/// A document of `_replicator` as the scheduler sees it.
#[derive(Clone, Debug)]
pub struct DocEntry {
    pub doc_id: String,
    pub definition: Value,
    pub source: Option<String>,
    pub target: Option<String>,
    pub state: DocState,
    pub last_updated: SystemTime,
}

#[derive(Clone, Debug)]
pub enum DocState {
    /// Runs as this job.
    Scheduled(String),
    Completed(Value),
    Failed(String),
}

#[derive(Default)]
pub struct State {
    pub jobs: BTreeMap<String, Job>,
    pub docs: BTreeMap<String, DocEntry>,
}

struct Ended {
    id: String,
    generation: u64,
    result: Result<Outcome, ReplError>,
}

pub struct Scheduler {
    pub env: Env,
    pub cfg: SchedulerConfig,
    store: Arc<Store>,
    state: Mutex<State>,
    kick: mpsc::Sender<()>,
    kick_rx: Mutex<Option<mpsc::Receiver<()>>>,
    /// Numbers every job start, so an ending from an earlier run is never taken for the
    /// current one (even after a job with the same id was removed and re-added).
    starts: std::sync::atomic::AtomicU64,
    /// Generations of removed jobs whose tasks have not ended yet.
    stopping: Mutex<std::collections::HashSet<u64>>,
    notifier: notify::Notifier,
    notify_rx: Mutex<Option<mpsc::Receiver<notify::Delivery>>>,
    /// States to record in documents, for the writer task ([`write_backs`]).
    writes: mpsc::Sender<Option<WriteBack>>,
    writes_rx: Mutex<Option<mpsc::Receiver<Option<WriteBack>>>>,
}

/// A run at least this long counts as healthy: a crash after it starts the backoff afresh,
/// as CouchDB forgets errors after a healthy period.
const HEALTHY_RUN: Duration = Duration::from_secs(120);

/// The consecutive crash count after a run of `ran` that crashed: one again after a healthy
/// run (a peer that failed for a moment hours ago must not slow today's retry), else one more.
fn crashes_after(before: u32, ran: Duration) -> u32 {
    if ran >= HEALTHY_RUN {
        1
    } else {
        before.saturating_add(1)
    }
}

fn backoff(cfg: &SchedulerConfig, crashes: u32) -> Duration {
    let factor = 1u32 << crashes.saturating_sub(1).min(16);
    (cfg.backoff_base * factor).min(cfg.backoff_cap)
}

const MAX_HISTORY: usize = 20;

impl Job {
    fn push(&mut self, kind: &'static str, reason: Option<String>) {
        self.history.push_front(Event {
            at: SystemTime::now(),
            kind,
            reason,
        });
        self.history.truncate(MAX_HISTORY);
    }

    pub fn doc_id(&self) -> Option<&str> {
        match &self.origin {
            Origin::Doc(d) => Some(d),
            Origin::Transient(_) => None,
        }
    }

    pub fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Running { .. } => "running",
            Phase::Crashing { .. } => "crashing",
            Phase::Pending => "pending",
            Phase::Waiting { .. } | Phase::After => "scheduled",
        }
    }

    /// Whether the job runs again and again (a schedule or `after`): it never gets a final
    /// state, only a last run.
    pub fn recurring(&self) -> bool {
        self.opts.schedule.is_some() || self.opts.after.is_some()
    }

    /// When a scheduled job runs next (`None` for others, or while it runs).
    pub fn next_run(&self) -> Option<SystemTime> {
        match &self.phase {
            Phase::Waiting { at, .. } => Some(*at),
            _ => None,
        }
    }

    /// Waits for its next run: the schedule's next due time (now, for a missed one), else
    /// the completion of the document it runs `after`, else none (pending).
    fn wait_for_schedule(&mut self, last_run_at: Option<SystemTime>) {
        let now = SystemTime::now();
        let next = self
            .opts
            .schedule
            .as_ref()
            .and_then(|s| s.next_run(last_run_at, now));
        self.phase = match next {
            Some(at) if at > now => Phase::Waiting {
                until: Instant::now() + at.duration_since(now).unwrap_or_default(),
                at,
            },
            Some(_) => Phase::Pending,
            None if self.opts.after.is_some() => Phase::After,
            None => Phase::Pending,
        };
    }
}

impl Scheduler {
    pub fn new(store: Arc<Store>, cfg: SchedulerConfig) -> Arc<Scheduler> {
        let (kick, kick_rx) = mpsc::channel(1);
        let (notifier, notify_rx) = notify::Notifier::new();
        let (writes, writes_rx) = mpsc::channel(4096);
        Arc::new(Scheduler {
            env: Env {
                store: Some(store.clone()),
                server_uuid: store.uuid().to_owned(),
            },
            cfg,
            store,
            state: Mutex::new(State::default()),
            kick,
            kick_rx: Mutex::new(Some(kick_rx)),
            starts: Default::default(),
            stopping: Default::default(),
            notifier,
            notify_rx: Mutex::new(Some(notify_rx)),
            writes,
            writes_rx: Mutex::new(Some(writes_rx)),
        })
    }

    /// Reads the state for status output.
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        match self.state.lock() {
            Ok(s) => f(&s),
            Err(p) => f(&p.into_inner()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        let _ = self.kick.try_send(());
    }

    /// Starts the scheduler's task; it stops (cancelling and checkpointing every job) when
    /// `shutdown` flips.
    pub fn start(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.main(shutdown).await })
    }

    /// Adds a `POST /_replicate` job. A one-shot job's ending is sent to the returned receiver.
    pub fn add_transient(&self, spec: Spec) -> Result<(String, Option<Waiter>), String> {
        let id = replication_id(&spec, &self.env.server_uuid).full;
        let (tx, rx) = if spec.continuous {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        {
            let mut st = self.lock();
            if let Some(j) = st.jobs.get(&id) {
                return Err(match j.doc_id() {
                    Some(d) => format!("Replication `{id}` is already running, triggered by document `{d}` from db `_replicator`"),
                    None => format!("Replication `{id}` is already running"),
                });
            }
            st.jobs.insert(
                id.clone(),
                self.new_job(id.clone(), spec, Origin::Transient(tx)),
            );
        }
        self.wake();
        Ok((id, rx))
    }

    /// Waits (up to `limit`) until the jobs of these documents have been picked up as deleted
    /// and every removed job's task has ended, so nothing they were writing lands afterwards.
    pub async fn wait_stopped(&self, doc_ids: &[String], limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            let busy = self.with_state(|st| {
                st.jobs
                    .values()
                    .any(|j| j.doc_id().is_some_and(|d| doc_ids.iter().any(|x| x == d)))
            }) || self.stopping.lock().map(|s| !s.is_empty()).unwrap_or(false);
            if !busy {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            self.wake();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cancels a `POST /_replicate` job by id (with or without its `+…` suffixes).
    pub fn cancel_transient(&self, id: &str) -> Option<String> {
        let mut st = self.lock();
        let key = st
            .jobs
            .iter()
            .find(|(k, j)| {
                matches!(j.origin, Origin::Transient(_))
                    && (k.as_str() == id || k.split('+').next() == Some(id))
            })
            .map(|(k, _)| k.clone())?;
        if let Some(j) = st.jobs.remove(&key) {
            stop(j, &self.stopping);
        }
        Some(key)
    }

    fn new_job(&self, id: String, spec: Spec, origin: Origin) -> Job {
        let mut j = Job {
            id,
            spec,
            origin,
            state: Arc::new(JobState::default()),
            phase: Phase::Pending,
            history: VecDeque::new(),
            consecutive_crashes: 0,
            added: SystemTime::now(),
            started: None,
            generation: 0,
            opts: DocOptions::default(),
            failures: 0,
            last_run: None,
            notified: None,
        };
        j.push("added", None);
        j
    }

    async fn main(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(mut kick_rx) = self.kick_rx.lock().ok().and_then(|mut k| k.take()) else {
            return;
        };
        let (end_tx, mut end_rx) = mpsc::channel::<Ended>(64);
        let mut running: JoinSet<()> = JoinSet::new();
        // Notifications are delivered by a task of their own, ended with the scheduler.
        let notifications = self
            .notify_rx
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .map(|rx| tokio::spawn(notify::deliver_all(rx, self.cfg.smtp.clone())));
        let writer = self
            .writes_rx
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .map(|rx| tokio::spawn(write_backs(self.store.clone(), rx)));
        let mut repdb = match self.store.ensure_db(REPLICATOR_DB) {
            Ok(db) => db,
            Err(e) => {
                tracing::error!(error = %e, "cannot open _replicator; the scheduler is not running");
                return;
            }
        };
        let mut updates = repdb.subscribe();
        let mut seen = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_rotation = Instant::now();
        let mut probes: JoinSet<(String, bool)> = JoinSet::new();
        let mut probed: HashMap<String, Instant> = HashMap::new();
        loop {
            // `_replicator` deleted: its documents are gone, so are their jobs; a database
            // created again under the name is read from its start.
            if repdb.is_dropped() {
                let ids: Vec<String> = self.lock().docs.keys().cloned().collect();
                for id in ids {
                    self.doc_changed(&id, None);
                }
                if let Ok(db) = self.store.db(REPLICATOR_DB) {
                    repdb = db;
                    updates = repdb.subscribe();
                    seen = 0;
                }
            }
            // Follow _replicator: every document changed since the last look.
            let now_seq = repdb.update_seq();
            if now_seq != seen && !repdb.is_dropped() {
                let changes: Vec<_> = repdb.changes(seen, false).filter_map(Result::ok).collect();
                for c in changes {
                    seen = seen.max(c.seq);
                    if c.id.starts_with("_design/") {
                        continue;
                    }
                    let doc = if c.record.tree.is_deleted() {
                        None
                    } else {
                        repdb.get(&c.id, None, &ReadOpts::default()).ok()
                    };
                    self.doc_changed(&c.id, doc);
                }
                seen = seen.max(now_seq);
            }
            self.schedule(&mut running, &end_tx, &mut last_rotation);
            for host in self.hosts_to_probe(&mut probed) {
                probes.spawn(probe(host));
            }
            tokio::select! {
                Some(Ok((host, up))) = probes.join_next(), if !probes.is_empty() => {
                    if up {
                        self.peer_back(&host);
                    }
                }
                _ = updates.changed() => {}
                _ = kick_rx.recv() => {}
                _ = tick.tick() => {}
                Some(ended) = end_rx.recv() => self.job_ended(ended),
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            }
        }
        // Shutdown: cancel every running job; each writes a final checkpoint.
        {
            let mut st = self.lock();
            for j in st.jobs.values_mut() {
                if let Phase::Running { cancel, .. } = &j.phase {
                    let _ = cancel.send(true);
                }
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = running.join_next() => if r.is_none() { break },
                _ = &mut deadline => { running.abort_all(); }
            }
        }
        if let Some(n) = notifications {
            n.abort();
        }
        probes.abort_all();
        // The states of jobs that ended are recorded before the scheduler stops.
        if let Some(w) = writer {
            let _ = self.writes.send(None).await;
            let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
        }
    }

    /// A `_replicator` document was written (`None`: deleted).
    fn doc_changed(&self, doc_id: &str, doc: Option<Value>) {
        let definition = doc.as_ref().map(docs::definition);
        let mut st = self.lock();
        if let (Some(entry), Some(def)) = (st.docs.get(doc_id), &definition) {
            if &entry.definition == def {
                return; // only our state fields changed
            }
        }
        // Edited or deleted: the old job (if any) stops.
        if let Some(entry) = st.docs.remove(doc_id) {
            if let DocState::Scheduled(job_id) = entry.state {
                if let Some(j) = st.jobs.remove(&job_id) {
                    stop(j, &self.stopping);
                }
            }
        }
        let (Some(doc), Some(definition)) = (doc, definition) else {
            return;
        };
        let redact = |k: &str| {
            doc.get(k)
                .and_then(|v| replicator::Endpoint::parse(v, k).ok())
                .map(|e| e.redacted())
        };
        let mut entry = DocEntry {
            doc_id: doc_id.to_owned(),
            definition,
            source: redact("source"),
            target: redact("target"),
            state: DocState::Failed(String::new()),
            last_updated: SystemTime::now(),
        };
        if let Some(t) = docs::terminal_state(&doc) {
            entry.state = if t == "completed" {
                DocState::Completed(
                    doc.get("_replication_stats")
                        .cloned()
                        .unwrap_or(Value::Null),
                )
            } else {
                DocState::Failed(
                    doc.get("_replication_state_reason")
                        .and_then(Value::as_str)
                        .unwrap_or("failed")
                        .to_owned(),
                )
            };
            st.docs.insert(doc_id.to_owned(), entry);
            return;
        }
        match docs::validate(&doc) {
            Err(e) => {
                let reason = e.to_string();
                entry.state = DocState::Failed(reason.clone());
                st.docs.insert(doc_id.to_owned(), entry);
                drop(st);
                self.write_back(doc_id, "failed", Some(&reason), None);
            }
            Ok(spec) => {
                let id = replication_id(&spec, &self.env.server_uuid).full;
                if let Some(other) = st.jobs.get(&id) {
                    let by = match other.doc_id() {
                        Some(d) => format!("triggered by document `{d}` from db `{REPLICATOR_DB}`"),
                        None => "started by POST /_replicate".to_owned(),
                    };
                    let reason = format!(
                        "Replication `{id}` specified by document `{doc_id}` already started, {by}"
                    );
                    entry.state = DocState::Failed(reason.clone());
                    st.docs.insert(doc_id.to_owned(), entry);
                    drop(st);
                    self.write_back(doc_id, "failed", Some(&reason), None);
                    return;
                }
                entry.state = DocState::Scheduled(id.clone());
                st.docs.insert(doc_id.to_owned(), entry);
                let mut job = self.new_job(id.clone(), spec, Origin::Doc(doc_id.to_owned()));
                job.opts = docs::options_of(&doc);
                if job.recurring() {
                    // Not on creation: at each due time, and once now for a run missed
                    // while the server was down.
                    job.last_run = last_run_of(&doc);
                    let last_at = job
                        .last_run
                        .as_ref()
                        .and_then(|l| l["at"].as_str())
                        .and_then(parse_time);
                    job.wait_for_schedule(last_at);
                }
                st.jobs.insert(id, job);
            }
        }
    }

    /// Starts what may start: crashed jobs whose backoff elapsed and pending jobs, up to
    /// `max_jobs`; every `interval`, rotates up to `max_churn` continuous jobs out for
    /// pending ones.
    fn schedule(
        &self,
        running: &mut JoinSet<()>,
        end_tx: &mpsc::Sender<Ended>,
        last_rotation: &mut Instant,
    ) {
        let mut st = self.lock();
        let now = Instant::now();
        // A job that crashed and has now run a while with no request failing has recovered.
        for j in st.jobs.values_mut() {
            if let Phase::Running { since, .. } = &j.phase {
                if j.notified == Some(Transition::Crashing)
                    && since.elapsed() >= Duration::from_secs(2)
                    && !j.state.is_troubled()
                {
                    self.notify(j, Transition::Recovered, None);
                }
            }
        }
        let eligible = |j: &Job| match &j.phase {
            Phase::Pending => true,
            Phase::Crashing { retry_at, .. } => *retry_at <= now,
            Phase::Waiting { until, .. } => *until <= now,
            Phase::Running { .. } | Phase::After => false,
        };
        let slots: Vec<rotation::Slot> = st
            .jobs
            .values()
            .map(|j| rotation::Slot {
                id: j.id.clone(),
                running_since: match &j.phase {
                    Phase::Running { since, .. } => Some(*since),
                    _ => None,
                },
                continuous: j.spec.continuous,
                eligible: eligible(j),
                waiting_since: j.started.unwrap_or(j.added),
            })
            .collect();
        let limits = rotation::Limits {
            max_jobs: self.cfg.max_jobs,
            max_churn: self.cfg.max_churn,
            interval: self.cfg.interval,
        };
        let turn = rotation::plan(&slots, &limits, now, *last_rotation);
        if turn.rotated {
            *last_rotation = now;
        }
        for id in &turn.stop {
            if let Some(j) = st.jobs.get_mut(id) {
                if let Phase::Running { cancel, .. } = &j.phase {
                    let _ = cancel.send(true);
                }
                j.phase = Phase::Pending;
                j.push("stopped", None);
            }
        }
        for id in turn.start {
            let Some(j) = st.jobs.get_mut(&id) else {
                continue;
            };
            let (cancel_tx, cancel_rx) = watch::channel(false);
            j.generation = self
                .starts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            j.phase = Phase::Running {
                cancel: cancel_tx,
                since: Instant::now(),
            };
            j.started = Some(SystemTime::now());
            j.push("started", None);
            let (spec, env, state, gen, tx) = (
                j.spec.clone(),
                self.env.clone(),
                j.state.clone(),
                j.generation,
                end_tx.clone(),
            );
            running.spawn(async move {
                let result = replicator::run(&spec, &env, state, cancel_rx).await;
                let _ = tx
                    .send(Ended {
                        id,
                        generation: gen,
                        result,
                    })
                    .await;
            });
        }
    }

    fn job_ended(&self, e: Ended) {
        if let Ok(mut s) = self.stopping.lock() {
            s.remove(&e.generation);
        }
        let mut st = self.lock();
        let Some(j) = st.jobs.get_mut(&e.id) else {
            return;
        };
        if j.generation != e.generation || !matches!(j.phase, Phase::Running { .. }) {
            return;
        }
        let ran = match &j.phase {
            Phase::Running { since, .. } => since.elapsed(),
            _ => Duration::ZERO,
        };
        let doc_id = j.doc_id().map(str::to_owned);
        match e.result {
            Ok(out) if out.cancelled => {
                j.phase = Phase::Pending;
            }
            // A scheduled run completed: recorded, and the job waits for its next time; the
            // documents that run after it start.
            Ok(_) if j.recurring() => {
                j.failures = 0;
                j.push("stopped", None);
                let stats = self.last_run(j, "completed", None);
                self.notify(j, Transition::Completed, None);
                j.wait_for_schedule(Some(SystemTime::now()));
                if let Some(d) = &doc_id {
                    trigger_after(&mut st, d);
                }
                drop(st);
                if let Some(d) = doc_id {
                    self.write_back(&d, "scheduled", None, Some(stats));
                }
            }
            Ok(out) => {
                self.notify(j, Transition::Completed, None);
                let Some(mut j) = st.jobs.remove(&e.id) else {
                    return;
                };
                j.push("stopped", None);
                match std::mem::replace(&mut j.origin, Origin::Transient(None)) {
                    Origin::Transient(Some(tx)) => {
                        let _ = tx.send(Ok(out));
                    }
                    Origin::Transient(None) => {}
                    Origin::Doc(doc_id) => {
                        let mut stats = j.state.info_json();
                        stats["start_time"] = json!(j.started.map(replicator::checkpoint::iso8601));
                        if let Some(d) = st.docs.get_mut(&doc_id) {
                            d.state = DocState::Completed(stats.clone());
                            d.last_updated = SystemTime::now();
                        }
                        trigger_after(&mut st, &doc_id);
                        drop(st);
                        self.write_back(&doc_id, "completed", None, Some(stats));
                    }
                }
            }
            Err(err) => {
                let reason = err.to_string();
                let transient_oneshot = matches!(j.origin, Origin::Transient(Some(_)));
                // Under a `retry` policy: `count` retries `interval` apart, then the run has
                // failed (a scheduled one waits for its next time).
                let retry = j.opts.retry.map(|r| {
                    j.failures += 1;
                    r.again_after(j.failures)
                });
                let exhausted = retry == Some(None);
                if exhausted && j.recurring() {
                    j.failures = 0;
                    j.push("crashed", Some(reason.clone()));
                    let stats = self.last_run(j, "failed", Some(&reason));
                    self.notify(j, Transition::Failed, Some(&reason));
                    j.wait_for_schedule(Some(SystemTime::now()));
                    drop(st);
                    if let Some(d) = doc_id {
                        self.write_back(&d, "scheduled", Some(&reason), Some(stats));
                    }
                    return;
                }
                if err.is_permanent() || transient_oneshot || exhausted {
                    self.notify(j, Transition::Failed, Some(&reason));
                    let Some(mut j) = st.jobs.remove(&e.id) else {
                        return;
                    };
                    match std::mem::replace(&mut j.origin, Origin::Transient(None)) {
                        Origin::Transient(Some(tx)) => {
                            let _ = tx.send(Err(err));
                        }
                        Origin::Transient(None) => {}
                        Origin::Doc(doc_id) => {
                            if let Some(d) = st.docs.get_mut(&doc_id) {
                                d.state = DocState::Failed(reason.clone());
                                d.last_updated = SystemTime::now();
                            }
                            drop(st);
                            self.write_back(&doc_id, "failed", Some(&reason), None);
                        }
                    }
                    return;
                }
                let wait = match retry {
                    Some(Some(interval)) => interval,
                    _ => {
                        j.consecutive_crashes = crashes_after(j.consecutive_crashes, ran);
                        backoff(&self.cfg, j.consecutive_crashes)
                    }
                };
                j.push("crashed", Some(reason.clone()));
                self.notify(j, Transition::Crashing, Some(&reason));
                tracing::info!(job = %j.id, retry_in_ms = wait.as_millis() as u64, reason = %reason, "replication crashed");
                let unreachable = match &err {
                    ReplError::Unreachable { .. } => remote_hosts(&j.spec),
                    _ => Vec::new(),
                };
                j.phase = Phase::Crashing {
                    retry_at: Instant::now() + wait,
                    reason,
                    unreachable,
                };
            }
        }
    }

    /// The hosts of jobs waiting out a backoff because a peer was unreachable that were not
    /// probed in the last half second: one probe per host, however many jobs wait on it.
    fn hosts_to_probe(&self, probed: &mut HashMap<String, Instant>) -> Vec<String> {
        let now = Instant::now();
        let st = self.lock();
        let mut out = Vec::new();
        for j in st.jobs.values() {
            if let Phase::Crashing {
                retry_at,
                unreachable,
                ..
            } = &j.phase
            {
                if *retry_at <= now + Duration::from_secs(1) {
                    continue;
                }
                for h in unreachable {
                    let due = probed
                        .get(h)
                        .is_none_or(|t| now.duration_since(*t) >= Duration::from_millis(500));
                    if due && !out.contains(h) {
                        probed.insert(h.clone(), now);
                        out.push(h.clone());
                    }
                }
            }
        }
        probed.retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
        out
    }

    /// A peer answers again: the jobs that could not reach it restart now, spread over a
    /// second plus `max_churn` per second, so hundreds do not hit it in the same instant.
    fn peer_back(&self, host: &str) {
        let mut st = self.lock();
        let now = Instant::now();
        let mut n = 0usize;
        for j in st.jobs.values_mut() {
            if let Phase::Crashing {
                retry_at,
                unreachable,
                ..
            } = &mut j.phase
            {
                if unreachable.iter().any(|h| h == host) {
                    let wave = (n / self.cfg.max_churn.max(1)) as f64;
                    let at = now + Duration::from_secs_f64(wave + rand::random::<f64>());
                    if at < *retry_at {
                        *retry_at = at;
                    }
                    unreachable.clear();
                    n += 1;
                }
            }
        }
        if n > 0 {
            tracing::info!(host, jobs = n, "peer answers again; restarting its jobs");
            drop(st);
            self.wake();
        }
    }

    /// Records a scheduled job's run in its status; returns the `_replication_stats` the
    /// document keeps (with `run_state`), read back at start-up by [`last_run_of`].
    fn last_run(&self, j: &mut Job, state: &str, reason: Option<&str>) -> Value {
        let mut stats = j.state.stats.snapshot().to_json();
        j.last_run = Some(json!({
            "state": state,
            "reason": reason,
            "stats": stats.clone(),
            "at": replicator::checkpoint::iso8601(SystemTime::now()),
        }));
        stats["run_state"] = json!(state);
        stats
    }

    /// Tells the job's webhooks about a transition, once per change of state.
    fn notify(&self, j: &mut Job, t: Transition, reason: Option<&str>) {
        if j.opts.notify.is_empty() || !t.is_news(j.notified) {
            return;
        }
        j.notified = Some(t);
        let body = json!({
            "replication_id": j.id,
            "doc_id": j.doc_id(),
            "database": j.doc_id().map(|_| REPLICATOR_DB),
            "state": t.as_str(),
            "reason": reason,
            "source": j.spec.source.redacted(),
            "target": j.spec.target.redacted(),
            "stats": j.state.stats.snapshot().to_json(),
            "at": replicator::checkpoint::iso8601(SystemTime::now()),
        });
        self.notifier.send(&j.opts.notify, t, body, &j.state);
    }

    /// Queues a state for the document, as CouchDB 3.x records it; the writer task stores it
    /// on a blocking thread (never on this async worker: a store write waits for a flush).
    fn write_back(&self, doc_id: &str, state: &str, reason: Option<&str>, stats: Option<Value>) {
        let w = WriteBack {
            doc_id: doc_id.to_owned(),
            state: state.to_owned(),
            reason: reason.map(str::to_owned),
            stats,
        };
        if self.writes.try_send(Some(w)).is_err() {
            tracing::warn!(
                doc_id,
                "state write-back queue full; the state is not recorded"
            );
        }
    }
}

/// Stops a job that is being removed: a running one is cancelled (it checkpoints and ends on
/// its own, and is remembered until it has); a waiting one-shot caller is told.
fn stop(j: Job, stopping: &Mutex<std::collections::HashSet<u64>>) {
    if let Phase::Running { cancel, .. } = &j.phase {
        let _ = cancel.send(true);
        if let Ok(mut s) = stopping.lock() {
            s.insert(j.generation);
        }
    }
    if let Origin::Transient(Some(tx)) = j.origin {
        let _ = tx.send(Err(ReplError::Internal("cancelled".into())));
    }
}

/// The documents waiting to run `after` this one start now.
fn trigger_after(st: &mut State, doc_id: &str) {
    for j in st.jobs.values_mut() {
        if j.opts.after.as_deref() == Some(doc_id) && matches!(j.phase, Phase::After) {
            j.phase = Phase::Pending;
            j.push("triggered", Some(format!("after {doc_id}")));
        }
    }
}

/// An RFC 3339 time as the scheduler writes it.
fn parse_time(s: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc).into())
}

/// A scheduled document's last run, from the state fields the scheduler wrote
/// (`_replication_state: "scheduled"`, its time, reason and stats with `run_state`).
fn last_run_of(doc: &Value) -> Option<Value> {
    if doc.get("_replication_state")?.as_str()? != "scheduled" {
        return None;
    }
    let stats = doc
        .get("_replication_stats")
        .cloned()
        .unwrap_or(Value::Null);
    Some(json!({
        "state": stats.get("run_state").cloned().unwrap_or(Value::Null),
        "reason": doc.get("_replication_state_reason").cloned().unwrap_or(Value::Null),
        "stats": stats,
        "at": doc.get("_replication_state_time")?.clone(),
    }))
}

/// `host:port` of each remote end of a replication.
fn remote_hosts(spec: &Spec) -> Vec<String> {
    [&spec.source, &spec.target]
        .into_iter()
        .filter_map(|e| match e {
            replicator::Endpoint::Remote(r) => Some(format!(
                "{}:{}",
                r.url.host_str()?,
                r.url.port_or_known_default()?
            )),
            replicator::Endpoint::Local(_) => None,
        })
        .collect()
}

/// Whether something accepts connections at `host:port` (a cheap sign the peer is back).
async fn probe(host: String) -> (String, bool) {
    let up = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(host.as_str()),
    )
    .await
    .is_ok_and(|c| c.is_ok());
    (host, up)
}

/// A state to record in a replication document.
struct WriteBack {
    doc_id: String,
    state: String,
    reason: Option<String>,
    stats: Option<Value>,
}

/// Records states in their documents one after the other (so a later state never loses to an
/// earlier one), each on a blocking thread: a store write waits for a flush. Ends at `None`.
async fn write_backs(store: Arc<Store>, mut rx: mpsc::Receiver<Option<WriteBack>>) {
    while let Some(Some(w)) = rx.recv().await {
        let store = store.clone();
        let _ = tokio::task::spawn_blocking(move || record_state(&store, w)).await;
    }
}

/// Writes a state into its document without touching the definition (so the job is not
/// restarted by its own write), retrying when the document was edited meanwhile.
fn record_state(store: &Store, w: WriteBack) {
    let Ok(db) = store.db(REPLICATOR_DB) else {
        return;
    };
    for _ in 0..3 {
        let Ok(mut doc) = db.get(&w.doc_id, None, &ReadOpts::default()) else {
            return;
        };
        let Some(o) = doc.as_object_mut() else { return };
        o.insert("_replication_state".into(), json!(w.state));
        o.insert(
            "_replication_state_time".into(),
            json!(replicator::checkpoint::iso8601(SystemTime::now())),
        );
        match &w.reason {
            Some(r) => o.insert("_replication_state_reason".into(), json!(r)),
            None => o.shift_remove("_replication_state_reason"),
        };
        match &w.stats {
            Some(s) => o.insert("_replication_stats".into(), s.clone()),
            None => o.shift_remove("_replication_stats"),
        };
        match db.bulk_docs(vec![doc], true) {
            Ok(out) if out.iter().all(|o| o.result.is_ok()) => return,
            Ok(_) => continue, // edited meanwhile: read again
            Err(e) => {
                tracing::warn!(doc_id = %w.doc_id, error = %e, "could not record replication state");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_and_starts_afresh_after_a_healthy_run() {
        let cfg = SchedulerConfig::default();
        let mut crashes = 0;
        let mut waits = Vec::new();
        for _ in 0..5 {
            crashes = crashes_after(crashes, Duration::from_secs(5));
            waits.push(backoff(&cfg, crashes).as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16]);
        // Five outages hours apart: every one is retried after the first delay.
        for _ in 0..5 {
            crashes = crashes_after(crashes, Duration::from_secs(3 * 3600));
            assert_eq!(backoff(&cfg, crashes), Duration::from_secs(1));
        }
        assert_eq!(backoff(&cfg, 40), cfg.backoff_cap);
    }
}
