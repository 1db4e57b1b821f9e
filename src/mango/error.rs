//! Mango errors. Each variant carries CouchDB's `error` tag ([`MangoError::error_tag`]);
//! `Display` gives the human reason, with arguments printed as JSON (CouchDB prints Erlang
//! terms). Every error is an HTTP 400 in CouchDB.

use serde_json::Value;

/// Render a JSON value for an error message, truncated to keep messages short.
pub(crate) fn show(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "?".into());
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum MangoError {
    /// Unknown `$op`, or `$regex`/`$beginsWith` with a non-string argument.
    #[error("Invalid operator: {0}")]
    InvalidOperator(String),
    /// An operator's argument has the wrong shape.
    #[error("Bad argument for operator {op}: {arg} ({why})")]
    BadArg {
        op: String,
        arg: String,
        why: String,
    },
    /// `$where`, `$geoWithin`, `$geoIntersects`, `$near`, `$nearSphere`.
    #[error("Unsupported operator: {0}")]
    NotSupported(String),
    /// A condition at the top level has no field name (e.g. `{"$gt": 1}`).
    #[error("One or more conditions is missing a field name: {0}")]
    InvalidSelector(String),
    /// A field path with an empty segment (`"a..b"`).
    #[error("Invalid field name: {0:?} (empty path segment)")]
    InvalidFieldName(String),
    /// `$default`/`$text` used under a field.
    #[error("Invalid field normalization on selector: {0}")]
    BadField(String),
    /// The selector is not a JSON object.
    #[error("Selector must be a JSON object, not: {0}")]
    InvalidSelectorJson(String),

    // ---- _find request options (mango_opts / mango_sort / mango_fields) ----
    #[error("Missing required key: {0}")]
    MissingRequiredKey(String),
    #[error("Invalid key {0} for this request.")]
    InvalidKey(String),
    #[error("Invalid boolean value for {key}: {value}")]
    InvalidBoolean { key: String, value: String },
    #[error("Value for {key} is not an integer greater than zero: {value}")]
    InvalidPosInteger { key: String, value: String },
    #[error("Value for {key} is not an integer greater than or equal to zero: {value}")]
    InvalidNonNegInteger { key: String, value: String },
    #[error("Invalid value for stale: {0} (expected \"ok\", \"false\" or false)")]
    InvalidOkOrFalse(String),
    #[error("Invalid index name: {0}")]
    InvalidIndexName(String),
    #[error("Invalid bookmark value: {0}")]
    InvalidBookmark(String),
    /// `use_index` names no usable index and `allow_fallback` is false.
    #[error("{0}")]
    InvalidIndex(String),
    /// A `sort` that no index serves (CouchDB sorts only by reading an index in order).
    #[error("No index exists for this sort, try indexing by the sort fields.")]
    NoUsableIndex,
    #[error("Sort must be an array of sort specs, not: {0}")]
    InvalidSortJson(String),
    #[error("Invalid sort field: {0}")]
    InvalidSortField(String),
    #[error("Sorts currently only support a single direction for all fields.")]
    UnsupportedMixedSort,
    #[error("Fields must be an array of strings, not: {0}")]
    InvalidFields(String),
    #[error("Invalid JSON for field spec: {0}")]
    InvalidField(String),
    #[error("Invalid partition: {0}")]
    InvalidPartition(String),
    /// The request body itself is unusable (e.g. not a JSON object).
    #[error("{0}")]
    BadRequest(String),
}

impl MangoError {
    /// CouchDB's `error` tag for this error.
    pub fn error_tag(&self) -> &'static str {
        use MangoError::*;
        match self {
            InvalidOperator(_) => "invalid_operator",
            BadArg { .. } => "bad_arg",
            NotSupported(_) => "not_supported",
            InvalidSelector(_) => "invalid_selector",
            InvalidFieldName(_) => "invalid_field_name",
            BadField(_) => "bad_field",
            InvalidSelectorJson(_) => "invalid_selector_json",
            MissingRequiredKey(_) => "missing_required_key",
            InvalidKey(_) => "invalid_key",
            InvalidBoolean { .. } => "invalid_boolean",
            InvalidPosInteger { .. } => "invalid_pos_integer",
            InvalidNonNegInteger { .. } => "invalid_non_neg_integer",
            InvalidOkOrFalse(_) => "invalid_ok_or_false_value",
            InvalidIndexName(_) => "invalid_index_name",
            InvalidBookmark(_) => "invalid_bookmark",
            InvalidIndex(_) => "invalid_index",
            NoUsableIndex => "no_usable_index",
            InvalidSortJson(_) => "invalid_sort_json",
            InvalidSortField(_) => "invalid_sort_field",
            UnsupportedMixedSort => "unsupported_mixed_sort",
            InvalidFields(_) => "invalid_fields",
            InvalidField(_) => "invalid_field",
            InvalidPartition(_) => "invalid_partition",
            BadRequest(_) => "bad_request",
        }
    }

    /// HTTP status CouchDB answers with (always 400 for these errors).
    pub fn http_status(&self) -> u16 {
        400
    }

    pub(crate) fn bad_arg(op: &str, arg: &Value, why: impl Into<String>) -> MangoError {
        MangoError::BadArg {
            op: op.to_string(),
            arg: show(arg),
            why: why.into(),
        }
    }
}
