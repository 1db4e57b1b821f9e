//! The scheduler: replication documents in `_replicator` and `POST /_replicate` calls become
//! jobs; it runs up to `max_jobs` of them, rotates the rest fairly, retries crashed ones with
//! capped exponential backoff (or a document's `retry` policy), runs scheduled documents at
//! their due times, notifies, and writes states back to their documents.
//!
//! Every decision is made by the pure [`machine::Core`] (`on(event, now) -> actions`). This
//! module is its thin shell: one task (started by [`Scheduler::start`]) follows `_replicator`'s
//! changes, receives job endings and probe answers, feeds them to the core as events, and
//! performs the actions: it spawns and cancels job tasks, records states on blocking threads
//! (a writer task), hands notifications to their delivery task and answers `POST /_replicate`
//! callers. Status readers take the core's lock briefly.
//! Invariants: every job task is owned by the shell's `JoinSet` and is cancelled (with a final
//! checkpoint) on shutdown; the shell never decides, the core never does I/O.

pub mod check;
pub mod docs;
pub mod machine;
pub mod notify;
pub mod options;
pub mod rotation;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::replicator::{self, Env, Outcome, ReplError, Spec};
use crate::store::{ReadOpts, Store};
use docs::REPLICATOR_DB;
pub use machine::{
    Action, Core, DocEntry, DocState, Event, Job, Now, Origin, Phase, State, WriteBack,
};

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

/// Where a one-shot `POST /_replicate` caller waits for its job's ending.
pub type Waiter = oneshot::Receiver<Result<Outcome, ReplError>>;

struct Ended {
    id: String,
    generation: u64,
    result: Result<Outcome, ReplError>,
}

pub struct Scheduler {
    pub env: Env,
    pub cfg: SchedulerConfig,
    store: Arc<Store>,
    core: Mutex<Core>,
    /// Actions decided outside the shell's task (a `POST /_replicate` cancelled by a
    /// handler), performed by the task at its next turn.
    outbox: Mutex<Vec<Action>>,
    /// One-shot `POST /_replicate` callers, by job id.
    waiters: Mutex<HashMap<String, oneshot::Sender<Result<Outcome, ReplError>>>>,
    kick: mpsc::Sender<()>,
    kick_rx: Mutex<Option<mpsc::Receiver<()>>>,
    notifier: notify::Notifier,
    notify_rx: Mutex<Option<mpsc::Receiver<notify::Delivery>>>,
    /// States to record in documents, for the writer task ([`write_backs`]).
    writes: mpsc::Sender<Option<WriteBack>>,
    writes_rx: Mutex<Option<mpsc::Receiver<Option<WriteBack>>>>,
}

/// What the shell's task owns while it runs: the job tasks and their cancel switches, the
/// probes, and the channel job endings come back on.
struct Tasks {
    running: JoinSet<()>,
    cancels: HashMap<u64, watch::Sender<bool>>,
    probes: JoinSet<(String, bool)>,
    end_tx: mpsc::Sender<Ended>,
}

impl Scheduler {
    pub fn new(store: Arc<Store>, cfg: SchedulerConfig) -> Arc<Scheduler> {
        let (kick, kick_rx) = mpsc::channel(1);
        let (notifier, notify_rx) = notify::Notifier::new();
        let (writes, writes_rx) = mpsc::channel(4096);
        let core = Core::new(cfg.clone(), store.uuid().to_owned(), Now::from_clocks());
        Arc::new(Scheduler {
            env: Env {
                store: Some(store.clone()),
                server_uuid: store.uuid().to_owned(),
            },
            cfg,
            store,
            core: Mutex::new(core),
            outbox: Mutex::new(Vec::new()),
            waiters: Mutex::new(HashMap::new()),
            kick,
            kick_rx: Mutex::new(Some(kick_rx)),
            notifier,
            notify_rx: Mutex::new(Some(notify_rx)),
            writes,
            writes_rx: Mutex::new(Some(writes_rx)),
        })
    }

