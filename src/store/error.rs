//! Errors of the store. Two levels: [`StoreError`] fails a whole request, [`DocError`] fails one
//! document inside a batch while the others are written. The HTTP layer maps each variant to one
//! CouchDB error in one place.

/// A request-level failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Database does not exist.")]
    DbNotFound,
    #[error("The database could not be created, the file already exists.")]
    DbExists,
    #[error("Name: '{0}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.")]
    IllegalDbName(String),
    /// A document (or revision) that is not there; the string is CouchDB's reason
    /// (`missing` or `deleted`).
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Doc(#[from] DocError),
    /// sled failed: the disk, not the caller, is at fault.
    #[error("storage error: {0}")]
    Storage(sled::Error),
    /// Another process (usually another settee) holds the data folder's lock.
    #[error("{0} is in use by another process (settee still running, or shutting down?): stop it, or pass another --data folder")]
    InUse(String),
    /// The data folder cannot be opened as a store: files truncated, overwritten or not
    /// settee's. Refused at start-up rather than served as an empty store.
    #[error("the data folder {path} is damaged or is not a settee store ({detail}); nothing was changed in it: restore it from a backup, or start with another --data folder")]
    Damaged { path: String, detail: String },
    /// Too little free space to write safely (see `durability::Room`).
    #[error("the data folder {path} has {free} bytes free, less than the {reserve} settee keeps in reserve: this write is refused so that reads and replications keep working; free some space (or lower --disk-reserve) and writes resume by themselves")]
    DiskFull {
        path: String,
        free: u64,
        reserve: u64,
    },
    /// Bytes on disk that do not decode: corruption (or a bug), never the caller's input.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// Something that cannot happen unless settee has a bug (a value that does not
    /// serialize): refused rather than stored as an empty value.
    #[error("internal error (a bug in settee): {0}")]
    Bug(String),
}

/// JSON bytes of a value to store; a failure is a [`StoreError::Bug`], never empty bytes.
pub fn encode<T: serde::Serialize + ?Sized>(what: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Bug(format!("{what} does not serialize: {e}")))
}

impl From<sled::Error> for StoreError {
    /// A tree that no longer exists belongs to a database deleted while a request or feed
    /// on it was still running: for that request the database does not exist (not an
    /// internal error).
    fn from(e: sled::Error) -> StoreError {
        match e {
            sled::Error::CollectionNotFound(_) => StoreError::DbNotFound,
            e => StoreError::Storage(e),
        }
    }
}

/// A per-document failure inside a batch (`_bulk_docs` answers it in that document's slot).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("Document update conflict.")]
    Conflict,
    #[error("{0}")]
    BadRequest(String),
    /// An id CouchDB refuses (`illegal_docid`): empty, or a `_` prefix it does not reserve.
    #[error("{0}")]
    IllegalDocId(String),
    /// CouchDB's `doc_validation` (bad special member and the like).
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Forbidden(String),
    /// An attachment stub whose data the database does not have (CouchDB's 412).
    #[error("Invalid attachment stub in {0}")]
    MissingStub(String),
    #[error("{0}")]
    NotFound(&'static str),
}

impl DocError {
    /// CouchDB's `error` string for this failure.
    pub fn error_tag(&self) -> &'static str {
        match self {
            DocError::Conflict => "conflict",
            DocError::BadRequest(_) => "bad_request",
            DocError::IllegalDocId(_) => "illegal_docid",
            DocError::Validation(_) => "doc_validation",
            DocError::Forbidden(_) => "forbidden",
            DocError::MissingStub(_) => "missing_stub",
            DocError::NotFound(_) => "not_found",
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
