//! CouchDB's status shapes: `_scheduler/jobs`, `_scheduler/docs` and `_active_tasks`.
//! Endpoints are shown redacted (`user:*****@`), never with credentials.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::docs::REPLICATOR_DB;
use super::{DocEntry, DocState, Job, Phase, State};
use crate::replicator::checkpoint::iso8601;

const NODE: &str = "settee@127.0.0.1";

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