    /// Reads the state for status output.
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        match self.core.lock() {
            Ok(c) => f(&c.state),
            Err(p) => f(&p.into_inner().state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
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
        let waiting = !spec.continuous;
        let (id, rx) = {
            // The waiter is registered under the core's lock, before the job can start.
            let mut core = self.lock();
            let id = core.add_transient(spec, waiting, Now::from_clocks())?;
            let rx = waiting.then(|| {
                let (tx, rx) = oneshot::channel();
                if let Ok(mut w) = self.waiters.lock() {
                    w.insert(id.clone(), tx);
                }
                rx
            });
            (id, rx)
        };
        self.wake();
        Ok((id, rx))
    }

    /// Waits (up to `limit`) until the jobs of these documents have been picked up as deleted
    /// and every removed job's task has ended, so nothing they were writing lands afterwards.
    pub async fn wait_stopped(&self, doc_ids: &[String], limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            let busy = {
                let core = self.lock();
                core.is_stopping()
                    || core
                        .state
                        .jobs
                        .values()
                        .any(|j| j.doc_id().is_some_and(|d| doc_ids.iter().any(|x| x == d)))
            };
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
        let (key, actions) = self.lock().cancel_transient(id)?;
        if let Ok(mut o) = self.outbox.lock() {
            o.extend(actions);
        }
        self.wake();
        Some(key)
    }

    async fn main(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(mut kick_rx) = self.kick_rx.lock().ok().and_then(|mut k| k.take()) else {
            return;
        };
        let (end_tx, mut end_rx) = mpsc::channel::<Ended>(64);
        let mut tasks = Tasks {
            running: JoinSet::new(),
            cancels: HashMap::new(),
            probes: JoinSet::new(),
            end_tx,
        };
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
        let mut events: Vec<Event> = Vec::new();
        loop {
            // `_replicator` deleted: its documents are gone, so are their jobs; a database
            // created again under the name is read from its start.
            if repdb.is_dropped() {
                let ids: Vec<String> = self.lock().state.docs.keys().cloned().collect();
                events.extend(
                    ids.into_iter()
                        .map(|doc_id| Event::DocWritten { doc_id, doc: None }),
                );
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
                    let doc = if c.doc.is_deleted() {
                        None
                    } else {
                        repdb.get(&c.id, None, &ReadOpts::default()).ok()
                    };
                    events.push(Event::DocWritten { doc_id: c.id, doc });
                }
                seen = seen.max(now_seq);
            }
            events.push(Event::Tick);
            let now = Now::from_clocks();
            let (actions, wake) = {
                let mut core = self.lock();
                let mut actions = self
                    .outbox
                    .lock()
                    .map(|mut o| std::mem::take(&mut *o))
                    .unwrap_or_default();
                for e in events.drain(..) {
                    actions.extend(core.on(e, now));
                }
                (actions, core.next_wake(now))
            };
            for a in actions {
                self.perform(a, &mut tasks);
            }
            tokio::select! {
                Some(Ok((host, up))) = tasks.probes.join_next(), if !tasks.probes.is_empty() => {
                    if up {
                        events.push(Event::PeerReachable { host });
                    }
                }
                _ = updates.changed() => {}
                _ = kick_rx.recv() => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
                Some(e) = end_rx.recv() => {
                    tasks.cancels.remove(&e.generation);
                    events.push(Event::Ended { id: e.id, generation: e.generation, result: e.result });
                }
                Some(_) = tasks.running.join_next(), if !tasks.running.is_empty() => {}
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            }
        }
        // Shutdown: cancel every running job; each writes a final checkpoint.
        for cancel in tasks.cancels.values() {
            let _ = cancel.send(true);
        }
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = tasks.running.join_next() => if r.is_none() { break },
                _ = &mut deadline => { tasks.running.abort_all(); }
            }
        }
        if let Some(n) = notifications {
            n.abort();
        }
        tasks.probes.abort_all();
        // The states of jobs that ended are recorded before the scheduler stops.
        if let Some(w) = writer {
            let _ = self.writes.send(None).await;
            let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
        }
    }

    /// Carries out one of the core's decisions.
    fn perform(&self, action: Action, tasks: &mut Tasks) {
        match action {
            Action::Start {
                id,
                generation,
                spec,
                state,
            } => {
                let (cancel_tx, cancel_rx) = watch::channel(false);
                tasks.cancels.insert(generation, cancel_tx);
                let (env, tx) = (self.env.clone(), tasks.end_tx.clone());
                tasks.running.spawn(async move {
                    let result = replicator::run(&spec, &env, state, cancel_rx).await;
                    let _ = tx
                        .send(Ended {
                            id,
                            generation,
                            result,
                        })
                        .await;
                });
            }
            Action::Cancel { generation } => {
                if let Some(c) = tasks.cancels.get(&generation) {
                    let _ = c.send(true);
                }
            }
            Action::Reply { id, result } => {
                let tx = self.waiters.lock().ok().and_then(|mut w| w.remove(&id));
                if let Some(tx) = tx {
                    let _ = tx.send(result);
                }
            }
            Action::WriteBack(w) => {
                if self.writes.try_send(Some(w)).is_err() {
                    tracing::warn!("state write-back queue full; a state is not recorded");
                }
            }
            Action::Notify(n) => self.notifier.send(&n.to, n.transition, n.body, &n.state),
            Action::Probe { host } => {
                tasks.probes.spawn(probe(host));
            }
        }
    }
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
            json!(crate::ids::iso8601(SystemTime::now())),
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
