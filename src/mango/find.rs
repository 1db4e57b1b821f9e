//! Pure parts of `POST /db/_find`: request validation (CouchDB `mango_opts:validate_find/1`,
//! `mango_sort`, `mango_fields`) and `fields` projection. Sorting is the planned index's
//! order ([`super::plan`]).

use serde_json::{Map, Value};

use super::error::{show, MangoError};
use super::path::{parse_field, Lookup};
use super::Selector;

/// Default `limit` (CouchDB `[mango] default_limit`).
pub const DEFAULT_LIMIT: usize = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

/// `use_index`: a design doc id (without `_design/`), optionally with an index name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UseIndex {
    Ddoc(String),
    DdocAndName(String, String),
}

/// `stale`: `"ok"` (-> `Ok`), or `"false"`/`false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    Ok,
    False,
}

/// A validated `_find` request body.
#[derive(Debug, Clone, PartialEq)]
pub struct FindRequest {
    pub selector: Selector,
    /// `None` = all fields (`fields` absent or `[]`).
    pub fields: Option<Vec<String>>,
    pub sort: Vec<(String, SortDir)>,
    pub limit: usize,
    pub skip: usize,
    /// `None` when absent, null or `""`.
    pub bookmark: Option<String>,
    pub execution_stats: bool,
    pub conflicts: bool,
    pub use_index: Option<UseIndex>,
    pub r: u64,
    pub update: bool,
    pub stable: bool,
    pub stale: Stale,
    pub allow_fallback: bool,
    /// `None` when absent or `""`.
    pub partition: Option<String>,
}

fn take<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    m.get(k)
}

fn boolean(m: &Map<String, Value>, k: &str, default: bool) -> Result<bool, MangoError> {
    match take(m, k) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(MangoError::InvalidBoolean {
            key: k.into(),
            value: show(v),
        }),
    }
}

fn non_neg(m: &Map<String, Value>, k: &str, default: usize) -> Result<usize, MangoError> {
    match take(m, k) {
        None => Ok(default),
        Some(Value::Number(n)) if !n.is_f64() && n.as_u64().is_some() => {
            Ok(usize::try_from(n.as_u64().unwrap_or(0)).unwrap_or(usize::MAX))
        }
        Some(v) => Err(MangoError::InvalidNonNegInteger {
            key: k.into(),
            value: show(v),
        }),
    }
}

