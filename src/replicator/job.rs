//! One replication run: the pipeline from the source's changes to the target's writes.
//!
//! ```text
//!  changes reader ──batches (bounded)──▶ N workers ──done(batch no, seq)──▶ job loop
//!   (source _changes,                     _revs_diff on target              seq tracker,
//!    filter pushed or                     fetch missing from source         checkpoints on
//!    applied here)                        write new_edits:false             both ends
//! ```
//!
//! Memory is bounded by `worker_batch_size × (2 × worker_processes + workers in flight)`
//! documents, never by database size. Every task is owned by the run's `JoinSet` and is
//! aborted when the run ends, however it ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinSet;

use super::checkpoint::{self, Session};
use super::id::{replication_id, RepId};
use super::peer::{ChangeRow, ChangesReq, DbMeta, Missing, Peer, PushFilter};
use super::project::{from_source, is_projection_of, same_content, Fields};
use super::stats::{Counts, JobState, Stats};
use super::unmatched::{self, Action, Gone, Leaf, Unmatched};
use super::{Filter, ReplError, Spec};
use crate::store::Store;

/// What a replication may reach beyond its spec.
#[derive(Clone)]
pub struct Env {
    /// The local store, for local-database endpoints (`None` in a client-only process).
    pub store: Option<Arc<Store>>,
    /// This server's uuid, part of every replication id.
    pub server_uuid: String,
}

/// How a run ended without error.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub rep_id: RepId,
    /// CouchDB's `_replicate` answer: `ok`, `session_id`, `source_last_seq`, `history`.
    pub report: Value,
    /// Counters of this run alone.
    pub counts: Counts,
    /// `true` when the run stopped because it was cancelled (continuous jobs end this way).
    pub cancelled: bool,
}

pub(super) struct Batch {
    pub(super) no: u64,
    pub(super) rows: Vec<ChangeRow>,
    /// Changes whose winning revision does not match (`unmatched` other than `keep`).
    pub(super) gone: Vec<Gone>,
    pub(super) last_seq: Value,
}

pub(super) struct Shared {
    pub(super) source: Peer,
    pub(super) target: Peer,
    pub(super) state: Arc<JobState>,
    pub(super) fields: Option<Arc<Fields>>,
    pub(super) unmatched: Unmatched,
    pub(super) source_wins: bool,
    pub(super) stop_on_write_failure: bool,
    /// `Some` for a preview: what would be written or purged is recorded here instead, and
    /// nothing is written to either side.
    pub(super) dry: Option<std::sync::Mutex<Vec<Would>>>,
}

/// A write a preview records instead of making.
#[derive(Debug)]
pub(super) enum Would {
    Write(Value),
    Purge(String, Vec<String>),
}

impl Shared {
    pub(super) fn new(spec: &Spec, source: Peer, target: Peer, state: Arc<JobState>) -> Shared {
        Shared {
            source,
            target,
            state,
            fields: spec.fields.clone(),
            unmatched: spec.unmatched,
            source_wins: spec.source_wins,
            stop_on_write_failure: spec.stop_on_write_failure,
            dry: None,
        }
    }

    /// Purges target leaves (or records that a preview would).
    async fn purge(&self, req: Vec<(String, Vec<String>)>) -> Result<(), ReplError> {
        if let Some(dry) = &self.dry {
            if let Ok(mut d) = dry.lock() {
                d.extend(req.into_iter().map(|(id, revs)| Would::Purge(id, revs)));
            }
            return Ok(());
        }
        self.target.purge(req).await
    }
}

