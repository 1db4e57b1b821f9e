//! The one place every module's error becomes CouchDB's `{"error", "reason"}` and a status:
//! the store's, a document's, Mango's, a replication's and a share's, each matched exhaustively.

use hyper::StatusCode;

use crate::mango::MangoError;
use crate::replicator::ReplError;
use crate::sharing::ShareError;
use crate::store::{DocError, StoreError};

#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            reason: reason.into(),
        }
    }
    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }
    /// A design document function settee does not run (it runs no JavaScript): 501, saying
    /// what to use instead.
    pub fn no_javascript(member: &str, ddoc: &str, instead: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            format!("settee runs no JavaScript: the {member} of _design/{ddoc} are stored and replicated but not run; {instead}"),
        )
    }
    pub fn not_found(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", reason)
    }
    pub fn method_not_allowed(allowed: &str) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("Only {allowed} allowed"),
        )
    }
    pub fn unauthorized(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", reason)
    }
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }
}

/// Status code for a per-document error when it fails a whole single-document request.
pub fn doc_status(e: &DocError) -> StatusCode {
    match e {
        DocError::Conflict => StatusCode::CONFLICT,
        DocError::BadRequest(_) | DocError::IllegalDocId(_) | DocError::Validation(_) => {
            StatusCode::BAD_REQUEST
        }
        DocError::Forbidden(_) => StatusCode::FORBIDDEN,
        DocError::MissingStub(_) => StatusCode::PRECONDITION_FAILED,
        DocError::NotFound(_) => StatusCode::NOT_FOUND,
    }
}

impl From<DocError> for ApiError {
    fn from(e: DocError) -> ApiError {
        ApiError::new(doc_status(&e), e.error_tag(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::DbNotFound => ApiError::not_found("Database does not exist."),
            StoreError::DbExists => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "file_exists",
                "The database could not be created, the file already exists.",
            ),
            StoreError::IllegalDbName(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "illegal_database_name",
                e.to_string(),
            ),
            StoreError::NotFound(r) => ApiError::not_found(r),
            StoreError::BadRequest(r) => ApiError::bad_request(r),
            StoreError::Doc(d) => d.into(),
            StoreError::DiskFull { .. } => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                e.to_string(),
            ),
            StoreError::Storage(_)
            | StoreError::Damaged { .. }
            | StoreError::Corrupt(_)
            | StoreError::InUse(_)
            | StoreError::Bug(_) => {
                // Internals go to the log under an id; the client sees only the id.
                let id = crate::ids::new_uuid();
                tracing::error!(error_id = %id, error = %e, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_server_error",
                    format!("internal error, logged as {id}"),
                )
            }
        }
    }
}

impl From<serde_json::Error> for ApiError {
    /// CouchDB's reason, with what is wrong and where.
    fn from(e: serde_json::Error) -> ApiError {
        let msg = e.to_string();
        if msg.starts_with("recursion limit exceeded") {
            return ApiError::bad_request(format!(
                "invalid UTF-8 JSON: nested deeper than 128 arrays and objects (line {}, column {})",
                e.line(),
                e.column()
            ));
        }
        ApiError::bad_request(format!("invalid UTF-8 JSON: {msg}"))
    }
}

/// A replication that failed, as an answer: the status says whose fault it was.
pub fn repl_error(e: &ReplError) -> ApiError {
    let status = match e {
        ReplError::Spec(_) => StatusCode::BAD_REQUEST,
        ReplError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
        ReplError::Forbidden { .. } => StatusCode::FORBIDDEN,
        ReplError::DbNotFound { .. } => StatusCode::NOT_FOUND,
        // A peer that cannot be reached or answers nonsense is not this server's fault.
        ReplError::Unreachable { .. }
        | ReplError::NotCouch { .. }
        | ReplError::Http { .. }
        | ReplError::WriteRefused { .. } => StatusCode::BAD_GATEWAY,
        ReplError::Recreated { .. } | ReplError::Store(_) | ReplError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    // Status output keeps CouchDB's "tag: reason" form; an answer carries the tag in `error`,
    // so its `reason` does not repeat it (CouchDB answers the same way).
    ApiError::new(status, e.error_tag(), e.reason())
}

/// A bad selector or `_find` request: 400 with Mango's own error tag, as CouchDB's `_find`.
impl From<MangoError> for ApiError {
    fn from(e: MangoError) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, e.error_tag(), e.to_string())
    }
}

/// A bad selector in a `_changes` filter: 400 `bad_request` with Mango's tag in the reason
/// (the feed's own error shape, unlike `_find`'s).
pub fn changes_selector_error(e: &MangoError) -> ApiError {
    ApiError::bad_request(format!("{}: {e}", e.error_tag()))
}

impl From<ShareError> for ApiError {
    fn from(e: ShareError) -> ApiError {
        match e {
            ShareError::BadRequest(r) => ApiError::bad_request(r),
            ShareError::NotFound(r) => ApiError::not_found(r),
            ShareError::Conflict(r) => ApiError::new(StatusCode::CONFLICT, "conflict", r),
            // The peer is the problem, not this server: a 4xx the caller can act on.
            ShareError::Unreachable(r) => ApiError::new(StatusCode::BAD_REQUEST, "bad_peer", r),
            ShareError::Store(s) => s.into(),
        }
    }
}
