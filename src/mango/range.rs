//! The `_id` range a selector confines a query to, two ways:
//!
//! * [`IdRange`] is what CouchDB 3.x computes for its `_all_docs` special index
//!   (`mango_idx_view:field_ranges/1` narrowed over the top-level `$and`, then
//!   `mango_idx_special:start_key/1`/`end_key/1`), which `_explain` reports as `mrargs`. It
//!   compares bounds with view collation, so it is a report, not something to scan by: `_id`
//!   conditions match in raw byte order.
//! * [`IdScan`] is the byte range of `_all_docs` a `_find` has to read: every document the
//!   selector matches lies inside it. Each bound is one of the selector's own necessary `_id`
//!   conditions read in raw order, so skipping what lies outside never loses a match (and a
//!   `_find` previews exactly what a selector-filtered feed sends).

use std::cmp::Ordering;

use serde_json::Value;

use super::collate::cmp_json;
use super::parse::{Cond, Leaf, Node};
use super::Selector;

/// One end of a CouchDB range: its `mango_json_min`/`mango_json_max` sentinels or a value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum End {
    Min,
    Max,
    Val(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Op {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
}

/// CouchDB's `{LCmp, Low, HCmp, High}` or `empty`.
pub(super) type Span = Option<(Op, End, Op, End)>;

fn cmp_end(a: &Value, b: &End) -> Ordering {
    match b {
        End::Min => Ordering::Greater,
        End::Max => Ordering::Less,
        End::Val(v) => cmp_json(a, v),
    }
}

/// `range_pos/3`: where `arg` falls against the current bounds.
#[derive(PartialEq)]
enum Pos {
    Min,
    Low,
    Mid,
    High,
    Max,
}

fn pos(low: &End, arg: &Value, high: &End) -> Pos {
    match cmp_end(arg, low) {
        Ordering::Less => Pos::Min,
        Ordering::Equal => Pos::Low,
        Ordering::Greater => match cmp_end(arg, high) {
            Ordering::Less => Pos::Mid,
            Ordering::Equal => Pos::High,
            Ordering::Greater => Pos::Max,
        },
    }
}

/// Narrows `(lc, low, hc, high)` by one condition (`mango_idx_view:range/5`).
fn narrow(leaf: &Leaf, (lc, low, hc, high): (Op, End, Op, End)) -> Span {
    let eq = |a: &Value| Some((Op::Eq, End::Val(a.clone()), Op::Eq, End::Val(a.clone())));
    let keep = |lc, low, hc, high| Some((lc, low, hc, high));
    match leaf {
        Leaf::BeginsWith(p) => {
            let s = narrow(&Leaf::Gte(Value::String(p.clone())), (lc, low, hc, high))?;
            narrow(&Leaf::Lte(Value::String(format!("{p}\u{ffff}"))), s)
        }
        Leaf::Lt(a) => match pos(&low, a, &high) {
            Pos::Min | Pos::Low => None,
            Pos::Mid | Pos::High => keep(lc, low, Op::Lt, End::Val(a.clone())),
            Pos::Max => keep(lc, low, hc, high),
        },
        Leaf::Lte(a) => match pos(&low, a, &high) {
            Pos::Min => None,
            Pos::Low if matches!(lc, Op::Gte | Op::Eq) => eq(a),
            Pos::Low => None,
            Pos::Mid => keep(lc, low, Op::Lte, End::Val(a.clone())),
            Pos::High | Pos::Max => keep(lc, low, hc, high),
        },
        Leaf::Eq(a) => match pos(&low, a, &high) {
            Pos::Min | Pos::Max => None,
            Pos::Low if matches!(lc, Op::Gte | Op::Eq) => eq(a),
            Pos::Low => None,
            Pos::Mid => eq(a),
            Pos::High if matches!(hc, Op::Lte | Op::Eq) => eq(a),
            Pos::High => None,
        },
        Leaf::Gte(a) => match pos(&low, a, &high) {
            Pos::Min | Pos::Low => keep(lc, low, hc, high),
            Pos::Mid => keep(Op::Gte, End::Val(a.clone()), hc, high),
            Pos::High if matches!(hc, Op::Lte | Op::Eq) => eq(a),
            Pos::High | Pos::Max => None,
        },
        Leaf::Gt(a) => match pos(&low, a, &high) {
            Pos::Min => keep(lc, low, hc, high),
            Pos::Low | Pos::Mid => keep(Op::Gt, End::Val(a.clone()), hc, high),
            Pos::High | Pos::Max => None,
        },
        _ => keep(lc, low, hc, high),
    }
}

/// `mango_idx_view:indexable_fields/1`, sorted bytewise like Erlang's `lists:usort`.
fn indexable_fields(n: &Node, out: &mut Vec<String>) {
    match n {
        Node::And(xs) => xs.iter().for_each(|x| indexable_fields(x, out)),
        Node::Field(f) => {
            if let Cond::Op(
                Leaf::Lt(_)
                | Leaf::Lte(_)
                | Leaf::Eq(_)
                | Leaf::Gt(_)
                | Leaf::Gte(_)
                | Leaf::BeginsWith(_)
                | Leaf::Exists(_),
            ) = f.cond
            {
                out.push(f.path.to_field_string());
            }
        }
        _ => {}
    }
}

/// The `start_key`/`end_key` CouchDB's `_all_docs` cursor reports for a selector.
#[derive(Debug, Clone, PartialEq)]
pub struct IdRange {
    pub start_key: Value,
    pub end_key: Value,
}

impl Selector {
    /// CouchDB's `mrargs` keys when a query runs on `_all_docs` (`null`, `null` when the
    /// selector can match nothing; `"<MAX>"` stands for the open end).
    pub fn id_range(&self) -> IdRange {
        let none = IdRange {
            start_key: Value::Null,
            end_key: Value::Null,
        };
        let Some(root) = &self.root else {
            return catch_all();
        };
        if self.is_noop_range() {
            return none;
        }
        // `_all_docs` takes the selector's `_id` range, else the catch-all one.
        match field_ranges(root).into_iter().find(|(f, _)| f == "_id") {
            Some((_, None)) => none,
            Some((_, Some((_, low, _, high)))) => IdRange {
                start_key: key(low, ""),
                end_key: key(high, "<MAX>"),
            },
            None => catch_all(),
        }
    }

    /// The part of `_all_docs` (raw byte order) holding every document this selector can
    /// match.
    pub fn id_scan(&self) -> IdScan {
        let mut scan = IdScan::default();
        if let Some(root) = &self.root {
            scan.narrow(root);
        }
        scan
    }
}

/// `{'$gt', null, '$lt', mango_json_max}`: the catch-all `_all_docs` range.
fn catch_all() -> IdRange {
    IdRange {
        start_key: Value::Null,
        end_key: Value::String("<MAX>".into()),
    }
}

/// A range end as a key: a sentinel becomes CouchDB's `?MIN_STR` (`""`) at the start and
/// `?MAX_STR` (shown as `"<MAX>"`) at the end.
fn key(e: End, sentinel: &str) -> Value {
    match e {
        End::Min | End::Max => Value::String(sentinel.into()),
        End::Val(v) => v,
    }
}

/// `mango_idx_view:range/2`: the range `field` is confined to, seeing through `$and` only.
pub(super) fn range_of(root: &Node, field: &str) -> Span {
    fn walk(n: &Node, field: &str, s: Span) -> Span {
        let s = s?;
        match n {
            Node::And(xs) => xs.iter().try_fold(s, |acc, x| walk(x, field, Some(acc))),
            Node::Field(f) if f.path.to_field_string() == field => match &f.cond {
                Cond::Op(l) => narrow(l, s),
                _ => Some(s),
            },
            _ => Some(s),
        }
    }
    walk(root, field, Some((Op::Gt, End::Min, Op::Lt, End::Max)))
}

/// `mango_idx_view:field_ranges/1`: each indexable field (sorted) with its range, cut short
/// after the first empty one.
pub(super) fn field_ranges(root: &Node) -> Vec<(String, Span)> {
    let mut fields = Vec::new();
    indexable_fields(root, &mut fields);
    fields.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    fields.dedup();
    let mut out = Vec::new();
    for f in fields {
        let r = range_of(root, &f);
        if r.is_none() {
            return vec![(f, None)];
        }
        out.push((f, r));
    }
    out
}

/// Inclusive raw byte bounds on `_id`: `low..=high` (`high` `None` = to the end).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdScan {
    pub low: String,
    pub high: Option<Vec<u8>>,
}

