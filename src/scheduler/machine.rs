//! The scheduler's decisions as a pure state machine: [`Core::on`] takes one [`Event`] and the
//! time, updates the jobs and documents, and answers with the [`Action`]s the shell must
//! perform (start or cancel a job's task, record a state in a document, notify, probe a
//! peer, answer a waiting `POST /_replicate` caller). Nothing here reads the clock, touches
//! the store or the network, or spawns: the time comes in as [`Now`], so table tests drive
//! rotation, backoff, schedules, retry policies and notifications with injected time.
//!
//! Invariants: a job id runs at most once at a time (a start bumps its `generation`, and an
//! ending of an older generation is ignored); a document's own state write-backs never restart
//! its job (only its [`docs::definition`] counts); a job removed while running is cancelled and
//! its generation stays in `stopping` until its ending arrives.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::docs::{self, REPLICATOR_DB};
use super::options::{Destination, DocOptions, Transition};
use super::rotation;
use super::SchedulerConfig;
use crate::replicator::{self, id::replication_id, JobState, Outcome, ReplError, Spec};

/// The time of an event: monotonic for delays, wall-clock for schedules and status.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Now {
    pub fn from_clocks() -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// `d` later on both clocks.
    pub fn plus(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            wall: self.wall + d,
        }
    }
}

/// What happened.
#[derive(Debug)]
pub enum Event {
    /// A `_replicator` document was written (`None`: deleted).
    DocWritten { doc_id: String, doc: Option<Value> },
    /// A job's task ended.
    Ended {
        id: String,
        generation: u64,
        result: Result<Outcome, ReplError>,
    },
    /// A probed peer (`host:port`) accepts connections again.
    PeerReachable { host: String },
    /// Time passed: start what is due, rotate, notice recoveries, probe.
    Tick,
}

/// What the shell must do.
#[derive(Debug)]
pub enum Action {
    /// Run the replication as a task; its ending comes back as [`Event::Ended`].
    Start {
        id: String,
        generation: u64,
        spec: Box<Spec>,
        state: Arc<JobState>,
    },
    /// Cancel the task of this generation (it checkpoints and ends on its own).
    Cancel { generation: u64 },
    /// Answer the `POST /_replicate` caller waiting on this one-shot job.
    Reply {
        id: String,
        result: Result<Outcome, ReplError>,
    },
    /// Record a state in a replication document.
    WriteBack(WriteBack),
    /// Tell these destinations about a transition.
    Notify(Notice),
    /// Check whether something accepts connections at `host:port`.
    Probe { host: String },
}

/// A state to record in a replication document, as CouchDB 3.x records it.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteBack {
    pub doc_id: String,
    pub state: String,
    pub reason: Option<String>,
    pub stats: Option<Value>,
}

/// A notification to deliver (the body's credentials are already redacted).
#[derive(Debug)]
pub struct Notice {
    pub to: Vec<Destination>,
    pub transition: Transition,
    pub body: Value,
    pub state: Arc<JobState>,
}

/// A job's scheduling state (CouchDB's states; `completed`/`failed` live on documents).
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Pending,
    Running {
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
pub struct HistoryEvent {
    pub at: SystemTime,
    pub kind: &'static str,
    pub reason: Option<String>,
}

/// Who asked for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Doc(String),
    /// `POST /_replicate`; `waiting`: a one-shot caller waits for the ending.
    Transient {
        waiting: bool,
    },
}

#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub spec: Spec,
    pub origin: Origin,
    /// Progress and trouble, shared with the job's task (it writes, status reads).
    pub state: Arc<JobState>,
    pub phase: Phase,
    pub history: VecDeque<HistoryEvent>,
    pub consecutive_crashes: u32,
    /// Every crash since the job was added (a final failure included).
    pub crashes: u64,
    pub added: SystemTime,
    pub started: Option<SystemTime>,
    /// Bumped at each start, so an ending from an older run is recognised.
    pub generation: u64,
    /// `schedule`, `after`, `retry` and `notify` of its document.
    pub opts: DocOptions,
    /// Failed attempts in a row under a `retry` policy.
    pub failures: u32,
    /// A scheduled job's last run: `state`, `reason`, `stats`, `at`.
    pub last_run: Option<Value>,
    /// The last transition notified, so each change of state is told once.
    pub notified: Option<Transition>,
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

#[derive(Clone, Debug, PartialEq)]
pub enum DocState {
    /// Runs as this job.
    Scheduled(String),
    Completed(Value),
    Failed(String),
}

/// What status readers see.
#[derive(Default, Debug)]
pub struct State {
    pub jobs: BTreeMap<String, Job>,
    pub docs: BTreeMap<String, DocEntry>,
    /// Since the server started (CouchDB's `couch_replicator.jobs.*` counters).
    pub counters: Counters,
}

/// How many times jobs were started, stopped (rotated out, edited, deleted, cancelled) and
/// crashed since start-up.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub starts: u64,
    pub stops: u64,
    pub crashes: u64,
}

/// A run at least this long counts as healthy: a crash after it starts the backoff afresh,
/// as CouchDB forgets errors after a healthy period.
const HEALTHY_RUN: Duration = Duration::from_secs(120);
/// A job that crashed and then ran this long with no request failing has recovered.
const RECOVERED_AFTER: Duration = Duration::from_secs(2);
/// How often one host is probed while jobs wait on it.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How often the shell polls what no event announces (trouble and recovery inside a running
/// job, probes) while there is something to poll; otherwise it sleeps until the next due time.
const POLL: Duration = Duration::from_millis(250);
const IDLE: Duration = Duration::from_secs(5);
const MAX_HISTORY: usize = 20;