/// Runs a replication until it is done (one-shot), cancelled (`cancel` turns `true`) or fails.
pub async fn run(
    spec: &Spec,
    env: &Env,
    state: Arc<JobState>,
    mut cancel: watch::Receiver<bool>,
) -> Result<Outcome, ReplError> {
    let rep_id = replication_id(spec, &env.server_uuid);
    state.update(|p| p.replication_id = Some(rep_id.full.clone()));
    // Nothing is written before the loop below, so a cancel (a stop, an edit, shutdown) ends
    // the start-up at once instead of waiting for a peer that accepted the connection and
    // never answers.
    let setup = async {
        let report = Some(state.clone());
        let (source, smeta) =
            Peer::open_for(&spec.source, env, spec, false, report.clone()).await?;
        let (target, tmeta) =
            Peer::open_for(&spec.target, env, spec, spec.create_target, report).await?;
        if spec.unmatched == Unmatched::Purge {
            // Found now, not at the first document that stops matching.
            target.purge(Vec::new()).await?;
        }
        let logs = if spec.use_checkpoints {
            tokio::try_join!(
                source.get_local(&rep_id.base),
                target.get_local(&rep_id.base)
            )?
        } else {
            (None, None)
        };
        Ok::<_, ReplError>((source, smeta, target, tmeta, logs))
    };
    let (source, smeta, target, tmeta, (slog, tlog)) = tokio::select! {
        r = setup => r.inspect_err(|e| {
            tracing::warn!(id = %rep_id.full, error = %e, "replication could not start");
        })?,
        _ = cancel.wait_for(|c| *c) => {
            return Ok(Outcome {
                rep_id,
                report: json!({"ok": true, "no_changes": true}),
                counts: Default::default(),
                cancelled: true,
            });
        }
    };
    let start = checkpoint::start_seq(slog.as_ref(), tlog.as_ref())
        .or_else(|| spec.since_seq.clone())
        .unwrap_or(json!(0));
    tracing::info!(id = %rep_id.full, source = %source.name(), target = %target.name(), since = %start, "replication starting");
    let filtered_by = match spec.filter {
        Filter::All => None,
        Filter::DocIds(_) => Some("source"),
        Filter::Selector(_) if source.filters_selector() && spec.unmatched == Unmatched::Keep => {
            Some("source")
        }
        Filter::Selector(_) => Some("settee"),
    };
    state.update(|p| {
        p.filtered_by = filtered_by;
        p.through_seq = start.clone();
        p.checkpointed_source_seq = start.clone();
        p.source_seq = smeta.update_seq.clone();
    });
    let shared = Arc::new(Shared::new(spec, source, target, state.clone()));
    let mut job = Job {
        spec,
        rep_id,
        shared: shared.clone(),
        smeta,
        tmeta,
        logs: (slog, tlog),
        session_id: crate::ids::new_uuid(),
        start_time: checkpoint::rfc1123_now(),
        start_seq: start.clone(),
        through: start.clone(),
        committed: start.clone(),
        counts_at_start: state.stats.snapshot(),
    };

    let workers = spec.worker_processes;
    let (batch_tx, batch_rx) = mpsc::channel::<Batch>(workers * 2);
    let batch_rx = Arc::new(Mutex::new(batch_rx));
    let (done_tx, mut done_rx) = mpsc::channel::<(u64, Value)>(workers * 4 + 4);
    let mut tasks: JoinSet<Result<Option<u64>, ReplError>> = JoinSet::new();
    tasks.spawn(read_changes(shared.clone(), spec.clone(), start, batch_tx));
    for _ in 0..workers {
        tasks.spawn(work(shared.clone(), batch_rx.clone(), done_tx.clone()));
    }
    drop(done_tx);

    // Periodic checkpoints start at a random point between half an interval and one and a
    // half: jobs started together (a server restart, a bulk write to `_replicator`) would
    // otherwise all checkpoint in the same instant, forever, and each checkpoint is four
    // flushed writes; a thousand at once held real changes up for a second.
    let first = spec
        .checkpoint_interval
        .mul_f64(rand::random::<f64>() + 0.5);
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + first,
        spec.checkpoint_interval,
    );
    // Besides, one checkpoint comes within a second of the first batch written (jittered, so
    // jobs still do not line up): a crash before the first periodic one would otherwise redo
    // everything the run had copied.
    let mut early: Option<tokio::time::Instant> = None;
    let mut early_done = false;
    let mut next_batch = 0u64;
    let mut finished: BTreeMap<u64, Value> = BTreeMap::new();
    let mut total: Option<u64> = None;
    let result = loop {
        if total == Some(next_batch) {
            break Ok(false);
        }
        tokio::select! {
            Some((no, seq)) = done_rx.recv() => {
                finished.insert(no, seq);
                // The through seq advances over the contiguous prefix of finished batches only.
                while let Some(seq) = finished.remove(&next_batch) {
                    job.through = seq;
                    next_batch += 1;
                }
                let through = job.through.clone();
                state.update(|p| p.through_seq = through);
                if !early_done && early.is_none() && job.through != job.committed {
                    let jitter = Duration::from_secs_f64(rand::random::<f64>());
                    early = Some(tokio::time::Instant::now() + jitter);
                }
            }
            _ = async { if let Some(at) = early { tokio::time::sleep_until(at).await } }, if early.is_some() => {
                early = None;
                early_done = true;
                if let Err(e) = job.checkpoint().await {
                    break Err(e);
                }
            }
            joined = tasks.join_next(), if !tasks.is_empty() => match joined {
                Some(Ok(Ok(Some(n)))) => total = Some(n),
                Some(Ok(Ok(None))) | None => {}
                Some(Ok(Err(e))) => break Err(e),
                Some(Err(e)) => break Err(ReplError::Internal(e.to_string())),
            },
            _ = ticker.tick() => {
                if let Err(e) = job.checkpoint().await {
                    break Err(e);
                }
            }
            _ = async { let _ = cancel.wait_for(|c| *c).await; } => break Ok(true),
        }
    };
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    match result {
        Ok(cancelled) => {
            job.checkpoint().await?;
            let counts = state.stats.snapshot().since(&job.counts_at_start);
            tracing::info!(id = %job.rep_id.full, docs_written = counts.docs_written, "replication {}", if cancelled { "stopped" } else { "completed" });
            Ok(Outcome {
                report: job.report(),
                rep_id: job.rep_id.clone(),
                counts,
                cancelled,
            })
        }
        Err(e) => {
            // What is written below the through seq is safe to record whatever failed.
            if let Err(ce) = job.checkpoint().await {
                tracing::debug!(error = %ce, "checkpoint after failure");
            }
            tracing::warn!(id = %job.rep_id.full, error = %e, "replication failed");
            Err(e)
        }
    }
}