fn use_index(v: &Value) -> Result<Option<UseIndex>, MangoError> {
    let bad = || MangoError::InvalidIndexName(show(v));
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let parts: Vec<&str> = s.split('/').collect();
            match parts.as_slice() {
                [d] => Ok(Some(UseIndex::Ddoc(d.to_string()))),
                ["_design", d] => Ok(Some(UseIndex::Ddoc(d.to_string()))),
                [d, n] => Ok(Some(UseIndex::DdocAndName(d.to_string(), n.to_string()))),
                ["_design", d, n] => Ok(Some(UseIndex::DdocAndName(d.to_string(), n.to_string()))),
                _ => Err(bad()),
            }
        }
        Value::Array(xs) => match xs.as_slice() {
            [] => Ok(None),
            [Value::String(d)] => Ok(Some(UseIndex::Ddoc(d.clone()))),
            [Value::String(d), Value::String(n)] => {
                Ok(Some(UseIndex::DdocAndName(d.clone(), n.clone())))
            }
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// Parse a `sort` value (`mango_sort:new/1`).
pub fn parse_sort(v: &Value) -> Result<Vec<(String, SortDir)>, MangoError> {
    let Value::Array(xs) = v else {
        return Err(MangoError::InvalidSortJson(show(v)));
    };
    let mut out = Vec::with_capacity(xs.len());
    for x in xs {
        let item = match x {
            Value::String(s) if s.is_empty() => {
                return Err(MangoError::InvalidSortField(show(x)));
            }
            Value::String(s) => (s.clone(), SortDir::Asc),
            Value::Object(m) if m.len() == 1 => {
                let (k, d) = m.iter().next().expect("one entry");
                match d.as_str() {
                    Some("asc") => (k.clone(), SortDir::Asc),
                    Some("desc") => (k.clone(), SortDir::Desc),
                    // CouchDB answers invalid_sort_field here too (its invalid_sort_dir
                    // clause never matches).
                    _ => {
                        return Err(MangoError::InvalidSortField(format!(
                            "{} (direction must be \"asc\" or \"desc\")",
                            show(x)
                        )))
                    }
                }
            }
            _ => return Err(MangoError::InvalidSortField(show(x))),
        };
        if parse_field(&item.0).is_none() {
            return Err(MangoError::InvalidFieldName(item.0));
        }
        out.push(item);
    }
    if out.windows(2).any(|w| w[0].1 != w[1].1) {
        return Err(MangoError::UnsupportedMixedSort);
    }
    Ok(out)
}

/// Parse a `fields` value (`mango_fields:new/1`). `None` = all fields.
pub fn parse_fields(v: &Value) -> Result<Option<Vec<String>>, MangoError> {
    let Value::Array(xs) = v else {
        return Err(MangoError::InvalidFields(show(v)));
    };
    if xs.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(xs.len());
    for x in xs {
        match x {
            Value::String(s) => {
                if parse_field(s).is_none() {
                    return Err(MangoError::InvalidFieldName(s.clone()));
                }
                out.push(s.clone());
            }
            // CouchDB also accepts objects here (text-index field specs) and then fails
            // with a 500 when projecting; we reject them up front.
            _ => return Err(MangoError::InvalidField(show(x))),
        }
    }
    Ok(Some(out))
}

const KNOWN: &[&str] = &[
    "selector",
    "use_index",
    "bookmark",
    "limit",
    "skip",
    "sort",
    "fields",
    "partition",
    "r",
    "conflicts",
    "stale",
    "update",
    "stable",
    "execution_stats",
    "allow_fallback",
];

impl FindRequest {
    /// Validate a `_find` body. Options are checked in CouchDB's order (selector first);
    /// unknown keys are reported after all known options validated.
    pub fn parse(body: &Value) -> Result<FindRequest, MangoError> {
        let Value::Object(m) = body else {
            return Err(MangoError::BadRequest(format!(
                "Request body must be a JSON object, not: {}",
                show(body)
            )));
        };
        let selector = match take(m, "selector") {
            None => return Err(MangoError::MissingRequiredKey("selector".into())),
            Some(v @ Value::Object(_)) => Selector::parse(v)?,
            Some(v) => return Err(MangoError::InvalidSelectorJson(show(v))),
        };
        let use_index = match take(m, "use_index") {
            None => None,
            Some(v) => use_index(v)?,
        };
        let bookmark = match take(m, "bookmark") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => return Err(MangoError::InvalidBookmark(show(v))),
        };
        let limit = non_neg(m, "limit", DEFAULT_LIMIT)?;
        let skip = non_neg(m, "skip", 0)?;
        let sort = match take(m, "sort") {
            None => Vec::new(),
            Some(v) => parse_sort(v)?,
        };
        let fields = match take(m, "fields") {
            None => None,
            Some(v) => parse_fields(v)?,
        };
        let partition = match take(m, "partition") {
            None => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) if s.starts_with('_') => {
                return Err(MangoError::InvalidPartition(format!(
                    "{s:?}: only reserved document ids may start with underscore"
                )))
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => return Err(MangoError::InvalidPartition(show(v))),
        };
        let r = match take(m, "r") {
            None => 1,
            Some(Value::Number(n)) if !n.is_f64() && n.as_u64().is_some_and(|x| x > 0) => {
                n.as_u64().unwrap_or(1)
            }
            Some(v) => {
                return Err(MangoError::InvalidPosInteger {
                    key: "r".into(),
                    value: show(v),
                })
            }
        };
        let conflicts = boolean(m, "conflicts", false)?;
        let stale = match take(m, "stale") {
            None | Some(Value::Bool(false)) => Stale::False,
            Some(Value::String(s)) if s == "false" => Stale::False,
            Some(Value::String(s)) if s == "ok" => Stale::Ok,
            Some(v) => return Err(MangoError::InvalidOkOrFalse(show(v))),
        };
        let update = boolean(m, "update", true)?;
        let stable = boolean(m, "stable", false)?;
        let execution_stats = boolean(m, "execution_stats", false)?;
        let allow_fallback = boolean(m, "allow_fallback", true)?;
        if let Some(k) = m.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(MangoError::InvalidKey(k.clone()));
        }
        Ok(FindRequest {
            selector,
            fields,
            sort,
            limit,
            skip,
            bookmark,
            execution_stats,
            conflicts,
            use_index,
            r,
            update,
            stable,
            stale,
            allow_fallback,
            partition,
        })
    }
}

fn set_path(target: &mut Value, keys: &[&str], idx: &[Option<usize>], value: Value) {
    let Some((first, rest)) = keys.split_first() else {
        return;
    };
    match target {
        Value::Object(m) => {
            if rest.is_empty() {
                m.insert(first.to_string(), value);
            } else if let Some(child) = m.get_mut(*first) {
                set_path(child, rest, &idx[1..], value);
            } else {
                let mut nested = value;
                for k in rest.iter().rev() {
                    let mut o = Map::new();
                    o.insert(k.to_string(), nested);
                    nested = Value::Object(o);
                }
                m.insert(first.to_string(), nested);
            }
        }
        Value::Array(xs) => {
            if let Some(slot) = idx[0].and_then(|i| xs.get_mut(i)) {
                if rest.is_empty() {
                    *slot = value;
                } else {
                    set_path(slot, rest, &idx[1..], value);
                }
            }
        }
        _ => {}
    }
}