/// The consecutive crash count after a run of `ran` that crashed: one again after a healthy
/// run (a peer that failed for a moment hours ago must not slow today's retry), else one more.
pub fn crashes_after(before: u32, ran: Duration) -> u32 {
    if ran >= HEALTHY_RUN {
        1
    } else {
        before.saturating_add(1)
    }
}

/// The delay before a crashed job restarts: `backoff_base` doubled per consecutive crash,
/// capped at `backoff_cap`.
pub fn backoff(cfg: &SchedulerConfig, crashes: u32) -> Duration {
    let factor = 1u32 << crashes.saturating_sub(1).min(16);
    (cfg.backoff_base * factor).min(cfg.backoff_cap)
}

/// A fraction in [0, 1) that spreads restarts: derived from the job and host, so it is
/// different per job yet reproducible in tests.
fn jitter(job: &str, host: &str) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (job, host).hash(&mut h);
    (h.finish() % 1000) as f64 / 1000.0
}

impl Job {
    fn new(id: String, spec: Spec, origin: Origin, now: Now) -> Job {
        let mut j = Job {
            id,
            spec,
            origin,
            state: Arc::new(JobState::default()),
            phase: Phase::Pending,
            history: VecDeque::new(),
            consecutive_crashes: 0,
            crashes: 0,
            added: now.wall,
            started: None,
            generation: 0,
            opts: DocOptions::default(),
            failures: 0,
            last_run: None,
            notified: None,
        };
        j.push(now, "added", None);
        j
    }

    fn push(&mut self, now: Now, kind: &'static str, reason: Option<String>) {
        self.history.push_front(HistoryEvent {
            at: now.wall,
            kind,
            reason,
        });
        self.history.truncate(MAX_HISTORY);
    }

