//! CouchDB's status shapes: `_scheduler/jobs`, `_scheduler/docs` and `_active_tasks`.
//! Endpoints are shown redacted (`user:*****@`), never with credentials.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::docs::REPLICATOR_DB;
use super::{DocEntry, DocState, Job, Phase, State};
use crate::ids::iso8601;

/// The node name CouchDB clients see (`_scheduler/*`, `/_node/{node}/…`).
pub const NODE: &str = "settee@127.0.0.1";

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One job as `GET /_scheduler/jobs` lists it.
pub fn job_json(j: &Job) -> Value {
    let history: Vec<Value> = j
        .history
        .iter()
        .map(|e| {
            let mut v = json!({"timestamp": iso8601(e.at), "type": e.kind});
            if let Some(r) = &e.reason {
                v["reason"] = json!(r);
            }
            v
        })
        .collect();
    json!({
        "id": j.id,
        "pid": Value::Null,
        "source": j.spec.source.redacted(),
        "target": j.spec.target.redacted(),
        "database": j.doc_id().map(|_| REPLICATOR_DB),
        "user": Value::Null,
        "doc_id": j.doc_id(),
        "info": j.state.info_json(),
        "history": history,
        "node": NODE,
        "start_time": iso8601(j.added),
        "state": j.state_name(),
        "settee": j.spec.settee_options(),
    })
}

/// One document as `GET /_scheduler/docs` lists it.
pub fn doc_json(st: &State, d: &DocEntry) -> Value {
    let mut v = json!({
        "database": REPLICATOR_DB,
        "doc_id": d.doc_id,
        "id": Value::Null,
        "node": NODE,
        "source": d.source,
        "target": d.target,
        "source_proxy": Value::Null,
        "target_proxy": Value::Null,
        "last_updated": iso8601(d.last_updated),
        "start_time": iso8601(d.last_updated),
        "error_count": 0,
        "info": Value::Null,
    });
    match &d.state {
        DocState::Completed(stats) => {
            v["state"] = json!("completed");
            v["info"] = stats.clone();
        }
        DocState::Failed(reason) => {
            v["state"] = json!("failed");
            v["error_count"] = json!(1);
            v["info"] = json!({"error": reason});
        }
        DocState::Scheduled(id) => {
            v["id"] = json!(id);
            match st.jobs.get(id) {
                Some(j) => {
                    v["state"] = json!(j.state_name());
                    v["error_count"] = json!(j.consecutive_crashes);
                    v["start_time"] = json!(iso8601(j.added));
                    v["last_updated"] =
                        json!(iso8601(j.history.front().map(|e| e.at).unwrap_or(j.added)));
                    v["info"] = match &j.phase {
                        Phase::Crashing { reason, .. } => json!({"error": reason}),
                        _ => j.state.info_json(),
                    };
                    if let Some(o) = j.spec.settee_options() {
                        v["settee"] = o;
                    }
                    if j.recurring() {
                        v["info"]["last_run"] = j.last_run.clone().unwrap_or(Value::Null);
                        v["info"]["next_run"] = json!(j.next_run().map(iso8601));
                        if let Some(a) = &j.opts.after {
                            v["info"]["after"] = json!(a);
                        }
                    }
                }
                None => v["state"] = json!("initializing"),
            }
        }
    }
    v
}

/// `GET /_active_tasks`: the running replications.
pub fn active_tasks(st: &State) -> Vec<Value> {
    st.jobs
        .values()
        .filter_map(|j| {
            let Phase::Running { .. } = j.phase else {
                return None;
            };
            let p = j.state.progress();
            let mut v = j.state.info_json();
            let extra = json!({
                "type": "replication",
                "node": NODE,
                "pid": Value::Null,
                "user": Value::Null,
                "replication_id": j.id,
                "database": j.doc_id().map(|_| REPLICATOR_DB),
                "doc_id": j.doc_id(),
                "source": j.spec.source.redacted(),
                "target": j.spec.target.redacted(),
                "continuous": j.spec.continuous,
                "checkpoint_interval": j.spec.checkpoint_interval.as_millis() as u64,
                "started_on": unix(j.started.unwrap_or(j.added)),
                "updated_on": unix(SystemTime::now()),
            });
            if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            let _ = p;
            Some(v)
        })
        .collect()
}

/// What metrics say of one replication: a `_replicator` document (with or without a job) or
/// a `POST /_replicate` job. Never its endpoints: those may carry credentials.
#[derive(Debug, Clone)]
pub struct Figures {
    /// `("doc_id", id)` for a document, `("job_id", id)` for a `/_replicate` job.
    pub key: (&'static str, String),
    pub state: &'static str,
    pub counts: crate::replicator::stats::Counts,
    pub changes_pending: Option<u64>,
    pub checkpointed_at: Option<SystemTime>,
    pub crashes: u64,
}

/// Every state a replication is reported in, one metric series each.
pub const STATES: [&str; 7] = [
    "initializing",
    "pending",
    "running",
    "crashing",
    "scheduled",
    "completed",
    "failed",
];

/// The figures of every replication the scheduler knows.
pub fn figures(st: &State) -> Vec<Figures> {
    let of_job = |key: (&'static str, String), j: &Job| {
        let p = j.state.progress();
        Figures {
            key,
            state: j.state_name(),
            counts: j.state.stats.snapshot(),
            changes_pending: p.changes_pending,
            checkpointed_at: p.checkpointed_at,
            crashes: j.crashes,
        }
    };
    let docs = st.docs.values().map(|d| {
        let key = ("doc_id", d.doc_id.clone());
        let ended = |state, stats: Option<&Value>| Figures {
            key: key.clone(),
            state,
            counts: stats.map(counts_of).unwrap_or_default(),
            changes_pending: None,
            checkpointed_at: None,
            crashes: 0,
        };
        match &d.state {
            DocState::Completed(stats) => ended("completed", Some(stats)),
            DocState::Failed(_) => ended("failed", None),
            DocState::Scheduled(id) => match st.jobs.get(id) {
                Some(j) => of_job(key, j),
                None => ended("initializing", None),
            },
        }
    });
    let transient = st
        .jobs
        .values()
        .filter(|j| j.doc_id().is_none())
        .map(|j| of_job(("job_id", j.id.clone()), j));
    docs.chain(transient).collect()
}

/// Counters back from a completed document's `_replication_stats`.
fn counts_of(stats: &Value) -> crate::replicator::stats::Counts {
    let n = |k: &str| stats.get(k).and_then(Value::as_u64).unwrap_or(0);
    crate::replicator::stats::Counts {
        revisions_checked: n("revisions_checked"),
        missing_revisions_found: n("missing_revisions_found"),
        docs_read: n("docs_read"),
        docs_written: n("docs_written"),
        doc_write_failures: n("doc_write_failures"),
        bulk_get_docs: n("bulk_get_docs"),
        bulk_get_attempts: n("bulk_get_attempts"),
        docs_removed: n("docs_removed"),
    }
}