struct Job<'a> {
    spec: &'a Spec,
    rep_id: RepId,
    shared: Arc<Shared>,
    smeta: DbMeta,
    tmeta: DbMeta,
    /// The last checkpoint documents of (source, target).
    logs: (Option<Value>, Option<Value>),
    session_id: String,
    start_time: String,
    start_seq: Value,
    through: Value,
    committed: Value,
    counts_at_start: Counts,
}

impl Job<'_> {
    fn session_body(&self) -> Value {
        let counts = self
            .shared
            .state
            .stats
            .snapshot()
            .since(&self.counts_at_start);
        let s = Session {
            session_id: &self.session_id,
            start_time: &self.start_time,
            start_seq: &self.start_seq,
            recorded_seq: &self.through,
            counts,
        };
        checkpoint::body(
            self.logs.0.as_ref(),
            &s,
            matches!(self.spec.filter, Filter::DocIds(_)),
        )
    }

    fn report(&self) -> Value {
        let mut v = self.session_body();
        v["ok"] = json!(true);
        v
    }

    /// Records `through` on both ends after making both durable, unless nothing moved.
    async fn checkpoint(&mut self) -> Result<(), ReplError> {
        if !self.spec.use_checkpoints || self.through == self.committed {
            return Ok(());
        }
        let (s, t) = (&self.shared.source, &self.shared.target);
        let (ts, tt) = tokio::try_join!(s.ensure_full_commit(), t.ensure_full_commit())?;
        if !self.smeta.instance_start_time.is_empty() && ts != self.smeta.instance_start_time {
            return Err(ReplError::Recreated { which: "source" });
        }
        if !self.tmeta.instance_start_time.is_empty() && tt != self.tmeta.instance_start_time {
            return Err(ReplError::Recreated { which: "target" });
        }
        let body = self.session_body();
        s.put_local(&self.rep_id.base, body.clone()).await?;
        t.put_local(&self.rep_id.base, body.clone()).await?;
        self.logs = (Some(body.clone()), Some(body));
        self.committed = self.through.clone();
        let seq = self.through.clone();
        self.shared.state.update(|p| {
            p.checkpointed_source_seq = seq;
            p.checkpointed_at = Some(std::time::SystemTime::now());
        });
        Ok(())
    }
}