    pub fn doc_id(&self) -> Option<&str> {
        match &self.origin {
            Origin::Doc(d) => Some(d),
            Origin::Transient { .. } => None,
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

    /// Whether it may start at `now`.
    fn eligible(&self, now: Instant) -> bool {
        match &self.phase {
            Phase::Pending => true,
            Phase::Crashing { retry_at, .. } => *retry_at <= now,
            Phase::Waiting { until, .. } => *until <= now,
            Phase::Running { .. } | Phase::After => false,
        }
    }

    /// Waits for its next run: the schedule's next due time (now, for a missed one), else
    /// the completion of the document it runs `after`, else none (pending).
    fn wait_for_schedule(&mut self, last_run_at: Option<SystemTime>, now: Now) {
        let next = self
            .opts
            .schedule
            .as_ref()
            .and_then(|s| s.next_run(last_run_at, now.wall));
        self.phase = match next {
            Some(at) if at > now.wall => Phase::Waiting {
                until: now.mono + at.duration_since(now.wall).unwrap_or_default(),
                at,
            },
            Some(_) => Phase::Pending,
            None if self.opts.after.is_some() => Phase::After,
            None => Phase::Pending,
        };
    }

    /// Records a scheduled job's run in its status; returns the `_replication_stats` the
    /// document keeps (with `run_state`), read back at start-up by [`last_run_of`].
    fn record_run(&mut self, state: &str, reason: Option<&str>, now: Now) -> Value {
        let mut stats = self.state.stats.snapshot().to_json();
        self.last_run = Some(json!({
            "state": state,
            "reason": reason,
            "stats": stats.clone(),
            "at": crate::ids::iso8601(now.wall),
        }));
        stats["run_state"] = json!(state);
        stats
    }

    /// A notification of `t`, if it is news and someone asked for it.
    fn notify(&mut self, t: Transition, reason: Option<&str>, now: Now) -> Option<Action> {
        if !t.is_news(self.notified) {
            return None;
        }
        self.notified = Some(t);
        let to: Vec<Destination> = self
            .opts
            .notify
            .iter()
            .filter(|d| d.on.contains(&t))
            .cloned()
            .collect();
        if to.is_empty() {
            return None;
        }
        let body = json!({
            "replication_id": self.id,
            "doc_id": self.doc_id(),
            "database": self.doc_id().map(|_| REPLICATOR_DB),
            "state": t.as_str(),
            "reason": reason,
            "source": self.spec.source.redacted(),
            "target": self.spec.target.redacted(),
            "stats": self.state.stats.snapshot().to_json(),
            "at": crate::ids::iso8601(now.wall),
        });
        Some(Action::Notify(Notice {
            to,
            transition: t,
            body,
            state: self.state.clone(),
        }))
    }
}

/// The scheduler's state and every decision over it.
pub struct Core {
    pub state: State,
    cfg: SchedulerConfig,
    server_uuid: String,
    /// Numbers every job start, so an ending from an earlier run is never taken for the
    /// current one (even after a job with the same id was removed and re-added).
    starts: u64,
    /// Generations of removed jobs whose tasks have not ended yet.
    stopping: HashSet<u64>,
    last_rotation: Instant,
    /// When each host was last probed.
    probed: HashMap<String, Instant>,
}

fn write_back(doc_id: &str, state: &str, reason: Option<&str>, stats: Option<Value>) -> Action {
    Action::WriteBack(WriteBack {
        doc_id: doc_id.to_owned(),
        state: state.to_owned(),
        reason: reason.map(str::to_owned),
        stats,
    })
}

impl Core {
    pub fn new(cfg: SchedulerConfig, server_uuid: String, now: Now) -> Core {
        Core {
            state: State::default(),
            cfg,
            server_uuid,
            starts: 0,
            stopping: HashSet::new(),
            last_rotation: now.mono,
            probed: HashMap::new(),
        }
    }

    /// Whether removed jobs' tasks are still ending.
    pub fn is_stopping(&self) -> bool {
        !self.stopping.is_empty()
    }

    /// Takes one event.
    pub fn on(&mut self, event: Event, now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::DocWritten { doc_id, doc } => self.doc_written(&doc_id, doc, now, &mut out),
            Event::Ended {
                id,
                generation,
                result,
            } => self.ended(&id, generation, result, now, &mut out),
            Event::PeerReachable { host } => self.peer_back(&host, now),
            Event::Tick => self.tick(now, &mut out),
        }
        out
    }

    /// Adds a `POST /_replicate` job (`waiting`: a one-shot caller waits for its ending);
    /// refused when a job with the same replication id exists.
    pub fn add_transient(&mut self, spec: Spec, waiting: bool, now: Now) -> Result<String, String> {
        let id = replication_id(&spec, &self.server_uuid).full;
        if let Some(j) = self.state.jobs.get(&id) {
            return Err(match j.doc_id() {
                Some(d) => format!("Replication `{id}` is already running, triggered by document `{d}` from db `_replicator`"),
                None => format!("Replication `{id}` is already running"),
            });
        }
        let job = Job::new(id.clone(), spec, Origin::Transient { waiting }, now);
        self.state.jobs.insert(id.clone(), job);
        Ok(id)
    }

    /// Cancels a `POST /_replicate` job by id (with or without its `+…` suffixes).
    pub fn cancel_transient(&mut self, id: &str) -> Option<(String, Vec<Action>)> {
        let key = self
            .state
            .jobs
            .iter()
            .find(|(k, j)| {
                matches!(j.origin, Origin::Transient { .. })
                    && (k.as_str() == id || k.split('+').next() == Some(id))
            })
            .map(|(k, _)| k.clone())?;
        let mut out = Vec::new();
        if let Some(j) = self.state.jobs.remove(&key) {
            self.remove(j, &mut out);
        }
        Some((key, out))
    }

    /// When the shell should next call [`Event::Tick`] at the latest: the earliest backoff
    /// end or due time, or soon while something must be polled.
    pub fn next_wake(&self, now: Now) -> Instant {
        let mut wake = now.mono + IDLE;
        let mut poll = false;
        for j in self.state.jobs.values() {
            match &j.phase {
                Phase::Crashing {
                    retry_at,
                    unreachable,
                    ..
                } => {
                    wake = wake.min(*retry_at);
                    poll |= !unreachable.is_empty();
                }
                Phase::Waiting { until, .. } => wake = wake.min(*until),
                // Trouble and recovery inside a running job come with no event.
                Phase::Running { .. } => poll = true,
                Phase::Pending => wake = now.mono,
                Phase::After => {}
            }
        }
        if poll {
            wake = wake.min(now.mono + POLL);
        }
        wake.max(now.mono)
    }

    /// Stops a job that is being removed: a running one is cancelled (and remembered until
    /// its task has ended); a waiting one-shot caller is told.
    fn remove(&mut self, j: Job, out: &mut Vec<Action>) {
        if let Phase::Running { .. } = j.phase {
            out.push(Action::Cancel {
                generation: j.generation,
            });
            self.state.counters.stops += 1;
            self.stopping.insert(j.generation);
        }
        if j.origin == (Origin::Transient { waiting: true }) {
            out.push(Action::Reply {
                id: j.id,
                result: Err(ReplError::Internal("cancelled".into())),
            });
        }
    }

    fn doc_written(&mut self, doc_id: &str, doc: Option<Value>, now: Now, out: &mut Vec<Action>) {
        let definition = doc.as_ref().map(docs::definition);
        if let (Some(entry), Some(def)) = (self.state.docs.get(doc_id), &definition) {
            if &entry.definition == def {
                return; // only our state fields changed
            }
        }
        // Edited or deleted: the old job (if any) stops.
        if let Some(entry) = self.state.docs.remove(doc_id) {
            if let DocState::Scheduled(job_id) = entry.state {
                if let Some(j) = self.state.jobs.remove(&job_id) {
                    self.remove(j, out);
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
            last_updated: now.wall,
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
            self.state.docs.insert(doc_id.to_owned(), entry);
            return;
        }
        let spec = match docs::validate(&doc) {
            Ok(spec) => spec,
            Err(e) => {
                let reason = e.to_string();
                out.push(write_back(doc_id, "failed", Some(&reason), None));
                entry.state = DocState::Failed(reason);
                self.state.docs.insert(doc_id.to_owned(), entry);
                return;
            }
        };
        let id = replication_id(&spec, &self.server_uuid).full;
        if let Some(other) = self.state.jobs.get(&id) {
            let by = match other.doc_id() {
                Some(d) => format!("triggered by document `{d}` from db `{REPLICATOR_DB}`"),
                None => "started by POST /_replicate".to_owned(),
            };
            let reason = format!(
                "Replication `{id}` specified by document `{doc_id}` already started, {by}"
            );
            out.push(write_back(doc_id, "failed", Some(&reason), None));
            entry.state = DocState::Failed(reason);
            self.state.docs.insert(doc_id.to_owned(), entry);
            return;
        }
        entry.state = DocState::Scheduled(id.clone());
        self.state.docs.insert(doc_id.to_owned(), entry);
        let mut job = Job::new(id.clone(), spec, Origin::Doc(doc_id.to_owned()), now);
        job.opts = docs::options_of(&doc);
        if job.recurring() {
            // Not on creation: at each due time, and once now for a run missed while the
            // server was down.
            job.last_run = last_run_of(&doc);
            let last_at = job
                .last_run
                .as_ref()
                .and_then(|l| l["at"].as_str())
                .and_then(parse_time);
            job.wait_for_schedule(last_at, now);
        }
        self.state.jobs.insert(id, job);
    }

    /// Starts what may start: crashed jobs whose backoff elapsed, due scheduled jobs and
    /// pending jobs, up to `max_jobs`; every `interval`, rotates up to `max_churn`
    /// continuous jobs out for waiting ones. Notices recoveries and probes unreachable peers.
    fn tick(&mut self, now: Now, out: &mut Vec<Action>) {
        // A job that crashed and has now run a while with no request failing has recovered.
        for j in self.state.jobs.values_mut() {
            if let Phase::Running { since } = j.phase {
                if j.notified == Some(Transition::Crashing)
                    && now.mono.duration_since(since) >= RECOVERED_AFTER
                    && !j.state.is_troubled()
                {
                    out.extend(j.notify(Transition::Recovered, None, now));
                }
            }
        }
        let slots: Vec<rotation::Slot> = self
            .state
            .jobs
            .values()
            .map(|j| rotation::Slot {
                id: j.id.clone(),
                running_since: match j.phase {
                    Phase::Running { since } => Some(since),
                    _ => None,
                },
                continuous: j.spec.continuous,
                eligible: j.eligible(now.mono),
                waiting_since: j.started.unwrap_or(j.added),
            })
            .collect();
        let limits = rotation::Limits {
            max_jobs: self.cfg.max_jobs,
            max_churn: self.cfg.max_churn,
            interval: self.cfg.interval,
        };
        let turn = rotation::plan(&slots, &limits, now.mono, self.last_rotation);
        if turn.rotated {
            self.last_rotation = now.mono;
        }
        for id in &turn.stop {
            if let Some(j) = self.state.jobs.get_mut(id) {
                if let Phase::Running { .. } = j.phase {
                    out.push(Action::Cancel {
                        generation: j.generation,
                    });
                    self.state.counters.stops += 1;
                }
                j.phase = Phase::Pending;
                j.push(now, "stopped", None);
            }
        }
        for id in turn.start {
            let Some(j) = self.state.jobs.get_mut(&id) else {
                continue;
            };
            self.starts += 1;
            self.state.counters.starts += 1;
            j.generation = self.starts;
            j.phase = Phase::Running { since: now.mono };
            j.started = Some(now.wall);
            j.push(now, "started", None);
            out.push(Action::Start {
                id,
                generation: j.generation,
                spec: Box::new(j.spec.clone()),
                state: j.state.clone(),
            });
        }
        for host in self.hosts_to_probe(now.mono) {
            out.push(Action::Probe { host });
        }
    }

    fn ended(
        &mut self,
        id: &str,
        generation: u64,
        result: Result<Outcome, ReplError>,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        self.stopping.remove(&generation);
        let Some(j) = self.state.jobs.get_mut(id) else {
            return;
        };
        let Phase::Running { since } = j.phase else {
            return;
        };
        if j.generation != generation {
            return;
        }
        let ran = now.mono.duration_since(since);
        let doc_id = j.doc_id().map(str::to_owned);
        match result {
            Ok(out_) if out_.cancelled => {
                j.phase = Phase::Pending;
            }
            // A scheduled run completed: recorded, and the job waits for its next time; the
            // documents that run after it start.
            Ok(_) if j.recurring() => {
                j.failures = 0;
                j.push(now, "stopped", None);
                let stats = j.record_run("completed", None, now);
                out.extend(j.notify(Transition::Completed, None, now));
                j.wait_for_schedule(Some(now.wall), now);
                if let Some(d) = doc_id {
                    self.trigger_after(&d, now);
                    out.push(write_back(&d, "scheduled", None, Some(stats)));
                }
            }
            Ok(outcome) => {
                out.extend(j.notify(Transition::Completed, None, now));
                let Some(mut j) = self.state.jobs.remove(id) else {
                    return;
                };
                j.push(now, "stopped", None);
                match &j.origin {
                    Origin::Transient { waiting: true } => out.push(Action::Reply {
                        id: j.id.clone(),
                        result: Ok(outcome),
                    }),
                    Origin::Transient { waiting: false } => {}
                    Origin::Doc(doc_id) => {
                        let mut stats = j.state.info_json();
                        stats["start_time"] = json!(j.started.map(crate::ids::iso8601));
                        if let Some(d) = self.state.docs.get_mut(doc_id) {
                            d.state = DocState::Completed(stats.clone());
                            d.last_updated = now.wall;
                        }
                        let doc_id = doc_id.clone();
                        self.trigger_after(&doc_id, now);
                        out.push(write_back(&doc_id, "completed", None, Some(stats)));
                    }
                }
            }
            Err(err) => self.crashed(id, err, ran, now, out),
        }
    }

    /// A run ended with `err` after running `ran`: retried (by the document's `retry`
    /// policy, else with backoff), or failed for good.
    fn crashed(
        &mut self,
        id: &str,
        err: ReplError,
        ran: Duration,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        let Some(j) = self.state.jobs.get_mut(id) else {
            return;
        };
        j.crashes += 1;
        self.state.counters.crashes += 1;
        let reason = err.to_string();
        let doc_id = j.doc_id().map(str::to_owned);
        let oneshot_caller = j.origin == (Origin::Transient { waiting: true });
        // Under a `retry` policy: `count` retries `interval` apart, then the run has failed
        // (a scheduled one waits for its next time).
        let retry = j.opts.retry.map(|r| {
            j.failures += 1;
            r.again_after(j.failures)
        });
        let exhausted = retry == Some(None);
        if exhausted && j.recurring() {
            j.failures = 0;
            j.push(now, "crashed", Some(reason.clone()));
            let stats = j.record_run("failed", Some(&reason), now);
            out.extend(j.notify(Transition::Failed, Some(&reason), now));
            j.wait_for_schedule(Some(now.wall), now);
            if let Some(d) = doc_id {
                out.push(write_back(&d, "scheduled", Some(&reason), Some(stats)));
            }
            return;
        }
        if err.is_permanent() || oneshot_caller || exhausted {
            out.extend(j.notify(Transition::Failed, Some(&reason), now));
            let Some(j) = self.state.jobs.remove(id) else {
                return;
            };
            match j.origin {
                Origin::Transient { waiting: true } => out.push(Action::Reply {
                    id: j.id,
                    result: Err(err),
                }),
                Origin::Transient { waiting: false } => {}
                Origin::Doc(doc_id) => {
                    if let Some(d) = self.state.docs.get_mut(&doc_id) {
                        d.state = DocState::Failed(reason.clone());
                        d.last_updated = now.wall;
                    }
                    out.push(write_back(&doc_id, "failed", Some(&reason), None));
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
        j.push(now, "crashed", Some(reason.clone()));
        out.extend(j.notify(Transition::Crashing, Some(&reason), now));
        tracing::info!(job = %j.id, retry_in_ms = wait.as_millis() as u64, reason = %reason, "replication crashed");
        let unreachable = match &err {
            ReplError::Unreachable { .. } => remote_hosts(&j.spec),
            _ => Vec::new(),
        };
        j.phase = Phase::Crashing {
            retry_at: now.mono + wait,
            reason,
            unreachable,
        };
    }

    /// The documents waiting to run `after` this one start now.
    fn trigger_after(&mut self, doc_id: &str, now: Now) {
        for j in self.state.jobs.values_mut() {
            if j.opts.after.as_deref() == Some(doc_id) && j.phase == Phase::After {
                j.phase = Phase::Pending;
                j.push(now, "triggered", Some(format!("after {doc_id}")));
            }
        }
    }

    /// The hosts of jobs waiting out a backoff because a peer was unreachable that were not
    /// probed in the last half second: one probe per host, however many jobs wait on it.
    fn hosts_to_probe(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for j in self.state.jobs.values() {
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
                    let due = self
                        .probed
                        .get(h)
                        .is_none_or(|t| now.duration_since(*t) >= PROBE_EVERY);
                    if due && !out.contains(h) {
                        self.probed.insert(h.clone(), now);
                        out.push(h.clone());
                    }
                }
            }
        }
        self.probed
            .retain(|_, t| now.duration_since(*t) < Duration::from_secs(60));
        out
    }

    /// A peer answers again: the jobs that could not reach it restart now, spread over a
    /// second plus `max_churn` per second, so hundreds do not hit it in the same instant.
    fn peer_back(&mut self, host: &str, now: Now) {
        let mut n = 0usize;
        let churn = self.cfg.max_churn.max(1);
        for j in self.state.jobs.values_mut() {
            if let Phase::Crashing {
                retry_at,
                unreachable,
                ..
            } = &mut j.phase
            {
                if unreachable.iter().any(|h| h == host) {
                    let wave = (n / churn) as f64;
                    let at = now.mono + Duration::from_secs_f64(wave + jitter(&j.id, host));
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

#[cfg(test)]
mod tests {
    //! Table tests of the scheduler's decisions with injected time: no task, no sleep.
    use super::*;
    use crate::replicator::id::RepId;
    use crate::replicator::stats::Counts;

    const DAY: Duration = Duration::from_secs(86_400);

    /// 2026-12-03T10:00:00Z, with a monotonic clock that starts now.
    fn t0() -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_292_000),
        }
    }

    fn secs(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    fn cfg() -> SchedulerConfig {
        SchedulerConfig::default()
    }

    fn doc(id: &str, extra: Value) -> Event {
        let mut d = json!({
            "_id": id,
            "source": format!("http://127.0.0.1:5999/{id}-src"),
            "target": format!("http://127.0.0.1:5998/{id}-tgt"),
        });
        if let (Some(o), Value::Object(e)) = (d.as_object_mut(), extra) {
            o.extend(e);
        }
        Event::DocWritten {
            doc_id: id.into(),
            doc: Some(d),
        }
    }

    fn outcome(cancelled: bool) -> Outcome {
        Outcome {
            rep_id: RepId {
                base: "x".into(),
                full: "x".into(),
            },
            report: json!({"ok": true}),
            counts: Counts::default(),
            cancelled,
        }
    }

    fn unreachable() -> ReplError {
        ReplError::Unreachable {
            endpoint: "http://127.0.0.1:5999/a-src/".into(),
            reason: "connection refused".into(),
        }
    }

    /// The job a document runs as.
    fn job_of<'a>(c: &'a Core, doc_id: &str) -> &'a Job {
        match &c.state.docs[doc_id].state {
            DocState::Scheduled(id) => &c.state.jobs[id],
            s => panic!("{doc_id} runs no job: {s:?}"),
        }
    }

    /// The `(job id, generation)` of every start among `actions`.
    fn starts(actions: &[Action]) -> Vec<(String, u64)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { id, generation, .. } => Some((id.clone(), *generation)),
                _ => None,
            })
            .collect()
    }

    fn ended(c: &Core, doc_id: &str, result: Result<Outcome, ReplError>) -> Event {
        let j = job_of(c, doc_id);
        Event::Ended {
            id: j.id.clone(),
            generation: j.generation,
            result,
        }
    }

    fn write_backs(actions: &[Action]) -> Vec<&WriteBack> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::WriteBack(w) => Some(w),
                _ => None,
            })
            .collect()
    }

    fn notices(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Notify(n) => Some(n.transition.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn rotation_runs_max_jobs_and_churns_the_longest_running_once_per_interval() {
        let now = t0();
        let mut c = Core::new(
            SchedulerConfig {
                max_jobs: 2,
                max_churn: 1,
                interval: secs(60.0),
                ..cfg()
            },
            "uuid".into(),
            now,
        );
        // (seconds after t0, document written then, jobs started, jobs cancelled)
        let table: [(f64, Option<&str>, Vec<&str>, usize); 6] = [
            (1.0, Some("a"), vec!["a"], 0),
            (2.0, Some("b"), vec!["b"], 0),
            (3.0, Some("c"), vec![], 0),
            (30.0, None, vec![], 0),
            (61.0, None, vec!["c"], 1),
            (90.0, None, vec![], 0),
        ];
        for (at, written, started, cancelled) in table {
            if let Some(id) = written {
                c.on(doc(id, json!({"continuous": true})), now.plus(secs(at)));
            }
            let actions = c.on(Event::Tick, now.plus(secs(at)));
            let mut got: Vec<&str> = starts(&actions)
                .iter()
                .map(|(id, _)| {
                    c.state
                        .docs
                        .values()
                        .find(|d| d.state == DocState::Scheduled(id.clone()))
                        .map(|d| d.doc_id.as_str())
                        .unwrap_or("?")
                })
                .collect();
            got.sort();
            assert_eq!(got, started, "started at +{at}s");
            let n = actions
                .iter()
                .filter(|a| matches!(a, Action::Cancel { .. }))
                .count();
            assert_eq!(n, cancelled, "cancelled at +{at}s");
        }
        // The one rotated out was the longest running, `a`, and waits its turn.
        assert_eq!(job_of(&c, "a").phase, Phase::Pending);
        assert_eq!(job_of(&c, "a").state_name(), "pending");
        // Its cancelled task's ending (an older generation's) changes nothing.
        assert_eq!(job_of(&c, "a").generation, 1);
        let stale = Event::Ended {
            id: job_of(&c, "a").id.clone(),
            generation: 1,
            result: Ok(outcome(true)),
        };
        assert!(c.on(stale, now.plus(secs(91.0))).is_empty());
        assert_eq!(job_of(&c, "a").phase, Phase::Pending);
    }

    #[test]
    fn backoff_doubles_per_crash_and_resets_after_a_healthy_run() {
        let mut now = t0();
        let mut c = Core::new(cfg(), "uuid".into(), now);
        c.on(doc("a", json!({"continuous": true})), now);
        // (seconds the run lasted, backoff that follows)
        let table = [
            (5.0, 1.0),
            (5.0, 2.0),
            (5.0, 4.0),
            (5.0, 8.0),
            (3.0 * 3600.0, 1.0), // a healthy run: the count starts again
            (5.0, 2.0),
        ];
        for (ran, wait) in table {
            assert_eq!(starts(&c.on(Event::Tick, now)).len(), 1);
            now = now.plus(secs(ran));
            // A peer that answers 500 (an unreachable one would be probed meanwhile).
            let err = ReplError::Http {
                endpoint: "http://127.0.0.1:5999/a-src/".into(),
                status: 500,
                request: "GET _changes".into(),
                reason: "internal".into(),
            };
            c.on(ended(&c, "a", Err(err)), now);
            let Phase::Crashing { retry_at, .. } = &job_of(&c, "a").phase else {
                panic!("not crashing");
            };
            assert_eq!(
                retry_at.duration_since(now.mono),
                secs(wait),
                "after {ran}s"
            );
            assert_eq!(c.next_wake(now), (*retry_at).min(now.mono + IDLE));
            // Not a moment before its backoff ends.
            let early = now.plus(secs(wait) - Duration::from_millis(1));
            assert!(starts(&c.on(Event::Tick, early)).is_empty());
            now = now.plus(secs(wait));
        }
        assert_eq!(backoff(&cfg(), 40), cfg().backoff_cap);
    }

    #[test]
    fn a_schedule_runs_at_each_due_time_never_on_creation_and_never_twice_at_once() {
        let now = t0(); // 10:00 UTC
        let mut c = Core::new(cfg(), "uuid".into(), now);
        c.on(doc("daily", json!({"schedule": "0 2 * * *"})), now);
        let due = now.wall + secs(16.0 * 3600.0); // 02:00 the next day
        assert_eq!(job_of(&c, "daily").next_run(), Some(due));
        assert_eq!(job_of(&c, "daily").state_name(), "scheduled");
        assert!(
            starts(&c.on(Event::Tick, now)).is_empty(),
            "ran on creation"
        );
        let just_before = now.plus(secs(16.0 * 3600.0 - 1.0));
        assert!(starts(&c.on(Event::Tick, just_before)).is_empty());
        let at_due = now.plus(secs(16.0 * 3600.0));
        assert_eq!(c.next_wake(now), c.next_wake(now).max(now.mono));
        assert_eq!(starts(&c.on(Event::Tick, at_due)).len(), 1);
        // Still running a day later: the next due time does not start it again.
        let next_day = at_due.plus(DAY);
        assert!(starts(&c.on(Event::Tick, next_day)).is_empty());
        let finished = next_day.plus(secs(60.0));
        let actions = c.on(ended(&c, "daily", Ok(outcome(false))), finished);
        let w = write_backs(&actions);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].state, "scheduled", "never a final state");
        assert_eq!(w[0].stats.as_ref().unwrap()["run_state"], "completed");
        let j = job_of(&c, "daily");
        assert_eq!(j.last_run.as_ref().unwrap()["state"], "completed");
        assert_eq!(j.next_run(), Some(due + 2 * DAY));
    }

    #[test]
    fn a_run_missed_while_the_server_was_down_runs_once_at_start_up() {
        let now = t0();
        let mut c = Core::new(cfg(), "uuid".into(), now);
        // Last run three days ago, as the scheduler recorded it in the document.
        c.on(
            doc(
                "daily",
                json!({
                    "schedule": "@daily",
                    "_replication_state": "scheduled",
                    "_replication_state_time": "2026-11-30T10:00:00Z",
                    "_replication_stats": {"run_state": "completed"},
                }),
            ),
            now,
        );
        assert_eq!(starts(&c.on(Event::Tick, now)).len(), 1, "missed run");
        c.on(ended(&c, "daily", Ok(outcome(false))), now.plus(secs(5.0)));
        // Then at the next midnight, not again now.
        assert!(starts(&c.on(Event::Tick, now.plus(secs(10.0)))).is_empty());
        let midnight = now.wall + secs(14.0 * 3600.0);
        assert_eq!(job_of(&c, "daily").next_run(), Some(midnight));
    }

    #[test]
    fn a_retry_policy_replaces_the_backoff_then_fails_or_waits_for_the_next_run() {
        let retry = json!({"retry": {"count": 3, "interval": "30s"}});
        for scheduled in [false, true] {
            let mut now = t0();
            let mut c = Core::new(cfg(), "uuid".into(), now);
            let mut extra = retry.clone();
            if scheduled {
                extra["schedule"] = json!("@hourly");
                // Due at 10:00 exactly, recorded as last run an hour before.
                extra["_replication_state"] = json!("scheduled");
                extra["_replication_state_time"] = json!("2026-12-03T09:00:00Z");
            }
            c.on(doc("a", extra), now);
            // Four attempts: the first and three retries, 30 s apart.
            for attempt in 1..=4 {
                assert_eq!(
                    starts(&c.on(Event::Tick, now)).len(),
                    1,
                    "attempt {attempt}"
                );
                now = now.plus(secs(2.0));
                let actions = c.on(ended(&c, "a", Err(unreachable())), now);
                if attempt < 4 {
                    let Phase::Crashing { retry_at, .. } = &job_of(&c, "a").phase else {
                        panic!("attempt {attempt}: not retried");
                    };
                    assert_eq!(retry_at.duration_since(now.mono), secs(30.0));
                    assert!(write_backs(&actions).is_empty());
                    now = now.plus(secs(30.0));
                    continue;
                }
                let w = write_backs(&actions);
                assert_eq!(w.len(), 1);
                assert!(w[0]
                    .reason
                    .as_deref()
                    .unwrap()
                    .contains("connection refused"));
                if scheduled {
                    assert_eq!(w[0].state, "scheduled");
                    let j = job_of(&c, "a");
                    assert_eq!(j.last_run.as_ref().unwrap()["state"], "failed");
                    assert!(j.next_run().is_some(), "waits for its next time");
                    assert_eq!(j.failures, 0, "the next run has its own attempts");
                } else {
                    assert_eq!(w[0].state, "failed");
                    assert!(matches!(c.state.docs["a"].state, DocState::Failed(_)));
                    assert!(c.state.jobs.is_empty());
                }
            }
        }
    }

    #[test]
    fn each_change_of_state_is_notified_once() {
        let mut now = t0();
        let mut c = Core::new(cfg(), "uuid".into(), now);
        let on = json!(["failed", "crashing", "recovered", "completed"]);
        c.on(
            doc(
                "a",
                json!({"notify": [{"url": "http://127.0.0.1:9/hook", "on": on}]}),
            ),
            now,
        );
        // (what happens, the notifications it gives)
        let crash = |c: &mut Core, now: Now| c.on(ended(c, "a", Err(unreachable())), now);
        c.on(Event::Tick, now);
        now = now.plus(secs(1.0));
        assert_eq!(notices(&crash(&mut c, now)), ["crashing"]);
        now = now.plus(secs(1.0));
        c.on(Event::Tick, now);
        now = now.plus(secs(1.0));
        assert!(notices(&crash(&mut c, now)).is_empty(), "crashing again");
        now = now.plus(secs(2.0));
        c.on(Event::Tick, now);
        // Running with requests failing is not a recovery.
        job_of(&c, "a").state.note_retry("timeout".into());
        now = now.plus(secs(3.0));
        assert!(notices(&c.on(Event::Tick, now)).is_empty());
        job_of(&c, "a").state.clear_trouble();
        now = now.plus(secs(0.5));
        assert_eq!(notices(&c.on(Event::Tick, now)), ["recovered"]);
        assert!(notices(&c.on(Event::Tick, now.plus(secs(1.0)))).is_empty());
        now = now.plus(secs(5.0));
        assert_eq!(notices(&crash(&mut c, now)), ["crashing"]);
        now = now.plus(secs(4.0));
        c.on(Event::Tick, now);
        let done = c.on(ended(&c, "a", Ok(outcome(false))), now.plus(secs(1.0)));
        assert_eq!(notices(&done), ["completed"]);
        let Some(Action::Notify(n)) = done.iter().find(|a| matches!(a, Action::Notify(_))) else {
            unreachable!()
        };
        assert_eq!(n.body["doc_id"], "a");
        assert_eq!(n.body["state"], "completed");
    }

    #[test]
    fn a_document_that_runs_after_another_starts_when_that_run_completes() {
        let now = t0();
        let mut c = Core::new(cfg(), "uuid".into(), now);
        c.on(doc("push", json!({"schedule": "@daily"})), now);
        c.on(doc("pull", json!({"after": "push"})), now);
        assert_eq!(job_of(&c, "pull").phase, Phase::After);
        assert!(starts(&c.on(Event::Tick, now)).is_empty());
        let midnight = now.plus(secs(14.0 * 3600.0));
        assert_eq!(starts(&c.on(Event::Tick, midnight)).len(), 1);
        let done = midnight.plus(secs(10.0));
        c.on(ended(&c, "push", Ok(outcome(false))), done);
        let started = starts(&c.on(Event::Tick, done));
        assert_eq!(started, [(job_of(&c, "pull").id.clone(), 2)]);
        c.on(ended(&c, "pull", Ok(outcome(false))), done.plus(secs(5.0)));
        assert_eq!(
            job_of(&c, "pull").phase,
            Phase::After,
            "waits for the next push"
        );
    }

    #[test]
    fn an_unreachable_peer_is_probed_once_per_host_and_its_jobs_restart_when_it_answers() {
        let mut now = t0();
        let mut c = Core::new(cfg(), "uuid".into(), now);
        // Two jobs reading from the same source host.
        for id in ["a", "b"] {
            c.on(doc(id, json!({"continuous": true})), now);
        }
        // Crash both enough times that the backoff is long.
        for _ in 0..6 {
            c.on(Event::Tick, now);
            now = now.plus(secs(1.0));
            for id in ["a", "b"] {
                if matches!(job_of(&c, id).phase, Phase::Running { .. }) {
                    c.on(ended(&c, id, Err(unreachable())), now);
                }
            }
            now = now.plus(secs(40.0));
        }
        let probes = |a: &[Action]| {
            a.iter()
                .filter_map(|a| match a {
                    Action::Probe { host } => Some(host.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        c.on(Event::Tick, now);
        c.on(ended(&c, "a", Err(unreachable())), now);
        c.on(ended(&c, "b", Err(unreachable())), now);
        let mut first = probes(&c.on(Event::Tick, now));
        first.sort();
        assert_eq!(
            first,
            ["127.0.0.1:5998", "127.0.0.1:5999"].map(String::from)
        );
        assert!(probes(&c.on(Event::Tick, now.plus(secs(0.2)))).is_empty());
        assert_eq!(c.next_wake(now.plus(secs(0.2))), now.mono + secs(0.45));
        assert_eq!(probes(&c.on(Event::Tick, now.plus(secs(0.6)))).len(), 2);
        // The source answers: both restart within a second, spread apart.
        let back = now.plus(secs(0.7));
        c.on(
            Event::PeerReachable {
                host: "127.0.0.1:5999".into(),
            },
            back,
        );
        let restarted = starts(&c.on(Event::Tick, back.plus(secs(1.0))));
        assert_eq!(restarted.len(), 2);
    }

    #[test]
    fn a_one_shot_caller_gets_the_ending_and_a_cancelled_job_is_waited_for() {
        let now = t0();
        let mut c = Core::new(cfg(), "uuid".into(), now);
        let spec = |db: &str| {
            Spec::parse(&json!({"source": format!("http://127.0.0.1:5999/{db}"), "target": "t"}))
                .unwrap()
        };
        let id = c.add_transient(spec("one"), true, now).unwrap();
        assert!(c.add_transient(spec("one"), true, now).is_err(), "twice");
        let started = starts(&c.on(Event::Tick, now));
        let [(started, generation)] = &started[..] else {
            panic!("not started");
        };
        let generation = *generation;
        assert_eq!(started, &id);
        let end = Event::Ended {
            id: id.clone(),
            generation,
            result: Ok(outcome(false)),
        };
        let actions = c.on(end, now.plus(secs(1.0)));
        assert!(matches!(
            &actions[..],
            [Action::Reply { result: Ok(_), .. }]
        ));
        assert!(c.state.jobs.is_empty());
        // Cancelled while running: cancelled, told, and waited for until its task ends.
        let id = c.add_transient(spec("two"), true, now).unwrap();
        let started = starts(&c.on(Event::Tick, now));
        let [(_, generation)] = started[..] else {
            panic!("not started");
        };
        let (key, actions) = c.cancel_transient(id.split('+').next().unwrap()).unwrap();
        assert_eq!(key, id);
        assert!(matches!(actions[0], Action::Cancel { generation: g } if g == generation));
        assert!(matches!(actions[1], Action::Reply { result: Err(_), .. }));
        assert!(c.is_stopping());
        let end = Event::Ended {
            id,
            generation,
            result: Ok(outcome(true)),
        };
        assert!(c.on(end, now.plus(secs(2.0))).is_empty());
        assert!(!c.is_stopping());
    }

    #[test]
    fn only_an_edit_of_the_definition_restarts_a_document_job() {
        let now = t0();
        let mut c = Core::new(cfg(), "uuid".into(), now);
        c.on(doc("a", json!({"continuous": true})), now);
        c.on(Event::Tick, now);
        let running = job_of(&c, "a").generation;
        // The scheduler's own state fields: nothing happens.
        let state_only = doc(
            "a",
            json!({"continuous": true, "_rev": "2-x", "_replication_state": "running"}),
        );
        assert!(c.on(state_only, now).is_empty());
        assert_eq!(job_of(&c, "a").generation, running);
        // A new selector: the running job is cancelled and a new one waits.
        let edited = doc("a", json!({"continuous": true, "selector": {"type": "x"}}));
        let actions = c.on(edited, now);
        assert!(matches!(actions[..], [Action::Cancel { generation }] if generation == running));
        assert_eq!(job_of(&c, "a").phase, Phase::Pending);
        // A bad edit fails the document, with the reason written back.
        let bad = doc("a", json!({"continous": true}));
        let actions = c.on(bad, now);
        let w = write_backs(&actions);
        assert_eq!(w[0].state, "failed");
        assert!(
            w[0].reason.as_deref().unwrap().contains("continuous"),
            "{w:?}"
        );
        assert!(c.state.jobs.is_empty());
    }
}