/// CouchDB `fields` projection (`mango_fields:extract/2`): start from `{}` and copy each
/// listed path that exists in `doc`, creating intermediate objects (so `"a.0"` of an array
/// `a` yields `{"a": {"0": ...}}`, as in CouchDB). Missing paths and bad paths are skipped.
/// Invalid field names are skipped too ([`FindRequest::parse`] rejects them).
pub fn project(doc: &Value, fields: &[String]) -> Value {
    let mut out = Value::Object(Map::new());
    for f in fields {
        let Some(path) = parse_field(f) else { continue };
        if let Lookup::Found(v) = path.lookup(doc) {
            let keys: Vec<&str> = path.segs.iter().map(|s| &*s.key).collect();
            let idx: Vec<Option<usize>> = path.segs.iter().map(|s| s.index).collect();
            set_path(&mut out, &keys, &idx, v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tag(v: Value) -> &'static str {
        FindRequest::parse(&v).unwrap_err().error_tag()
    }

    #[test]
    fn defaults() {
        let r = FindRequest::parse(&json!({"selector": {"a": 1}})).unwrap();
        assert_eq!(r.limit, 25);
        assert_eq!(r.skip, 0);
        assert_eq!(r.fields, None);
        assert!(r.sort.is_empty());
        assert_eq!(r.bookmark, None);
        assert!(!r.execution_stats && !r.conflicts && r.update && !r.stable && r.allow_fallback);
        assert_eq!(r.r, 1);
        assert_eq!(r.use_index, None);
    }

    #[test]
    fn options() {
        let r = FindRequest::parse(&json!({
            "selector": {}, "limit": 0, "skip": 3, "fields": ["_id", "a.b"],
            "sort": [{"a": "desc"}, {"b": "desc"}], "bookmark": "xyz",
            "use_index": "_design/foo/bar", "execution_stats": true, "stale": "ok"
        }))
        .unwrap();
        assert_eq!(r.limit, 0);
        assert_eq!(r.skip, 3);
        assert_eq!(r.fields, Some(vec!["_id".into(), "a.b".into()]));
        assert_eq!(
            r.sort,
            vec![("a".into(), SortDir::Desc), ("b".into(), SortDir::Desc)]
        );
        assert_eq!(
            r.use_index,
            Some(UseIndex::DdocAndName("foo".into(), "bar".into()))
        );
        assert_eq!(r.stale, Stale::Ok);
    }

    #[test]
    fn errors() {
        assert_eq!(tag(json!({})), "missing_required_key");
        assert_eq!(tag(json!({"selector": []})), "invalid_selector_json");
        assert_eq!(tag(json!({"selector": {"$gt": 1}})), "invalid_selector");
        assert_eq!(
            tag(json!({"selector": {}, "limit": -1})),
            "invalid_non_neg_integer"
        );
        assert_eq!(
            tag(json!({"selector": {}, "skip": 1.5})),
            "invalid_non_neg_integer"
        );
        assert_eq!(tag(json!({"selector": {}, "r": 0})), "invalid_pos_integer");
        assert_eq!(
            tag(json!({"selector": {}, "conflicts": "yes"})),
            "invalid_boolean"
        );
        assert_eq!(
            tag(json!({"selector": {}, "fields": "a"})),
            "invalid_fields"
        );
        assert_eq!(tag(json!({"selector": {}, "fields": [1]})), "invalid_field");
        assert_eq!(
            tag(json!({"selector": {}, "sort": {"a": "asc"}})),
            "invalid_sort_json"
        );
        assert_eq!(
            tag(json!({"selector": {}, "sort": [""]})),
            "invalid_sort_field"
        );
        assert_eq!(
            tag(json!({"selector": {}, "sort": [{"a": "up"}]})),
            "invalid_sort_field"
        );
        assert_eq!(
            tag(json!({"selector": {}, "sort": ["a", {"b": "desc"}]})),
            "unsupported_mixed_sort"
        );
        assert_eq!(
            tag(json!({"selector": {}, "use_index": 5})),
            "invalid_index_name"
        );
        assert_eq!(
            tag(json!({"selector": {}, "use_index": "a/b/c"})),
            "invalid_index_name"
        );
        assert_eq!(
            tag(json!({"selector": {}, "bookmark": 1})),
            "invalid_bookmark"
        );
        assert_eq!(
            tag(json!({"selector": {}, "stale": true})),
            "invalid_ok_or_false_value"
        );
        assert_eq!(tag(json!({"selector": {}, "bogus": 1})), "invalid_key");
        assert_eq!(tag(json!([])), "bad_request");
    }

    #[test]
    fn projection() {
        let d = json!({"_id": "x", "a": {"b": 1, "c": 2}, "arr": [10, 20], "z": null});
        let f = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            project(&d, &f(&["a.b", "_id"])),
            json!({"a": {"b": 1}, "_id": "x"})
        );
        assert_eq!(
            project(&d, &f(&["missing", "a.b.c", "z"])),
            json!({"z": null})
        );
        assert_eq!(project(&d, &f(&["arr.1"])), json!({"arr": {"1": 20}}));
        assert_eq!(project(&d, &f(&["arr", "arr.1"])), json!({"arr": [10, 20]}));
        assert_eq!(
            project(&d, &f(&["a", "a.b"])),
            json!({"a": {"b": 1, "c": 2}})
        );
    }
}
