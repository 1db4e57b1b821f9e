//! The one place every internal error becomes CouchDB's `{"error", "reason"}` and a status.

use hyper::StatusCode;

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
            StoreError::Storage(_)
            | StoreError::Corrupt(_)
            | StoreError::InUse(_)
            | StoreError::Bug(_) => {
                // Internals go to the log under an id; the client sees only the id.
                let id = crate::store::database::new_uuid();
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
    fn from(e: serde_json::Error) -> ApiError {
        ApiError::bad_request(format!("invalid UTF-8 JSON: {e}"))
    }
}
