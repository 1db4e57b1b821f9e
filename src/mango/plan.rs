//! Which index a `_find` runs on, as CouchDB 3.x chooses it (`mango_idx:get_usable_indexes`,
//! `mango_idx_view:is_usable`, `mango_cursor_view:choose_best_index`), and the `mrargs`
//! `_explain` reports for it.
//!
//! settee keeps no index data: a query always scans `_all_docs` and matches with the engine.
//! The plan decides what CouchDB's index would have decided: which documents a JSON index
//! holds (those having every indexed field), the order rows come in (index key, then `_id`;
//! reversed for a descending sort) and the key range. So `_find` answers with the rows and
//! the order CouchDB gives, only without the speed of a stored index.
//!
//! A `sort` no index can serve is refused as CouchDB refuses it (400 `no_usable_index`):
//! answering it would make a query work on settee that fails on CouchDB. Where CouchDB's range arithmetic (view collation) calls
//! a JSON index range empty, `_explain` says so but `_find` still matches every candidate:
//! `_id` conditions match in raw order, so such a range can hold matches, and `_find` must
//! show what a selector-filtered feed sends.

use std::cmp::Ordering;

use serde_json::Value;

use super::collate::cmp_json;
use super::find::{SortDir, UseIndex};
use super::parse::{Cond, Leaf, Node};
use super::path::{FieldPath, Lookup};
use super::range::{field_ranges, End, Op, Span};
use super::{MangoError, Selector};

/// A JSON index as stored in a query design document.
#[derive(Debug, Clone)]
pub struct JsonIndex {
    /// `_design/…`
    pub ddoc: String,
    pub name: String,
    /// Column names as written, with their parsed paths.
    pub fields: Vec<(String, FieldPath)>,
    /// `partial_filter_selector`: the index holds only documents matching it, and is used
    /// only when named (`use_index`).
    pub partial: Option<Selector>,
}

/// The index a query runs on.
#[derive(Debug, Clone, PartialEq)]
pub enum Chosen {
    /// `_all_docs`, CouchDB's special index.
    AllDocs,
    /// One of the given JSON indexes (its position in the list given to [`plan`]).
    Json(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub index: Chosen,
    /// `mrargs` as `_explain` shows them (`"<MAX>"` for the open end).
    pub start_key: Value,
    pub end_key: Value,
    /// Rows come in reverse index order (a descending sort served by the index).
    pub descending: bool,
    /// A top-level empty `$or`/`$and`/`$in`/`$all`: CouchDB runs no query at all.
    pub empty: bool,
}

fn columns(ix: &JsonIndex) -> Vec<&str> {
    ix.fields.iter().map(|(f, _)| f.as_str()).collect()
}

/// `mango_selector:has_required_fields/2`: every match has all of `required`.
fn has_required(n: &Node, required: &[&str]) -> bool {
    fn rest<'a>(n: &Node, req: Vec<&'a str>) -> Vec<&'a str> {
        if req.is_empty() {
            return req;
        }
        match n {
            Node::And(xs) => xs.iter().fold(req, |acc, x| rest(x, acc)),
            Node::Or(xs) => {
                let mut left: Vec<&str> = xs.iter().flat_map(|x| rest(x, req.clone())).collect();
                left.sort_unstable();
                left.dedup();
                left
            }
            Node::Field(f) if matches!(f.cond, Cond::Op(Leaf::Exists(false))) => req,
            Node::Field(f) => {
                let name = f.path.to_field_string();
                let mut req = req;
                if let Some(i) = req.iter().position(|r| *r == name) {
                    req.remove(i);
                }
                req
            }
            _ => req,
        }
    }
    rest(n, required.to_vec()).is_empty()
}

/// `mango_selector:is_constant_field/2`: the field is held to one value (`$eq`).
fn is_constant(n: &Node, field: &str) -> bool {
    match n {
        Node::And(xs) => xs.iter().any(|x| is_constant(x, field)),
        Node::Field(f) if f.path.to_field_string() == field => {
            matches!(f.cond, Cond::Op(Leaf::Eq(_)))
        }
        _ => false,
    }
}

/// `mango_idx_view:can_use_sort/3`: leading constant columns may be skipped.
fn can_use_sort(cols: &[&str], sort: &[&str], root: Option<&Node>) -> bool {
    match (cols.first(), sort.first()) {
        (_, None) => true,
        (None, _) => false,
        (Some(c), Some(s)) if c == s => cols.starts_with(sort),
        (Some(c), _) => {
            root.is_some_and(|n| is_constant(n, c)) && can_use_sort(&cols[1..], sort, root)
        }
    }
}

