//! Mango selectors: CouchDB 3.x `_find` / `_changes?filter=_selector` / replication selector
//! semantics, as a pure library (no I/O).
//!
//! Invariants:
//! * [`Selector::parse`] validates and normalizes exactly like CouchDB's
//!   `mango_selector:normalize/1` (see [`parse`] for the three steps) and reports errors with
//!   CouchDB's `error` tags ([`MangoError::error_tag`]).
//! * [`Selector::matches`] follows `mango_selector:match/2` of CouchDB 3.5.2: no implicit array
//!   traversal; a missing field fails every condition except `$exists: false`; a path that
//!   descends into a scalar or misses an array index fails everything; negations are pushed
//!   to the leaves so they require the field to be present; comparisons use view collation
//!   ([`collate::cmp_json`]) except under the field `_id`, which uses raw order
//!   ([`collate::cmp_raw`]).
//! * [`Selector::normalized`] is CouchDB's normalized shape; parsing it again gives the same
//!   normalized JSON (idempotent).
//! * Nothing here panics on any input, and matching does not allocate except for
//!   `$keyMapMatch` and `$regex` on non-ASCII strings. A `$regex` is compiled once at parse
//!   time and has a backtracking limit, so a hostile pattern cannot hang the matcher.
//!
//! Deliberate deviations from CouchDB 3.5.2 (all on inputs CouchDB mishandles):
//! * `$mod` with divisor 0 is rejected at parse (`bad_arg`); CouchDB accepts it, then crashes
//!   with a 500 (or kills the `_changes` feed) on the first integer value.
//! * Empty field-path segments (`"a..b"`) are rejected at parse (`invalid_field_name`), as on
//!   CouchDB main; 3.5.2 throws lazily at match time. A segment consisting only of
//!   backslashes is rejected the same way.
//! * Selectors nested deeper than [`parse::MAX_DEPTH`] are rejected (`invalid_selector`).
//! * `$regex` runs on `fancy-regex` with a PCRE translation layer; see [`pcre`] for the
//!   patterns that differ.
//! * Integers beyond the 64-bit range are held as floats by `serde_json` (CouchDB keeps
//!   bignums exactly).
//!
//! Kept CouchDB quirks: only the top-level condition is checked for a missing field name, so
//! `{"$and":[{"$gt":1}]}` is accepted and applies to the whole document; negations are not
//! pushed inside `$elemMatch`/`$allMatch`/`$keyMapMatch`, where `$nor` makes the operator
//! false.

pub mod collate;
pub mod error;
pub mod find;
mod matcher;
pub mod parse;
pub mod path;
pub mod pcre;

pub use error::MangoError;

use serde_json::Value;

/// A parsed, normalized selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    /// `None` is the empty selector `{}` (matches everything).
    root: Option<parse::Node>,
}

impl Selector {
    /// Parse + normalize a selector JSON (must be an object). Errors as CouchDB would give.
    pub fn parse(v: &Value) -> Result<Selector, MangoError> {
        Ok(Selector {
            root: parse::normalize(v)?,
        })
    }

    /// Does `doc` satisfy the selector?
    pub fn matches(&self, doc: &Value) -> bool {
        match &self.root {
            None => true,
            // A top-level evaluation error cannot happen (`$nor` is always pushed down
            // outside sub-selectors); treat one as "no match" regardless.
            Some(n) => matcher::eval(n, doc, false).unwrap_or(false),
        }
    }

    /// The normal form as JSON (CouchDB's normalized shape), for `_explain` and replication ids.
    pub fn normalized(&self) -> Value {
        match &self.root {
            None => Value::Object(serde_json::Map::new()),
            Some(n) => parse::node_json(n),
        }
    }

    /// True when the normalized selector is exactly `{"$or":[]}` or `{"$and":[]}`: `_find`
    /// returns no rows for these (CouchDB `mango_cursor:maybe_noop_range`) although
    /// [`Selector::matches`] says true.
    pub fn is_noop_range(&self) -> bool {
        matches!(&self.root, Some(parse::Node::And(xs)) | Some(parse::Node::Or(xs)) if xs.is_empty())
    }

    /// True for the empty selector `{}`.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }
}
