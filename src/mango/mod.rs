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
//! * A `_find` `sort` that no index serves is done in memory; CouchDB answers 400
//!   `no_usable_index` ([`plan`]).
//!
//! Kept CouchDB quirks: only the top-level condition is checked for a missing field name, so
//! `{"$and":[{"$gt":1}]}` is accepted and applies to the whole document; negations are not
//! pushed inside `$elemMatch`/`$allMatch`/`$keyMapMatch`, where `$nor` makes the operator
//! false.

pub mod collate;
pub mod error;
pub mod find;
pub mod json;
mod matcher;
pub mod parse;
pub mod path;
pub mod pcre;
pub mod plan;
pub mod range;

pub use error::MangoError;

use serde_json::Value;

/// A parsed, normalized selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    /// `None` is the empty selector `{}` (matches everything).
    root: Option<parse::Node>,
    /// The top-level document members the selector can look at; `None` when it looks at the
    /// whole document (a condition with an empty field path).
    top_fields: Option<Vec<String>>,
}

impl Selector {
    /// Parse + normalize a selector JSON (must be an object). Errors as CouchDB would give.
    pub fn parse(v: &Value) -> Result<Selector, MangoError> {
        let root = parse::normalize(v)?;
        let mut fields = Vec::new();
        let top_fields = match &root {
            None => Some(fields),
            Some(n) => top_fields(n, &mut fields).then_some(fields),
        };
        Ok(Selector { root, top_fields })
    }

    /// The top-level members of a document that decide whether it matches: a document
    /// holding only these (plus nothing else) matches exactly when the whole one does, so a
    /// caller may skip decoding the rest. `None` when the whole document matters.
    pub fn top_fields(&self) -> Option<&[String]> {
        self.top_fields.as_deref()
    }

    /// Does `doc` satisfy the selector?
    pub fn matches<J: json::Json>(&self, doc: &J) -> bool {
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

    /// The `field == value` conditions every matching document satisfies (top-level `$eq`
    /// on a scalar, also inside a top-level `$and`), as dotted field names. Two selectors
    /// that require different values of one field match no document in common.
    pub fn required_equalities(&self) -> Vec<(String, Value)> {
        fn collect(v: &Value, out: &mut Vec<(String, Value)>) {
            let Some(o) = v.as_object() else { return };
            for (k, c) in o {
                if k == "$and" {
                    for x in c.as_array().into_iter().flatten() {
                        collect(x, out);
                    }
                } else if !k.starts_with('$') {
                    if let Some(eq) = c.get("$eq").filter(|e| !e.is_object() && !e.is_array()) {
                        out.push((k.clone(), eq.clone()));
                    }
                }
            }
        }
        let mut out = Vec::new();
        collect(&self.normalized(), &mut out);
        out
    }

    /// Whether no document can match both selectors, as far as their required equalities
    /// tell (`false` means "may overlap").
    pub fn disjoint_from(&self, other: &Selector) -> bool {
        let theirs = other.required_equalities();
        self.required_equalities()
            .iter()
            .any(|(k, v)| theirs.iter().any(|(k2, v2)| k == k2 && v != v2))
    }

    /// True for the empty selector `{}`.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }
}

/// Collects the first path segment of every field condition; false if one has no segment.
fn top_fields(n: &parse::Node, out: &mut Vec<String>) -> bool {
    use parse::Node;
    match n {
        Node::And(xs) | Node::Or(xs) | Node::Nor(xs) => xs.iter().all(|x| top_fields(x, out)),
        Node::Not(x) => top_fields(x, out),
        Node::Field(f) => match f.path.segs.first() {
            Some(seg) => {
                if !out.iter().any(|k| **k == *seg.key) {
                    out.push(seg.key.to_string());
                }
                true
            }
            None => false,
        },
        Node::Default(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(v: Value) -> Selector {
        Selector::parse(&v).unwrap()
    }

    #[test]
    fn noop_ranges() {
        assert!(sel(json!({"$or": []})).is_noop_range());
        assert!(sel(json!({"$and": []})).is_noop_range());
        assert!(sel(json!({"$nor": []})).is_noop_range());
        assert!(sel(json!({"x": {"$not": {"$and": []}}})).is_noop_range());
        assert!(!sel(json!({"age": 22, "$or": []})).is_noop_range());
        assert!(!sel(json!({})).is_noop_range());
        assert!(sel(json!({})).is_empty());
        // match() itself says true for these (21-empty-selector-tests test_empty_array_or)
        assert!(sel(json!({"$or": []})).matches(&json!({"a": 1})));
    }

    #[test]
    fn depth_limit() {
        let mut deep = json!({"a": 1});
        for _ in 0..60 {
            deep = json!({"$not": deep});
        }
        assert!(Selector::parse(&deep).is_ok());
        for _ in 0..20 {
            deep = json!({"$and": [deep]});
        }
        let e = Selector::parse(&deep).unwrap_err();
        assert_eq!(e.error_tag(), "invalid_selector");
        // The deepest accepted nesting parses, matches and renders within a 2 MiB stack even
        // in debug builds (tokio and test threads get 2 MiB).
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(deepest_elem_match)
            .unwrap()
            .join()
            .unwrap();
    }

    fn deepest_elem_match() {
        let (mut s, mut d) = (json!({"$eq": 1}), json!(1));
        let mut n = 0;
        loop {
            let next = json!({"$elemMatch": s.clone()});
            if Selector::parse(&json!({"a": next.clone()})).is_err() {
                break;
            }
            s = next;
            d = json!([d]);
            n += 1;
        }
        assert!(n >= 60, "{n}");
        let top = sel(json!({"a": s}));
        assert!(top.matches(&json!({"a": d})));
        assert_eq!(sel(top.normalized()), top);
    }

    #[test]
    fn error_messages_show_json() {
        let e = Selector::parse(&json!({"a": {"$mod": [0.5, 1]}})).unwrap_err();
        assert_eq!(e.error_tag(), "bad_arg");
        assert!(
            e.to_string().contains("$mod") && e.to_string().contains("[0.5,1]"),
            "{e}"
        );
        let e = Selector::parse(&json!({"a..b": 1})).unwrap_err();
        assert!(e.to_string().contains("a..b"), "{e}");
        let e = Selector::parse(&json!({"$gt": 1})).unwrap_err();
        assert!(e.to_string().contains("missing a field name"), "{e}");
    }

    #[test]
    fn escaped_dollar_field() {
        // `\$key` escapes the `$`, so a field literally named `$key` can be queried; the
        // normal form keeps the escape so it parses back to the same thing.
        let s = sel(json!({"\\$key": 1}));
        assert!(s.matches(&json!({"$key": 1})));
        assert_eq!(s.normalized(), json!({"\\$key": {"$eq": 1}}));
        let a = sel(json!({"collection": "articles", "status": {"$ne": "draft"}}));
        let b = sel(json!({"$and": [{"collection": {"$eq": "events"}}, {"x": 1}]}));
        let c = sel(json!({"collection": {"$in": ["articles", "events"]}}));
        assert!(a.disjoint_from(&b) && b.disjoint_from(&a));
        assert!(!a.disjoint_from(&c) && !a.disjoint_from(&a));
        assert!(!a.disjoint_from(&sel(json!({}))));
        assert_eq!(sel(s.normalized()), s);
    }
}
