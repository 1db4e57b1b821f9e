//! What a replication would send, without sending it (`POST /_replicate/_preview`,
//! `settee replicate --dry-run`, `GET /_sharing/{id}/pending`).
//!
//! A preview runs the real run's code ([`job::read_changes`], [`job::replicate_batch`],
//! [`job::remove_unmatched`]: the same filter, `fields` and `unmatched` decisions) with the
//! writes recorded instead of made, then reads the target's leaves of those documents once to
//! say how each would land. It starts where the matching replication's checkpoint says, never
//! touches a running job, creates nothing and writes nothing to either side.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::checkpoint;
use super::id::replication_id;
use super::job::{self, Batch, Shared, Would};
use super::peer::Peer;
use super::stats::JobState;
use super::unmatched::Leaf;
use super::{Env, ReplError, Spec};

/// How a document would land on the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Landing {
    /// The target does not have the document.
    Missing,
    /// The target's live version is an ancestor of what would be sent: no conflict.
    Ancestor,
    /// The target has a live version the source lacks: the push creates a conflict.
    Diverged,
    /// The target holds only a deletion the source lacks: the push resurrects the document.
    DeletedThere,
}

impl Landing {
    pub fn as_str(self) -> &'static str {
        match self {
            Landing::Missing => "missing",
            Landing::Ancestor => "ancestor",
            Landing::Diverged => "diverged",
            Landing::DeletedThere => "deleted_there",
        }
    }
}

/// Classifies one document: `path` holds every revision id on the paths of what would be
/// written (leaf first), `live` whether any of it is a live revision.
pub fn classify(path: &[String], live: bool, target: &[Leaf]) -> Landing {
    if target.is_empty() {
        return Landing::Missing;
    }
    let off_path = |l: &&Leaf| !path.contains(&l.rev);
    if target.iter().filter(|l| !l.deleted).any(|l| off_path(&l)) {
        return Landing::Diverged;
    }
    let all_deleted = target.iter().all(|l| l.deleted);
    if live && all_deleted && target.iter().any(|l| off_path(&l)) {
        return Landing::DeletedThere;
    }
    Landing::Ancestor
}

/// Runs the preview of a replication: at least `limit` documents that would be sent (unless
/// the source ends first), starting at `since`, else the replication's checkpoint, else its
/// `since_seq`, else the beginning. For a continuous replication that is what its next pass
/// sends: the changes the source has now (checkpoints are shared with the one-shot form, as
/// the replication id's base is).
pub async fn preview(
    spec: &Spec,
    env: &Env,
    since: Option<Value>,
    limit: usize,
) -> Result<Value, ReplError> {
    // The id (and so the checkpoint) is the replication's own; the pass is one-shot, so the
    // reader stops at the source's end instead of following it.
    let rep_id = replication_id(spec, &env.server_uuid);
    let one_pass = Spec {
        continuous: false,
        ..spec.clone()
    };
    let spec = &one_pass;
    let (source, _) = Peer::open(&spec.source, env, spec, false).await?;
    let target = match Peer::open(&spec.target, env, spec, false).await {
        Ok((t, _)) => t,
        Err(ReplError::DbNotFound { endpoint }) if spec.create_target => Peer::Empty(endpoint),
        Err(e) => return Err(e),
    };
    let start = match since {
        Some(s) => s,
        None => {
            let (slog, tlog) = if spec.use_checkpoints {
                tokio::try_join!(
                    source.get_local(&rep_id.base),
                    target.get_local(&rep_id.base)
                )?
            } else {
                (None, None)
            };
            checkpoint::start_seq(slog.as_ref(), tlog.as_ref())
                .or_else(|| spec.since_seq.clone())
                .unwrap_or(json!(0))
        }
    };
    let limit = limit.clamp(1, 10_000);
    let mut shared = Shared::new(spec, source, target, Arc::new(JobState::default()));
    shared.dry = Some(std::sync::Mutex::new(Vec::new()));
    let shared = Arc::new(shared);
    let mut reading = spec.clone();
    reading.worker_batch_size = limit.min(spec.worker_batch_size);
    let (tx, mut rx) = mpsc::channel::<Batch>(1);
    let reader = tokio::spawn(job::read_changes(
        shared.clone(),
        reading,
        start.clone(),
        tx,
    ));
    let mut last_seq = start.clone();
    let recorded = |s: &Shared| s.dry.as_ref().and_then(|d| d.lock().ok().map(|d| d.len()));
    let outcome = async {
        while let Some(batch) = rx.recv().await {
            if !batch.rows.is_empty() {
                job::replicate_batch(&shared, batch.rows).await?;
            }
            if !batch.gone.is_empty() {
                job::remove_unmatched(&shared, batch.gone).await?;
            }
            last_seq = batch.last_seq;
            if recorded(&shared).unwrap_or(0) >= limit {
                break;
            }
        }
        Ok::<_, ReplError>(())
    }
    .await;
    drop(rx);
    let read = reader.await;
    outcome?;
    match read {
        Ok(r) => {
            r?;
        }
        Err(e) if e.is_cancelled() => {}
        Err(e) => return Err(ReplError::Internal(e.to_string())),
    }
    let would = shared
        .dry
        .as_ref()
        .and_then(|d| d.lock().ok().map(|mut d| std::mem::take(&mut *d)))
        .unwrap_or_default();
    report(&shared, would, &rep_id.base, start, last_seq).await
}