/// Reads the source's changes in pages of `worker_batch_size` and hands them to the workers.
/// Returns how many batches it sent once a one-shot replication has read everything.
pub(super) async fn read_changes(
    shared: Arc<Shared>,
    spec: Spec,
    mut since: Value,
    tx: mpsc::Sender<Batch>,
) -> Result<Option<u64>, ReplError> {
    // With `unmatched`, the reader must see the changes the selector hides: it reads every
    // change with its winning body and sorts them here.
    let watch_unmatched = spec.unmatched != Unmatched::Keep;
    let mut local_selector = match &spec.filter {
        Filter::Selector(s) if watch_unmatched || !shared.source.filters_selector() => {
            Some(s.clone())
        }
        _ => None,
    };
    let rules = spec
        .fields
        .as_ref()
        .filter(|f| f.per_kind() && watch_unmatched);
    let wait = spec
        .continuous
        .then(|| (spec.connection_timeout / 3).max(Duration::from_secs(1)));
    let mut no = 0u64;
    loop {
        let filter = match (&spec.filter, &local_selector) {
            (Filter::DocIds(ids), _) => PushFilter::DocIds(ids),
            (Filter::Selector(s), None) => PushFilter::Selector(s),
            _ => PushFilter::None,
        };
        // Each wait is cut short by a random part of itself: jobs started together would
        // otherwise time out together, and a thousand idle jobs re-asking in the same instant
        // delayed real changes by a second (benches/jobs.sh, p99 at 1,000 jobs).
        let wait = wait.map(|w| w.mul_f64(rand::random::<f64>().mul_add(0.5, 0.5)));
        let req = ChangesReq {
            since: &since,
            limit: spec.worker_batch_size,
            wait,
            winning_only: spec.winning_revs_only,
            filter,
            include_docs: local_selector.is_some() || rules.is_some(),
        };
        let page = match shared.source.changes(&req).await {
            Err(e)
                if matches!(filter, PushFilter::Selector(_))
                    && !shared.source.filters_selector() =>
            {
                // The source refused the selector filter: filter here from now on.
                tracing::info!(source = %shared.source.name(), error = %e, "source cannot filter by selector; settee filters");
                shared.state.update(|p| p.filtered_by = Some("settee"));
                if let Filter::Selector(s) = &spec.filter {
                    local_selector = Some(s.clone());
                }
                continue;
            }
            r => r?,
        };
        let raw = page.rows.len();
        let mut rows = page.rows;
        let mut gone = Vec::new();
        if local_selector.is_some() || rules.is_some() {
            let matches = |d: &Value| {
                local_selector.as_ref().is_none_or(|s| s.matches(d))
                    && rules.is_none_or(|f| f.rule_for(d).is_some())
            };
            let (kept, dropped): (Vec<ChangeRow>, Vec<ChangeRow>) = rows
                .into_iter()
                .partition(|r| r.doc.as_ref().is_some_and(matches));
            rows = kept;
            if watch_unmatched {
                gone = dropped
                    .into_iter()
                    .map(|r| Gone {
                        plain_tombstone: r.deleted
                            && r.doc.as_ref().is_none_or(|d| {
                                d.as_object()
                                    .is_none_or(|o| o.keys().all(|k| k.starts_with('_')))
                            }),
                        id: r.id,
                    })
                    .collect();
            }
            for r in &mut rows {
                r.doc = None;
            }
        }
        shared.state.update(|p| {
            p.source_seq = page.last_seq.clone();
            p.changes_pending = page.pending;
        });
        since = page.last_seq.clone();
        if tx
            .send(Batch {
                no,
                rows,
                gone,
                last_seq: page.last_seq,
            })
            .await
            .is_err()
        {
            return Ok(None);
        }
        no += 1;
        if !spec.continuous && raw < spec.worker_batch_size {
            return Ok(Some(no));
        }
    }
}

/// A worker: for each batch, ask the target what it lacks, fetch that from the source, write it.
async fn work(
    shared: Arc<Shared>,
    rx: Arc<Mutex<mpsc::Receiver<Batch>>>,
    done: mpsc::Sender<(u64, Value)>,
) -> Result<Option<u64>, ReplError> {
    loop {
        let batch = rx.lock().await.recv().await;
        let Some(batch) = batch else {
            return Ok(None);
        };
        if !batch.rows.is_empty() {
            replicate_batch(&shared, batch.rows).await?;
        }
        if !batch.gone.is_empty() {
            remove_unmatched(&shared, batch.gone).await?;
        }
        if done.send((batch.no, batch.last_seq)).await.is_err() {
            return Ok(None);
        }
    }
}

/// Pushes one batch of changes; with `resolve: source-wins`, then deletes the target's other
/// live leaves of the documents offered.
pub(super) async fn replicate_batch(
    shared: &Shared,
    rows: Vec<ChangeRow>,
) -> Result<(), ReplError> {
    let stats = &shared.state.stats;
    let checked: usize = rows.iter().map(|r| r.revs.len()).sum();
    Stats::add(&stats.revisions_checked, checked as u64);
    // `_local` documents never replicate, whatever a source's feed lists.
    let req: Vec<(String, Vec<String>)> = rows
        .into_iter()
        .filter(|r| !r.id.starts_with(crate::store::LOCAL_PREFIX))
        .map(|r| (r.id, r.revs))
        .collect();
    let offered: Vec<(String, Vec<String>)> = match (&shared.fields, shared.source_wins) {
        (_, false) => Vec::new(),
        (None, true) => req.clone(),
        (Some(f), true) => req
            .iter()
            .map(|(id, revs)| {
                (
                    id.clone(),
                    revs.iter().filter_map(|r| f.map_rev(r)).collect(),
                )
            })
            .collect(),
    };
    match &shared.fields {
        Some(fields) => replicate_projected(shared, fields, req).await?,
        None => push_batch(shared, req).await?,
    }
    if shared.source_wins {
        resolve_source_wins(shared, offered).await?;
    }
    Ok(())
}

