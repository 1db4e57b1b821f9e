//! CouchDB's replication protocol between any two endpoints (local databases or CouchDB-compatible
//! HTTP servers): [`spec`] parses what to replicate, [`id`] names it, [`peer`] talks to each end,
//! [`checkpoint`] finds where to resume, and [`job`] runs the pipeline.
//!
//! Invariant: a checkpoint only ever records a source sequence below which every change has been
//! written to the target (the contiguous prefix of finished batches), whatever order the workers
//! finish in.

pub mod answers;
pub mod checkpoint;
pub mod endpoint;
pub mod http_peer;
pub mod id;
pub mod job;
pub mod local_peer;
pub mod peer;
pub mod preview;
pub mod project;
pub mod spec;
pub mod stats;
pub mod unmatched;

pub use endpoint::Endpoint;
pub use job::{run, Env, Outcome};
pub use spec::{Filter, Spec, SpecError, Tls};
pub use stats::{JobState, Stats};

use crate::store::StoreError;

/// Why a replication stopped. Every message names the endpoint with its credentials redacted.
/// `Display` is CouchDB's status form: the reason, prefixed with the error tag for the kinds
/// CouchDB prefixes (`unauthorized: …`, `db_not_found: …`); [`ReplError::reason`] is the text
/// alone, for answers that carry the tag in their own `error` member.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplError {
    #[error("{0}")]
    Spec(#[from] SpecError),
    #[error("could not reach {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("unauthorized: {}", self.reason())]
    Unauthorized { endpoint: String },
    #[error("forbidden: {}", self.reason())]
    Forbidden { endpoint: String, what: String },
    #[error("db_not_found: {}", self.reason())]
    DbNotFound { endpoint: String },
    #[error("{endpoint} is not a CouchDB-compatible database: {reason}")]
    NotCouch { endpoint: String, reason: String },
    #[error("{endpoint} answered {status} to {request}: {reason}")]
    Http {
        endpoint: String,
        status: u16,
        request: String,
        reason: String,
    },
    #[error("checkpoint_commit_failure: {}", self.reason())]
    Recreated { which: &'static str },
    #[error("local store: {0}")]
    Store(String),
    #[error("a pipeline task stopped: {0}")]
    Internal(String),
    /// `on_write_failure: "stop"`: the target refused this document.
    #[error("{endpoint} refused document {id:?} ({error}: {reason}); on_write_failure is \"stop\", so the run ended there")]
    WriteRefused {
        endpoint: String,
        id: String,
        error: String,
        reason: String,
    },
}

impl From<StoreError> for ReplError {
    fn from(e: StoreError) -> ReplError {
        ReplError::Store(e.to_string())
    }
}

impl ReplError {
    /// `true` when retrying cannot help until the definition changes (the job `failed`);
    /// everything else may heal (the job is `crashing` and retried with backoff).
    pub fn is_permanent(&self) -> bool {
        matches!(self, ReplError::Spec(_) | ReplError::WriteRefused { .. })
    }

    /// CouchDB's short error tag for `/_replicate` answers.
    /// What went wrong without the error tag (see the type's comment).
    pub fn reason(&self) -> String {
        match self {
            ReplError::Unauthorized { endpoint } => {
                format!("{endpoint} refused the credentials (401)")
            }
            ReplError::Forbidden { endpoint, what } => {
                format!("{endpoint} does not let this user {what} (403)")
            }
            ReplError::DbNotFound { endpoint } => format!("could not open {endpoint}"),
            ReplError::Recreated { which } => {
                format!("instance_start_time on {which} database has changed since last checkpoint")
            }
            ReplError::Spec(_)
            | ReplError::Unreachable { .. }
            | ReplError::NotCouch { .. }
            | ReplError::Http { .. }
            | ReplError::Store(_)
            | ReplError::Internal(_)
            | ReplError::WriteRefused { .. } => self.to_string(),
        }
    }

    pub fn error_tag(&self) -> &'static str {
        match self {
            ReplError::Spec(_) => "bad_request",
            ReplError::Unreachable { .. } => "unreachable",
            ReplError::Unauthorized { .. } => "unauthorized",
            ReplError::Forbidden { .. } => "forbidden",
            ReplError::DbNotFound { .. } => "db_not_found",
            ReplError::NotCouch { .. } => "not_couchdb",
            ReplError::Http { .. } => "http_error",
            ReplError::Recreated { .. } => "checkpoint_commit_failure",
            ReplError::Store(_) | ReplError::Internal(_) => "replication_failed",
            ReplError::WriteRefused { .. } => "doc_write_failure",
        }
    }
}