/// `mango_idx_view:is_usable/3`.
fn usable(ix: &JsonIndex, root: Option<&Node>, sort: &[&str]) -> bool {
    let cols = columns(ix);
    let mut required: Vec<&str> = cols
        .iter()
        .copied()
        .filter(|c| !sort.contains(c) && *c != "_id" && *c != "_rev")
        .collect();
    required.sort_unstable();
    required.dedup();
    let has = match root {
        None => required.is_empty(),
        Some(n) => has_required(n, &required),
    };
    let text = root.is_some_and(has_text);
    has && !text && can_use_sort(&cols, sort, root)
}

fn has_text(n: &Node) -> bool {
    match n {
        Node::Default(_) => true,
        Node::And(xs) | Node::Or(xs) | Node::Nor(xs) => xs.iter().any(has_text),
        Node::Not(x) => has_text(x),
        Node::Field(_) => false,
    }
}

/// `mango_idx_view:start_key/1`.
fn start_key(ranges: &[&(Op, End, Op, End)]) -> Vec<Value> {
    let mut out = Vec::new();
    for (lc, low, _, _) in ranges {
        match (lc, low) {
            (Op::Gt, End::Min | End::Max) => break,
            (_, End::Val(v)) => out.push(v.clone()),
            (_, _) => break,
        }
    }
    out
}

/// `mango_idx_view:end_key/1`, `?MAX_JSON_OBJ` shown as `"<MAX>"`.
fn end_key(ranges: &[&(Op, End, Op, End)]) -> Vec<Value> {
    let mut out = Vec::new();
    for (_, _, _, high) in ranges {
        match high {
            End::Val(v) => out.push(v.clone()),
            End::Min | End::Max => {
                out.push(Value::String("<MAX>".into()));
                return out;
            }
        }
    }
    out.push(Value::String("<MAX>".into()));
    out
}

/// What `_find` asked for besides the selector.
pub struct Request<'a> {
    pub sort: &'a [(String, SortDir)],
    pub use_index: Option<&'a UseIndex>,
    pub allow_fallback: bool,
}

/// The design document name `use_index` gives, without `_design/` (`mango_cursor:ddoc_name`).
fn ddoc_name(d: &str) -> &str {
    d.strip_prefix("_design/").unwrap_or(d)
}

/// Does `use_index` name this index?
fn named(use_index: Option<&UseIndex>, ix: &JsonIndex) -> bool {
    let own = ddoc_name(&ix.ddoc);
    match use_index {
        None => false,
        Some(UseIndex::Ddoc(d)) => own == ddoc_name(d),
        Some(UseIndex::DdocAndName(d, n)) => own == ddoc_name(d) && ix.name == *n,
    }
}

/// Chooses the index for a query and the keys `_explain` reports. Errs as CouchDB does when
/// `allow_fallback` is false and `use_index` names no usable index.
pub fn plan(sel: &Selector, req: &Request, indexes: &[JsonIndex]) -> Result<Plan, MangoError> {
    let root = sel.root.as_ref();
    let sort_fields: Vec<&str> = req.sort.iter().map(|(f, _)| f.as_str()).collect();
    let descending = req.sort.first().is_some_and(|(_, d)| *d == SortDir::Desc);
    let by_id = sort_fields == ["_id"];
    let candidates: Vec<usize> = (0..indexes.len())
        .filter(|&i| {
            let ix = &indexes[i];
            (ix.partial.is_none() || named(req.use_index, ix)) && usable(ix, root, &sort_fields)
        })
        .collect();
    // `mango_cursor:create/4`: a usable index the client named wins; otherwise any usable
    // one may, unless fallback is off.
    let preferred: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| named(req.use_index, &indexes[i]))
        .collect();
    let all_docs_usable = req.sort.is_empty() || by_id;
    let usable_count = candidates.len() + usize::from(all_docs_usable);
    let candidates = if !preferred.is_empty() {
        preferred
    } else if req.allow_fallback || (req.use_index.is_none() && usable_count > 1) {
        candidates
    } else {
        return Err(MangoError::InvalidIndex(match req.use_index {
            None => "You must specify an index with the `use_index` parameter.".into(),
            Some(UseIndex::Ddoc(d)) => format!(
                "_design/{} specified by `use_index` could not be found or it is not suitable.",
                ddoc_name(d)
            ),
            Some(UseIndex::DdocAndName(d, n)) => format!(
                "_design/{}, {n} specified by `use_index` could not be found or it is not suitable.",
                ddoc_name(d)
            ),
        }));
    };
    let noop = sel.is_noop_range();
    let ranges: Vec<(String, Span)> = root.map(field_ranges).unwrap_or_default();
    // `composite_indexes/2`: the longest prefix of columns with a range.
    let prefix = |ix: &JsonIndex| -> Vec<&Span> {
        ix.fields
            .iter()
            .map_while(|(c, _)| ranges.iter().find(|(f, _)| f == c).map(|(_, r)| r))
            .collect()
    };
    let difference = |ix: &JsonIndex| ranges.len() as i64 - prefix(ix).len() as i64;
    // `choose_best_index/1`.
    let best = candidates.iter().copied().min_by(|&a, &b| {
        let (ia, ib) = (&indexes[a], &indexes[b]);
        difference(ia)
            .cmp(&difference(ib))
            .then(ia.fields.len().cmp(&ib.fields.len()))
            .then_with(|| (&ia.ddoc, &ia.name).cmp(&(&ib.ddoc, &ib.name)))
    });
    let (index, start, end) = match best {
        Some(i) => {
            let spans = prefix(&indexes[i]);
            let (start, end) = if noop || spans.iter().any(|s| s.is_none()) {
                (Value::Null, Value::Null)
            } else {
                let live: Vec<&(Op, End, Op, End)> =
                    spans.iter().flat_map(|s| s.as_ref()).collect();
                (Value::Array(start_key(&live)), Value::Array(end_key(&live)))
            };
            (Chosen::Json(i), start, end)
        }
        // `_all_docs`: rows in `_id` order; it serves a sort on `_id` alone.
        None if all_docs_usable => {
            let r = sel.id_range();
            (Chosen::AllDocs, r.start_key, r.end_key)
        }
        None => return Err(MangoError::NoUsableIndex),
    };
    let (start_key, end_key) = if descending {
        (end, start)
    } else {
        (start, end)
    };
    Ok(Plan {
        index,
        start_key,
        end_key,
        descending,
        empty: noop,
    })
}