/// `resolve: source-wins`: for each document offered, once one of the offered revisions is
/// a live leaf of the target, every other live leaf there gets a tombstone child, so the
/// source's version is the only one. A document whose push failed keeps its leaves.
async fn resolve_source_wins(
    shared: &Shared,
    offered: Vec<(String, Vec<String>)>,
) -> Result<(), ReplError> {
    let ids = offered.iter().map(|(id, _)| id.clone()).collect();
    let held = shared.target.leaves(ids).await?;
    let mut writes = Vec::new();
    for (id, revs) in &offered {
        let Some(leaves) = held.get(id) else { continue };
        let live: Vec<&Leaf> = leaves.iter().filter(|l| !l.deleted).collect();
        if !live.iter().any(|l| revs.contains(&l.rev)) {
            continue;
        }
        writes.extend(
            live.iter()
                .filter(|l| !revs.contains(&l.rev))
                .filter_map(|l| unmatched::tombstone_child(id, &l.rev)),
        );
    }
    write_target(shared, writes).await
}

async fn push_batch(shared: &Shared, req: Vec<(String, Vec<String>)>) -> Result<(), ReplError> {
    let stats = &shared.state.stats;
    let asked: HashMap<String, Vec<String>> = req.iter().cloned().collect();
    let missing = only_offered(&asked, shared.target.revs_diff(req).await?);
    let found: usize = missing.iter().map(|m| m.missing.len()).sum();
    Stats::add(&stats.missing_revisions_found, found as u64);
    if missing.is_empty() {
        return Ok(());
    }
    let docs = fetch_requested(shared, &missing).await?;
    write_target(shared, docs).await
}

/// Fetches revisions from the source and keeps only those asked for ([`is_requested`]); the
/// others are logged and counted as write failures.
async fn fetch_requested(shared: &Shared, missing: &[Missing]) -> Result<Vec<Value>, ReplError> {
    let stats = &shared.state.stats;
    let (docs, _not_found) = shared.source.fetch(missing).await?;
    Stats::add(&stats.docs_read, docs.len() as u64);
    Stats::add(&stats.bulk_get_attempts, 1);
    Stats::add(&stats.bulk_get_docs, docs.len() as u64);
    let by_id: HashMap<&str, &Missing> = missing.iter().map(|m| (m.id.as_str(), m)).collect();
    let (docs, foreign): (Vec<Value>, Vec<Value>) =
        docs.into_iter().partition(|d| is_requested(d, &by_id));
    for d in &foreign {
        let (id, rev) = (d["_id"].to_string(), d["_rev"].to_string());
        tracing::warn!(source = %shared.source.name(), %id, %rev, "the source sent a revision that was not asked for; not written");
    }
    Stats::add(&stats.doc_write_failures, foreign.len() as u64);
    Ok(docs)
}