/// One row per document, in the order the run would write them.
async fn report(
    shared: &Shared,
    would: Vec<Would>,
    rep_id: &str,
    since: Value,
    last_seq: Value,
) -> Result<Value, ReplError> {
    struct Row {
        revs: Vec<String>,
        path: Vec<String>,
        live: bool,
        purge: bool,
    }
    let mut order: Vec<String> = Vec::new();
    let mut rows: HashMap<String, Row> = HashMap::new();
    for w in would {
        let (id, revs, path, live, purge) = match w {
            Would::Write(d) => {
                let id = d["_id"].as_str().unwrap_or_default().to_owned();
                let leaf = Leaf::from_doc(&d);
                let rev = leaf.as_ref().map(|l| l.rev.clone()).unwrap_or_default();
                let path = leaf.map(|l| l.path).unwrap_or_default();
                let live = d.get("_deleted") != Some(&Value::Bool(true));
                (id, vec![rev], path, live, false)
            }
            Would::Purge(id, revs) => (id, revs.clone(), revs, false, true),
        };
        let row = rows.entry(id.clone()).or_insert_with(|| {
            order.push(id);
            Row {
                revs: Vec::new(),
                path: Vec::new(),
                live: false,
                purge: false,
            }
        });
        row.revs.extend(revs);
        row.path.extend(path);
        row.live |= live;
        row.purge |= purge;
    }
    let held = shared.target.leaves(order.clone()).await?;
    let mut counts: Map<String, Value> = Map::new();
    let mut docs = Vec::with_capacity(order.len());
    for id in order {
        let Some(row) = rows.remove(&id) else {
            continue;
        };
        let target = held.get(&id).map(Vec::as_slice).unwrap_or_default();
        let landing = classify(&row.path, row.live, target).as_str();
        let n = counts.entry(landing).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + 1);
        let mut d = json!({"id": id, "revs": row.revs, "deleted": !row.live, "target": landing});
        if row.purge {
            d["purge"] = json!(true);
        }
        docs.push(d);
    }
    counts.insert("total".into(), json!(docs.len()));
    Ok(json!({
        "docs": docs,
        "counts": counts,
        "since": since,
        "last_seq": last_seq,
        "replication_id": rep_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(rev: &str, deleted: bool) -> Leaf {
        Leaf {
            rev: rev.into(),
            deleted,
            path: vec![rev.into()],
            doc: Value::Null,
        }
    }

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_landing() {
        let sent = path(&["3-c", "2-b", "1-a"]);
        assert_eq!(classify(&sent, true, &[]), Landing::Missing);
        assert_eq!(
            classify(&sent, true, &[leaf("2-b", false)]),
            Landing::Ancestor
        );
        assert_eq!(
            classify(&sent, true, &[leaf("2-x", false)]),
            Landing::Diverged,
            "the target edited too"
        );
        assert_eq!(
            classify(&sent, true, &[leaf("2-b", false), leaf("2-x", false)]),
            Landing::Diverged
        );
        assert_eq!(
            classify(&sent, true, &[leaf("3-del", true)]),
            Landing::DeletedThere,
            "deleted there: the push resurrects it"
        );
        assert_eq!(
            classify(&sent, false, &[leaf("3-del", true)]),
            Landing::Ancestor,
            "a deletion onto a deletion resurrects nothing"
        );
        assert_eq!(
            classify(&sent, true, &[leaf("2-b", true)]),
            Landing::Ancestor
        );
    }
}
