//! One end of a replication, local or remote, behind the handful of calls the protocol makes.
//! Both kinds speak in the JSON shapes of CouchDB's HTTP API, so the pipeline cannot tell them
//! apart.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::http_peer::HttpPeer;
use super::local_peer::LocalPeer;
use super::stats::JobState;
use super::unmatched::Leaf;
use super::{Endpoint, Env, ReplError, Spec};
use crate::mango::Selector;

/// One `_changes` row: a document and the leaf revisions to replicate.
#[derive(Clone, Debug)]
pub struct ChangeRow {
    pub seq: Value,
    pub id: String,
    pub revs: Vec<String>,
    pub deleted: bool,
    /// The winning revision's body, when asked for (settee-side filtering).
    pub doc: Option<Value>,
}

#[derive(Clone, Debug)]
pub struct ChangesPage {
    pub rows: Vec<ChangeRow>,
    pub last_seq: Value,
    pub pending: Option<u64>,
}

/// A filter pushed into the source's `_changes`.
#[derive(Clone, Copy, Debug)]
pub enum PushFilter<'a> {
    None,
    DocIds(&'a [String]),
    Selector(&'a Selector),
}

#[derive(Clone, Debug)]
pub struct ChangesReq<'a> {
    pub since: &'a Value,
    pub limit: usize,
    /// `Some`: wait up to this long for a change (longpoll); `None`: answer at once.
    pub wait: Option<Duration>,
    /// `winning_revs_only`: only the winner (`style=main_only`), else every leaf.
    pub winning_only: bool,
    pub filter: PushFilter<'a>,
    pub include_docs: bool,
}

/// One `_revs_diff` answer row.
#[derive(Clone, Debug)]
pub struct Missing {
    pub id: String,
    pub missing: Vec<String>,
    pub possible_ancestors: Vec<String>,
}

/// `GET /db` essentials.
#[derive(Clone, Debug)]
pub struct DbMeta {
    pub update_seq: Value,
    pub instance_start_time: String,
}

pub enum Peer {
    Local(LocalPeer),
    Http(Box<HttpPeer>),
    /// A target that does not exist yet, for a preview with `create_target`: it holds
    /// nothing, so every document is missing, and it is never written.
    Empty(String),
}

impl Peer {
    /// Connects to an endpoint and checks its database exists (creating it when asked).
    pub async fn open(
        ep: &Endpoint,
        env: &Env,
        spec: &Spec,
        create: bool,
    ) -> Result<(Peer, DbMeta), ReplError> {
        Peer::open_for(ep, env, spec, create, None).await
    }

    /// [`Peer::open`] for a job: requests being retried show in its state.
    pub async fn open_for(
        ep: &Endpoint,
        env: &Env,
        spec: &Spec,
        create: bool,
        state: Option<Arc<JobState>>,
    ) -> Result<(Peer, DbMeta), ReplError> {
        let peer = match ep {
            Endpoint::Local(db) => Peer::Local(LocalPeer::new(env, db)?),
            Endpoint::Remote(r) => Peer::Http(Box::new(HttpPeer::new(r, spec, state)?)),
        };
        let meta = match peer.info().await {
            Err(ReplError::DbNotFound { .. }) if create => {
                peer.create(spec.create_target_params.as_ref()).await?;
                peer.info().await?
            }
            other => other?,
        };
        Ok((peer, meta))
    }

    pub fn name(&self) -> String {
        match self {
            Peer::Local(p) => p.name().to_owned(),
            Peer::Http(p) => p.name().to_owned(),
            Peer::Empty(name) => name.clone(),
        }
    }

    /// Whether a filter can be pushed into this source's `_changes` (pouchdb-server cannot
    /// take a selector by POST; settee then filters on its own side with the same engine).
    pub fn filters_selector(&self) -> bool {
        match self {
            Peer::Local(_) => true,
            Peer::Http(p) => p.filters_selector(),
            Peer::Empty(_) => true,
        }
    }

    /// The server's uuid (`GET /` of the server holding the database), if it has one.
    pub async fn server_uuid(&self) -> Option<String> {
        match self {
            Peer::Local(p) => Some(p.server_uuid()),
            Peer::Http(p) => p.server_uuid().await,
            Peer::Empty(_) => None,
        }
    }