/// Writes replicated revisions to the target and counts what was written and refused.
async fn write_target(shared: &Shared, docs: Vec<Value>) -> Result<(), ReplError> {
    if docs.is_empty() {
        return Ok(());
    }
    if let Some(dry) = &shared.dry {
        if let Ok(mut d) = dry.lock() {
            d.extend(docs.into_iter().map(Would::Write));
        }
        return Ok(());
    }
    let stats = &shared.state.stats;
    let n = docs.len() as u64;
    let errors = shared.target.write(docs).await?;
    for e in &errors {
        let (id, err) = (
            e.get("id").cloned().unwrap_or_default(),
            e.get("error").cloned().unwrap_or_default(),
        );
        tracing::warn!(target_db = %shared.target.name(), %id, error = %err, "replicator could not write a document");
    }
    Stats::add(&stats.doc_write_failures, errors.len() as u64);
    Stats::add(&stats.docs_written, n.saturating_sub(errors.len() as u64));
    match errors.first() {
        Some(e) if shared.stop_on_write_failure => {
            let text = |k: &str| {
                e.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            // The batch is not done, so no checkpoint passes it.
            Err(ReplError::WriteRefused {
                endpoint: shared.target.name(),
                id: text("id"),
                error: text("error"),
                reason: text("reason"),
            })
        }
        _ => Ok(()),
    }
}

/// A batch under a field whitelist: the target is asked about the mapped revisions, the
/// missing ones are fetched from the source, projected and written under their mapped ids,
/// except where the projection equals the copy the target already holds on that branch (an
/// edit of unlisted fields writes nothing).
async fn replicate_projected(
    shared: &Shared,
    fields: &Fields,
    req: Vec<(String, Vec<String>)>,
) -> Result<(), ReplError> {
    let stats = &shared.state.stats;
    let mut source_of: HashMap<(String, String), String> = HashMap::new();
    let mapped: Vec<(String, Vec<String>)> = req
        .into_iter()
        .map(|(id, revs)| {
            let m = revs
                .into_iter()
                .filter_map(|r| {
                    let m = fields.map_rev(&r)?;
                    source_of.insert((id.clone(), m.clone()), r);
                    Some(m)
                })
                .collect();
            (id, m)
        })
        .collect();
    let asked: HashMap<String, Vec<String>> = mapped.iter().cloned().collect();
    let missing = only_offered(&asked, shared.target.revs_diff(mapped).await?);
    let found: usize = missing.iter().map(|m| m.missing.len()).sum();
    Stats::add(&stats.missing_revisions_found, found as u64);
    if missing.is_empty() {
        return Ok(());
    }
    // Ask the source for its own revisions; attachments come whole when a rule sends them
    // (the target cannot resolve a stub of a revision it never saw), else as stubs.
    let wanted: Vec<Missing> = missing
        .iter()
        .map(|m| {
            let revs: Vec<String> = m
                .missing
                .iter()
                .filter_map(|r| source_of.get(&(m.id.clone(), r.clone())).cloned())
                .collect();
            Missing {
                id: m.id.clone(),
                possible_ancestors: if fields.wants_attachments() {
                    Vec::new()
                } else {
                    revs.clone()
                },
                missing: revs,
            }
        })
        .collect();
    let docs = fetch_requested(shared, &wanted).await?;
    let ids: Vec<String> = missing.iter().map(|m| m.id.clone()).collect();
    let held = shared.target.leaves(ids).await?;
    let mut writes = Vec::new();
    let mut loops = Vec::new();
    for d in &docs {
        let Some(p) = fields.project(d) else {
            continue;
        };
        let id = p["_id"].as_str().unwrap_or_default();
        let target: &[Leaf] = held.get(id).map(Vec::as_slice).unwrap_or_default();
        match decide_projected(&p, &source_path(d), target) {
            Projected::Echo => loops.push(id.to_owned()),
            Projected::Same => {}
            Projected::Write { supersede } => {
                writes.extend(
                    supersede
                        .iter()
                        .filter_map(|l| unmatched::tombstone_child(id, l)),
                );
                writes.push(p);
            }
        }
    }
    if !loops.is_empty() {
        tracing::warn!(source = %shared.source.name(), target = %shared.target.name(), ids = ?loops, "not sending projections of the target's own revisions back (fields in both directions form a loop)");
        shared.state.update(|p| p.note_loops(loops));
    }
    write_target(shared, writes).await
}

/// The revision ids on a fetched document's path, leaf first.
fn source_path(d: &Value) -> Vec<String> {
    Leaf::from_doc(d).map(|l| l.path).unwrap_or_default()
}

/// What to do with one projected revision, given the target's leaves.
#[derive(Debug, PartialEq)]
enum Projected {
    /// The source revision is itself a projection of a revision the target has: sending it
    /// back would grow the tree forever (a field list in both directions).
    Echo,
    /// The target's copy on this branch already has this content: nothing to write.
    Same,
    /// Write it, and tombstone these target leaves: copies of this source's revisions
    /// written unprojected or under another field list, which the new projection replaces.
    Write { supersede: Vec<String> },
}

fn decide_projected(p: &Value, source: &[String], target: &[Leaf]) -> Projected {
    let target_revs: Vec<String> = target.iter().flat_map(|l| l.path.clone()).collect();
    if source.iter().any(|s| is_projection_of(s, &target_revs)) {
        return Projected::Echo;
    }
    let mapped = source_path(p);
    if target
        .iter()
        .any(|l| mapped.contains(&l.rev) && same_content(p, &l.doc))
    {
        return Projected::Same;
    }
    let supersede = target
        .iter()
        .filter(|l| !l.deleted && !mapped.contains(&l.rev) && from_source(&l.rev, source))
        .map(|l| l.rev.clone())
        .collect();
    Projected::Write { supersede }
}

/// Documents whose winning revision stopped matching: their target copies that came from
/// this source are deleted or purged ([`unmatched::decide`]).
pub(super) async fn remove_unmatched(shared: &Shared, gone: Vec<Gone>) -> Result<(), ReplError> {
    let ids: Vec<String> = gone
        .iter()
        .filter(|g| !g.id.starts_with(crate::store::LOCAL_PREFIX))
        .map(|g| g.id.clone())
        .collect();
    let held = shared.target.leaves(ids).await?;
    if held.is_empty() {
        return Ok(());
    }
    let sources = shared.source.leaves(held.keys().cloned().collect()).await?;
    let mut writes = Vec::new();
    let mut sends = Vec::new();
    let mut purges = Vec::new();
    let mut kept = Vec::new();
    for g in &gone {
        let (Some(t), Some(s)) = (held.get(&g.id), sources.get(&g.id)) else {
            continue;
        };
        for a in unmatched::decide(shared.unmatched, shared.fields.is_some(), g, s, t) {
            match a {
                Action::Write(d) => writes.push(d),
                Action::Send { id, rev } => sends.push(Missing {
                    id,
                    missing: vec![rev],
                    possible_ancestors: Vec::new(),
                }),
                Action::Purge { id, revs } => purges.push((id, revs)),
                Action::Kept { id } => kept.push(id),
            }
        }
    }
    if !sends.is_empty() {
        let by_id: HashMap<&str, &Missing> = sends.iter().map(|m| (m.id.as_str(), m)).collect();
        let (docs, _) = shared.source.fetch(&sends).await?;
        writes.extend(
            docs.into_iter()
                .filter(|d| is_requested(d, &by_id) && d.get("_deleted") == Some(&json!(true))),
        );
    }
    let removed = (writes.len() + purges.len()) as u64;
    write_target(shared, writes).await?;
    if !purges.is_empty() {
        shared.purge(purges).await?;
    }
    Stats::add(&shared.state.stats.docs_removed, removed);
    if !kept.is_empty() {
        shared.state.update(|p| p.note_kept(kept));
    }
    Ok(())
}

/// The target's `_revs_diff` answer cut to what was offered: a target must not pull a document
/// or revision this replication never offered (one its selector excludes, say), so ids and
/// revisions it adds are dropped.
fn only_offered(asked: &HashMap<String, Vec<String>>, missing: Vec<Missing>) -> Vec<Missing> {
    missing
        .into_iter()
        .filter_map(|mut m| {
            let offered = asked.get(&m.id)?;
            m.missing.retain(|r| offered.contains(r));
            (!m.missing.is_empty()).then_some(m)
        })
        .collect()
}

/// Whether a fetched revision is one of those asked for, or (fetched with `latest`) a
/// descendant of one: its `_revisions` path goes through the asked revision. A source must
/// not store documents under ids, or revisions, it never announced.
fn is_requested(doc: &Value, missing: &HashMap<&str, &Missing>) -> bool {
    let (Some(id), Some(rev)) = (
        doc.get("_id").and_then(Value::as_str),
        doc.get("_rev").and_then(Value::as_str),
    ) else {
        return false;
    };
    let Some(m) = missing.get(id) else {
        return false;
    };
    let path = doc.get("_revisions").and_then(|r| {
        Some((
            r.get("start")?.as_u64()?,
            r.get("ids")?
                .as_array()?
                .iter()
                .map(Value::as_str)
                .collect::<Option<Vec<_>>>()?,
        ))
    });
    m.missing.iter().any(|want| {
        if want == rev {
            return true;
        }
        let (Some((start, ids)), Some((pos, hash))) = (&path, want.split_once('-')) else {
            return false;
        };
        let Ok(pos) = pos.parse::<u64>() else {
            return false;
        };
        start
            .checked_sub(pos)
            .and_then(|i| ids.get(i as usize))
            .is_some_and(|h| *h == hash)
    })
}

/// When a run started, for status output.
pub fn now_iso() -> String {
    crate::ids::iso8601(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(id: &str, revs: &[&str]) -> Missing {
        Missing {
            id: id.into(),
            missing: revs.iter().map(|r| r.to_string()).collect(),
            possible_ancestors: vec![],
        }
    }

    fn leaf(doc: Value) -> Leaf {
        Leaf::from_doc(&doc).unwrap()
    }

    #[test]
    fn projections_are_written_once_replace_older_copies_and_never_echo() {
        use super::super::project::Fields;
        let old = Fields::parse(&json!(["a", "b"])).unwrap();
        let new = Fields::parse(&json!(["a"])).unwrap();
        let src = json!({"_id": "d", "_rev": "2-bb", "a": 1, "b": 2,
            "_revisions": {"start": 2, "ids": ["bb", "aa"]}});
        let path = source_path(&src);
        let p = new.project(&src).unwrap();
        let mapped1 = new.map_rev("1-aa").unwrap();
        let (_, h) = mapped1.split_once('-').unwrap();
        // The target holds the parent's projection with the same content: nothing to write.
        let parent = leaf(json!({"_id": "d", "_rev": mapped1, "a": 1.0,
            "_revisions": {"start": 1, "ids": [h]}}));
        assert_eq!(
            decide_projected(&p, &path, std::slice::from_ref(&parent)),
            Projected::Same
        );
        // Different content on the parent: written, the parent is extended, not replaced.
        let parent2 = leaf(json!({"_id": "d", "_rev": mapped1, "a": 0,
            "_revisions": {"start": 1, "ids": [h]}}));
        assert_eq!(
            decide_projected(&p, &path, &[parent2]),
            Projected::Write { supersede: vec![] }
        );
        // A copy under the old field list, an unprojected copy, and an edit made on the
        // target: the first two are replaced, the edit stays (a conflict).
        let under_old = old.map_rev("2-bb").unwrap();
        let (_, oh) = under_old.split_once('-').unwrap();
        let t = [
            leaf(
                json!({"_id": "d", "_rev": under_old, "a": 1, "b": 2, "_revisions": {"start": 2, "ids": [oh]}}),
            ),
            leaf(json!({"_id": "d", "_rev": "1-aa", "a": 1, "b": 2})),
            leaf(json!({"_id": "d", "_rev": "3-edit", "a": 5})),
        ];
        assert_eq!(
            decide_projected(&p, &path, &t),
            Projected::Write {
                supersede: vec![under_old.clone(), "1-aa".into()]
            }
        );
        // The other direction: a source revision that is a projection of the target's own
        // revision is never sent back.
        let back = json!({"_id": "d", "_rev": under_old, "a": 1,
            "_revisions": {"start": 2, "ids": [oh]}});
        let p_back = new.project(&back).unwrap();
        let origin = [leaf(json!({"_id": "d", "_rev": "2-bb", "a": 1, "b": 2,
            "_revisions": {"start": 2, "ids": ["bb", "aa"]}}))];
        assert_eq!(
            decide_projected(&p_back, &source_path(&back), &origin),
            Projected::Echo
        );
    }

    #[test]
    fn a_target_gets_only_what_was_offered() {
        let asked: HashMap<String, Vec<String>> =
            [("a".to_string(), vec!["2-b".to_string(), "1-a".to_string()])].into();
        let answer = vec![
            missing("a", &["2-b", "1-x"]),
            missing("secret", &["1-s"]),
            missing("a2", &[]),
        ];
        let kept = only_offered(&asked, answer);
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].id.as_str(), kept[0].missing.clone()),
            ("a", vec!["2-b".to_string()])
        );
        assert!(only_offered(&asked, vec![missing("a", &["9-z"])]).is_empty());
    }

    #[test]
    fn a_source_writes_only_what_was_asked() {
        let want = missing("a", &["2-b"]);
        let by_id: HashMap<&str, &Missing> = [("a", &want)].into();
        let doc = |v: Value| is_requested(&v, &by_id);
        assert!(doc(serde_json::json!({"_id": "a", "_rev": "2-b"})));
        // `latest`: a descendant whose path goes through the asked revision.
        assert!(doc(
            serde_json::json!({"_id": "a", "_rev": "3-c", "_revisions": {"start": 3, "ids": ["c", "b", "a"]}})
        ));
        assert!(!doc(
            serde_json::json!({"_id": "a", "_rev": "3-c", "_revisions": {"start": 3, "ids": ["c", "x", "a"]}})
        ));
        assert!(!doc(serde_json::json!({"_id": "a", "_rev": "3-c"})));
        assert!(!doc(serde_json::json!({"_id": "EVIL-a", "_rev": "2-b"})));
        assert!(!doc(serde_json::json!({"_id": "_local/a", "_rev": "2-b"})));
        assert!(!doc(serde_json::json!({"_rev": "2-b"})));
    }
}