/// CouchDB's warnings for a query run on `plan`: the named index was not used, no index was.
pub fn warnings(plan: &Plan, use_index: Option<&UseIndex>, indexes: &[JsonIndex]) -> Vec<String> {
    let mut out = Vec::new();
    let used = match plan.index {
        Chosen::Json(i) => named(use_index, &indexes[i]),
        Chosen::AllDocs => false,
    };
    match use_index {
        Some(UseIndex::Ddoc(d)) if !used => out.push(format!(
            "_design/{} was not used because it does not contain a valid index for this query.",
            ddoc_name(d)
        )),
        Some(UseIndex::DdocAndName(d, n)) if !used => out.push(format!(
            "_design/{}, {n} was not used because it is not a valid index for this query.",
            ddoc_name(d)
        )),
        _ => {}
    }
    if plan.index == Chosen::AllDocs {
        out.push("No matching index found, create an index to optimize query time.".into());
    }
    out
}

impl JsonIndex {
    /// The index key of `doc`, `None` when CouchDB's index does not hold it: a field is
    /// missing, or it fails the partial filter selector.
    pub fn key(&self, doc: &Value) -> Option<Vec<Value>> {
        if self.partial.as_ref().is_some_and(|p| !p.matches(doc)) {
            return None;
        }
        self.fields
            .iter()
            .map(|(_, path)| match path.lookup(doc) {
                Lookup::Found(v) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Index order: keys by view collation, then `_id` bytewise.
pub fn cmp_index_rows(a: (&[Value], &str), b: (&[Value], &str)) -> Ordering {
    for (x, y) in a.0.iter().zip(b.0) {
        match cmp_json(x, y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.1.as_bytes().cmp(b.1.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ix(name: &str, fields: &[&str]) -> JsonIndex {
        JsonIndex {
            ddoc: format!("_design/{name}"),
            name: name.into(),
            fields: fields
                .iter()
                .map(|f| (f.to_string(), super::super::path::parse_field(f).unwrap()))
                .collect(),
            partial: None,
        }
    }

    fn p(sel: Value, sort: &[(&str, SortDir)], idx: &[JsonIndex]) -> Plan {
        let sort: Vec<(String, SortDir)> = sort.iter().map(|(f, d)| (f.to_string(), *d)).collect();
        let req = Request {
            sort: &sort,
            use_index: None,
            allow_fallback: true,
        };
        plan(&Selector::parse(&sel).unwrap(), &req, idx).unwrap()
    }

    #[test]
    fn use_index_and_fallback() {
        let mut partial = ix("p", &["age"]);
        partial.partial = Some(Selector::parse(&json!({"age": {"$gt": 30}})).unwrap());
        let idx = [ix("age", &["age"]), partial];
        let sel = Selector::parse(&json!({"age": {"$gt": 1}})).unwrap();
        let run = |u: Option<UseIndex>, fallback: bool| {
            let req = Request {
                sort: &[],
                use_index: u.as_ref(),
                allow_fallback: fallback,
            };
            plan(&sel, &req, &idx).map(|p| (p.index.clone(), warnings(&p, u.as_ref(), &idx)))
        };
        // A partial index only when named, with or without the `_design/` prefix.
        assert_eq!(run(None, true).unwrap(), (Chosen::Json(0), vec![]));
        for name in ["p", "_design/p"] {
            assert_eq!(
                run(Some(UseIndex::Ddoc(name.into())), true).unwrap().0,
                Chosen::Json(1)
            );
        }
        let (chosen, warn) = run(Some(UseIndex::Ddoc("nope".into())), true).unwrap();
        assert_eq!(chosen, Chosen::Json(0));
        assert!(warn[0].contains("_design/nope was not used"), "{warn:?}");
        let e = run(
            Some(UseIndex::DdocAndName("nope".into(), "x".into())),
            false,
        )
        .unwrap_err();
        assert_eq!(e.error_tag(), "invalid_index");
        // A definition repeating a column is usable, and (signed, as in CouchDB) ranks first.
        let with_dup = [ix("age", &["age"]), ix("dup", &["age", "age"])];
        let req = Request {
            sort: &[],
            use_index: None,
            allow_fallback: true,
        };
        assert_eq!(plan(&sel, &req, &with_dup).unwrap().index, Chosen::Json(1));
        // The partial filter decides membership.
        assert_eq!(idx[1].key(&json!({"age": 20})), None);
        assert!(idx[1].key(&json!({"age": 40})).is_some());
    }

    #[test]
    fn chooses_like_couchdb() {
        let idx = [
            ix("age", &["age"]),
            ix("name", &["name", "location"]),
            ix("loc", &["location"]),
        ];
        let r = p(json!({"age": {"$gt": 0}}), &[], &idx);
        assert_eq!(r.index, Chosen::Json(0));
        assert_eq!((r.start_key, r.end_key), (json!([0]), json!(["<MAX>"])));
        let r = p(json!({"location": {"$beginsWith": "A"}}), &[], &idx);
        assert_eq!(r.index, Chosen::Json(2));
        assert_eq!(
            (r.start_key, r.end_key),
            (json!(["A"]), json!(["A\u{ffff}", "<MAX>"]))
        );
        let r = p(
            json!({"location": {"$beginsWith": "A"}}),
            &[("location", SortDir::Desc)],
            &idx,
        );
        assert!(r.descending);
        assert_eq!(
            (r.start_key, r.end_key),
            (json!(["A\u{ffff}", "<MAX>"]), json!(["A"]))
        );
        let r = p(
            json!({"name": "Eddie", "location": {"$beginsWith": "A"}}),
            &[],
            &idx,
        );
        assert_eq!(r.index, Chosen::Json(1));
        assert_eq!(r.start_key, json!(["Eddie", "A"]));
        // A field the index needs but the selector does not require: not usable.
        assert_eq!(p(json!({"other": 1}), &[], &idx).index, Chosen::AllDocs);
        assert_eq!(
            p(json!({"age": {"$exists": false}}), &[], &idx).index,
            Chosen::AllDocs
        );
        // `$or` requires what every branch requires; an empty `$or` requires anything.
        assert_eq!(
            p(json!({"$or": [{"age": 1}, {"age": 2}]}), &[], &idx).index,
            Chosen::Json(0)
        );
        assert_eq!(
            p(json!({"$or": [{"age": 1}, {"b": 2}]}), &[], &idx).index,
            Chosen::AllDocs
        );
        let r = p(json!({"age": 22, "$or": []}), &[], &idx);
        assert_eq!((r.index, r.empty), (Chosen::Json(0), false));
        // Sorts: the index must serve it, leading constant columns skipped.
        let r = p(
            json!({"name": "x", "location": {"$gt": null}}),
            &[("location", SortDir::Asc)],
            &idx,
        );
        assert_eq!(r.index, Chosen::Json(1));
        let sort = [("name".to_owned(), SortDir::Asc)];
        let none = plan(
            &Selector::parse(&json!({"age": {"$gt": 1}})).unwrap(),
            &Request {
                sort: &sort,
                use_index: None,
                allow_fallback: true,
            },
            &idx,
        );
        assert!(matches!(none, Err(MangoError::NoUsableIndex)), "{none:?}");
        let r = p(json!({"a": 1}), &[("_id", SortDir::Desc)], &idx);
        assert_eq!((r.index, r.descending), (Chosen::AllDocs, true));
    }

    #[test]
    fn index_keys_and_order() {
        let i = ix("n", &["a", "b.c"]);
        let d1 = json!({"_id": "x", "a": 1, "b": {"c": "z"}});
        let d2 = json!({"_id": "y", "a": 1});
        assert_eq!(i.key(&d1), Some(vec![json!(1), json!("z")]));
        assert_eq!(i.key(&d2), None);
        let (k1, k2) = (vec![d1["a"].clone()], vec![d1["a"].clone()]);
        assert_eq!(cmp_index_rows((&k1, "x"), (&k2, "y")), Ordering::Less);
    }
}