    pub async fn info(&self) -> Result<DbMeta, ReplError> {
        match self {
            Peer::Local(p) => p.info(),
            Peer::Http(p) => p.info().await,
            Peer::Empty(_) => Ok(DbMeta {
                update_seq: Value::from(0),
                instance_start_time: String::new(),
            }),
        }
    }

    async fn create(
        &self,
        params: Option<&serde_json::Map<String, Value>>,
    ) -> Result<(), ReplError> {
        match self {
            Peer::Local(p) => p.create(),
            Peer::Http(p) => p.create(params).await,
            Peer::Empty(_) => Ok(()),
        }
    }

    pub async fn get_local(&self, id: &str) -> Result<Option<Value>, ReplError> {
        match self {
            Peer::Local(p) => p.get_local(id),
            Peer::Http(p) => p.get_local(id).await,
            Peer::Empty(_) => Ok(None),
        }
    }

    /// Writes a `_local` document whatever its current revision.
    pub async fn put_local(&self, id: &str, body: Value) -> Result<(), ReplError> {
        match self {
            Peer::Local(p) => p.put_local(id, body).await,
            Peer::Http(p) => p.put_local(id, body).await,
            Peer::Empty(_) => Ok(()),
        }
    }

    /// Makes everything written durable; returns the database's `instance_start_time`.
    pub async fn ensure_full_commit(&self) -> Result<String, ReplError> {
        match self {
            Peer::Local(p) => p.ensure_full_commit().await,
            Peer::Http(p) => p.ensure_full_commit().await,
            Peer::Empty(_) => Ok(String::new()),
        }
    }

    pub async fn changes(&self, req: &ChangesReq<'_>) -> Result<ChangesPage, ReplError> {
        match self {
            Peer::Local(p) => p.changes(req).await,
            Peer::Http(p) => p.changes(req).await,
            Peer::Empty(_) => Ok(ChangesPage {
                rows: Vec::new(),
                last_seq: req.since.clone(),
                pending: Some(0),
            }),
        }
    }

    pub async fn revs_diff(
        &self,
        req: Vec<(String, Vec<String>)>,
    ) -> Result<Vec<Missing>, ReplError> {
        match self {
            Peer::Local(p) => p.revs_diff(req).await,
            Peer::Http(p) => p.revs_diff(req).await,
            Peer::Empty(_) => Ok(req
                .into_iter()
                .map(|(id, missing)| Missing {
                    id,
                    missing,
                    possible_ancestors: Vec::new(),
                })
                .collect()),
        }
    }

    /// Fetches the missing revisions with their `_revisions` and the attachment bodies newer
    /// than the possible ancestors. Returns the documents found and how many were not.
    pub async fn fetch(&self, missing: &[Missing]) -> Result<(Vec<Value>, u64), ReplError> {
        match self {
            Peer::Local(p) => p.fetch(missing).await,
            Peer::Http(p) => p.fetch(missing).await,
            Peer::Empty(_) => Ok((Vec::new(), 0)),
        }
    }

    /// Every leaf of each document held here (deleted ones too), with its revision path.
    /// Documents not held are absent from the answer.
    pub async fn leaves(
        &self,
        ids: Vec<String>,
    ) -> Result<std::collections::HashMap<String, Vec<Leaf>>, ReplError> {
        match self {
            Peer::Local(p) => p.leaves(ids).await,
            Peer::Http(p) => p.leaves(ids).await,
            Peer::Empty(_) => Ok(Default::default()),
        }
    }

    /// Purges leaf revisions; an empty request checks that purging is allowed (CouchDB
    /// lets only server admins purge).
    pub async fn purge(&self, req: Vec<(String, Vec<String>)>) -> Result<(), ReplError> {
        match self {
            Peer::Local(p) => p.purge(req).await,
            Peer::Http(p) => p.purge(req).await,
            Peer::Empty(_) => Ok(()),
        }
    }

    /// Writes replicated revisions (`new_edits:false`). Returns the per-document errors.
    pub async fn write(&self, docs: Vec<Value>) -> Result<Vec<Value>, ReplError> {
        match self {
            Peer::Local(p) => p.write(docs).await,
            Peer::Http(p) => p.write(docs).await,
            Peer::Empty(_) => Ok(Vec::new()),
        }
    }
}

/// Parses an opaque sequence into settee's number when it is one of ours (`N`, `"N"`,
/// `"N-…"`); `0` otherwise.
pub fn local_seq(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::String(s) => s
            .split('-')
            .next()
            .and_then(|h| h.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}