impl IdScan {
    /// Every `_id` the selector can match is inside `low..=high`.
    pub fn contains(&self, id: &str) -> bool {
        id >= self.low.as_str() && self.high.as_ref().is_none_or(|h| id.as_bytes() <= &h[..])
    }

    /// True once `id` (scanning upwards) is past the range.
    pub fn past(&self, id: &str) -> bool {
        self.high.as_ref().is_some_and(|h| id.as_bytes() > &h[..])
    }

    fn raise(&mut self, s: &str) {
        if s > self.low.as_str() {
            self.low = s.to_owned();
        }
    }

    fn lower(&mut self, h: Vec<u8>) {
        if self.high.as_ref().is_none_or(|cur| h < *cur) {
            self.high = Some(h);
        }
    }

    /// Only conditions every match must meet: the top level and nested `$and`s. `_id` is
    /// always a string, so only string arguments bound it.
    fn narrow(&mut self, n: &Node) {
        match n {
            Node::And(xs) => xs.iter().for_each(|x| self.narrow(x)),
            Node::Field(f) if f.is_id => match &f.cond {
                Cond::Op(Leaf::Eq(Value::String(s))) => {
                    self.raise(s);
                    self.lower(s.as_bytes().to_vec());
                }
                Cond::Op(Leaf::Gt(Value::String(s)) | Leaf::Gte(Value::String(s))) => self.raise(s),
                Cond::Op(Leaf::Lt(Value::String(s)) | Leaf::Lte(Value::String(s))) => {
                    self.lower(s.as_bytes().to_vec())
                }
                Cond::Op(Leaf::BeginsWith(p)) => {
                    self.raise(p);
                    // No UTF-8 text holds the byte 0xFF: everything starting with `p` sorts
                    // below `p` + 0xFF.
                    let mut h = p.as_bytes().to_vec();
                    h.push(0xff);
                    self.lower(h);
                }
                _ => {}
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn range(s: Value) -> (Value, Value) {
        let r = Selector::parse(&s).unwrap().id_range();
        (r.start_key, r.end_key)
    }

    #[test]
    fn couchdb_all_docs_ranges() {
        let max = json!("<MAX>");
        assert_eq!(range(json!({"a": 1})), (json!(null), max.clone()));
        assert_eq!(range(json!({"_id": "x"})), (json!("x"), json!("x")));
        assert_eq!(
            range(json!({"_id": {"$beginsWith": "a"}})),
            (json!("a"), json!("a\u{ffff}"))
        );
        assert_eq!(
            range(json!({"_id": {"$gt": "b"}})),
            (json!("b"), max.clone())
        );
        assert_eq!(range(json!({"_id": {"$lt": "b"}})), (json!(""), json!("b")));
        assert_eq!(
            range(json!({"_id": {"$gte": "b", "$lte": "d"}, "a": 1})),
            (json!("b"), json!("d"))
        );
        // Narrowed with view collation ("a" < "B"): the tighter bound wins.
        assert_eq!(
            range(json!({"$and": [{"_id": {"$gt": "a"}}, {"_id": {"$gt": "B"}}]})).0,
            json!("B")
        );
        assert_eq!(
            range(json!({"_id": {"$gt": "d", "$lt": "b"}})),
            (json!(null), json!(null))
        );
        assert_eq!(range(json!({"$or": []})), (json!(null), json!(null)));
        assert_eq!(
            range(json!({"_id": {"$exists": true}})),
            (json!(""), max.clone())
        );
        // `$or` is not seen through.
        assert_eq!(
            range(json!({"$or": [{"_id": "a"}, {"_id": "b"}]})),
            (json!(null), max)
        );
    }

    #[test]
    fn scans_hold_every_match() {
        let scan = |s: Value| Selector::parse(&s).unwrap().id_scan();
        assert_eq!(scan(json!({"a": 1})), IdScan::default());
        let s = scan(json!({"_id": {"$beginsWith": "ab"}}));
        assert!(s.contains("ab") && s.contains("ab\u{10ffff}") && s.contains("abz"));
        assert!(!s.contains("aa") && !s.contains("ac") && s.past("ac") && !s.past("ab"));
        // Raw order, not collation: "B" < "a" bytewise.
        let s = scan(json!({"_id": {"$gt": "B", "$lt": "a"}}));
        assert!(s.contains("C") && !s.contains("b"));
        let s = scan(json!({"_id": "x", "n": 1}));
        assert!(s.contains("x") && !s.contains("x0") && !s.contains("w"));
        // Non-string arguments and `$or` do not bound the scan.
        assert_eq!(scan(json!({"_id": {"$gt": 5}})), IdScan::default());
        assert_eq!(
            scan(json!({"$or": [{"_id": "a"}, {"b": 1}]})),
            IdScan::default()
        );
    }
}
