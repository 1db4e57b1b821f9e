//! Field whitelists (`"fields"`): which members of a document cross a replication, and the
//! *mapped* revisions a projected body is written under. Pure: no I/O.
//!
//! A projected body is not the source's revision, so it never carries the source's revision
//! id. Each source revision `N-h` maps to `N-m` with `m` derived from `h` and the projection's
//! digest, and a projected document is written with `new_edits:false` and the mapped ids of
//! its source ancestors as `_revisions`. So:
//! - a restart re-sends nothing: the target's `_revs_diff` knows the mapped ids;
//! - an edit made on the target is an ordinary CouchDB conflict with the next projection;
//! - the target's tree tells which leaves came from which source revision, whatever the
//!   field list was: the first half of `m` depends on the source revision alone, the second
//!   on the field list too ([`from_source`]).

use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use crate::ids::hex;
use crate::mango::path::split_field;
use crate::mango::Selector;
use crate::store::write_canonical;

/// Tags every mapped id, so a change of the mapping scheme never reuses old ids.
const TAG: &str = "settee-fields-1";

/// Which attachments a rule lets through.
#[derive(Clone, Debug, PartialEq)]
enum Atts {
    None,
    All,
    Named(Vec<String>),
}

/// One list of paths, for the documents its selector matches (every document when `None`).
#[derive(Clone, Debug)]
pub struct Rule {
    selector: Option<Selector>,
    /// Each path as its segments, object members only.
    paths: Vec<Vec<String>>,
    atts: Atts,
}

/// A parsed `"fields"` option.
#[derive(Clone, Debug)]
pub struct Fields {
    rules: Vec<Rule>,
    /// Whether the option was a list of rules (a document matching none is not sent) rather
    /// than one plain list (every document is sent, projected).
    per_kind: bool,
    canonical: Value,
    digest: String,
}

/// A rule for every document from a list of paths, and the list as written (sorted), for the
/// canonical form.
fn parse_paths(v: &Value, at: &str) -> Result<(Rule, Vec<Value>), String> {
    let list = v.as_array().ok_or_else(|| {
        format!("{at} must be an array of field paths such as \"title\" or \"data.summary\"")
    })?;
    let mut paths = Vec::new();
    let mut atts = Atts::None;
    let mut names = Vec::new();
    for p in list {
        let s = p
            .as_str()
            .ok_or_else(|| format!("{at} must hold field path strings only, not {p}"))?;
        // An attachment name is taken as written: names like "cover.jpg" hold dots.
        if let Some(name) = s.strip_prefix("_attachments.").filter(|n| !n.is_empty()) {
            if atts != Atts::All {
                match &mut atts {
                    Atts::Named(n) => n.push(name.to_owned()),
                    a => *a = Atts::Named(vec![name.to_owned()]),
                }
            }
            names.push(json!(s));
            continue;
        }
        let segs = split_field(s).ok_or_else(|| {
            format!(
                "{at}: {s:?} is not a field path (empty segment); write \"a.b\" for member b of a"
            )
        })?;
        match segs[0].as_str() {
            "_attachments" => atts = Atts::All,
            // Always sent, so listing them changes nothing.
            "_id" | "_deleted" if segs.len() == 1 => continue,
            k if k.starts_with('_') => {
                return Err(format!(
                    "{at}: {s:?} is a CouchDB special member; only \"_attachments\" may be listed (`_id` and `_deleted` are always sent)"
                ))
            }
            _ => paths.push(segs),
        }
        names.push(json!(s));
    }
    paths.sort();
    paths.dedup();
    if let Atts::Named(n) = &mut atts {
        n.sort();
        n.dedup();
    }
    names.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    names.dedup();
    let rule = Rule {
        selector: None,
        paths,
        atts,
    };
    Ok((rule, names))
}

impl Fields {
    /// Parses `["a", "b.c"]` or `[{"selector": {...}, "fields": [...]}, ...]`.
    pub fn parse(v: &Value) -> Result<Fields, String> {
        let list = v.as_array().ok_or(
            "`fields` must be an array: field paths, or rules {\"selector\": ..., \"fields\": [...]}",
        )?;
        let per_kind = list.first().is_some_and(Value::is_object);
        let mut rules = Vec::new();
        let mut canonical = Vec::new();
        if per_kind {
            if list.is_empty() {
                return Err("`fields` has no rules".into());
            }
            for (i, r) in list.iter().enumerate() {
                let at = format!("`fields[{i}]`");
                let o = r.as_object().ok_or_else(|| {
                    format!("{at} must be a rule {{\"selector\": ..., \"fields\": [...]}}: do not mix rules and paths")
                })?;
                if let Some(k) = o.keys().find(|k| *k != "selector" && *k != "fields") {
                    return Err(format!(
                        "{at} has {k:?}: a rule has only \"selector\" and \"fields\""
                    ));
                }
                let sel = o
                    .get("selector")
                    .ok_or_else(|| format!("{at} has no \"selector\""))?;
                if !sel.is_object() {
                    return Err(format!("{at}.selector must be a JSON object"));
                }
                let selector =
                    Selector::parse(sel).map_err(|e| format!("{at}.selector is invalid: {e}"))?;
                let (mut rule, names) = parse_paths(
                    o.get("fields")
                        .ok_or_else(|| format!("{at} has no \"fields\""))?,
                    &format!("{at}.fields"),
                )?;
                canonical.push(json!({"selector": selector.normalized(), "fields": names}));
                rule.selector = Some(selector);
                rules.push(rule);
            }
        } else {
            let (rule, names) = parse_paths(v, "`fields`")?;
            canonical.push(json!({"fields": names}));
            rules.push(rule);
        }
        let canonical = Value::Array(canonical);
        let mut bytes = Vec::new();
        write_canonical(&canonical, &mut bytes);
        let digest = hex(&Md5::digest(&bytes));
        Ok(Fields {
            rules,
            per_kind,
            canonical,
            digest,
        })
    }

    /// What defines the projection, for the replication id.
    pub fn canonical(&self) -> &Value {
        &self.canonical
    }

    /// Whether a document must match a rule to be sent at all.
    pub fn per_kind(&self) -> bool {
        self.per_kind
    }

    /// The rule applying to a document: the first whose selector matches.
    pub fn rule_for(&self, doc: &Value) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.selector.as_ref().is_none_or(|s| s.matches(doc)))
    }

    /// Whether any rule sends attachments (then they are fetched with their data).
    pub fn wants_attachments(&self) -> bool {
        self.rules.iter().any(|r| r.atts != Atts::None)
    }

    /// The mapped id of a source revision `N-h` under this field list; `None` if `rev` is not
    /// a revision id.
    pub fn map_rev(&self, rev: &str) -> Option<String> {
        let (pos, h) = rev.split_once('-')?;
        pos.parse::<u64>().ok()?;
        Some(format!("{pos}-{}", mapped_hash(h, pos, &self.digest)))
    }

    /// A fetched source document (with `_rev` and `_revisions`) projected and renamed to its
    /// mapped revision; `None` when no rule applies (the document is not sent).
    pub fn project(&self, doc: &Value) -> Option<Value> {
        let rule = self.rule_for(doc)?;
        let mut out = rule.project(doc);
        let rev = doc.get("_rev").and_then(Value::as_str)?;
        out.insert("_rev".into(), json!(self.map_rev(rev)?));
        if let Some(r) = doc.get("_revisions") {
            let start = r.get("start").and_then(Value::as_u64)?;
            let ids = r.get("ids").and_then(Value::as_array)?;
            let mapped: Vec<Value> = ids
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let pos = start.checked_sub(i as u64)?.to_string();
                    Some(json!(mapped_hash(h.as_str()?, &pos, &self.digest)))
                })
                .collect::<Option<_>>()?;
            out.insert("_revisions".into(), json!({"start": start, "ids": mapped}));
        }
        Some(Value::Object(out))
    }
}

impl Rule {
    /// `_id`, `_deleted` when true, the listed paths that exist, and the listed attachments.
    fn project(&self, doc: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(id) = doc.get("_id") {
            out.insert("_id".into(), id.clone());
        }
        if doc.get("_deleted") == Some(&Value::Bool(true)) {
            out.insert("_deleted".into(), Value::Bool(true));
        }
        for path in &self.paths {
            copy_path(doc, &mut out, path);
        }
        if let Some(Value::Object(atts)) = doc.get("_attachments") {
            let kept: Map<String, Value> = atts
                .iter()
                .filter(|(name, _)| match &self.atts {
                    Atts::None => false,
                    Atts::All => true,
                    Atts::Named(n) => n.iter().any(|x| x == *name),
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !kept.is_empty() {
                out.insert("_attachments".into(), Value::Object(kept));
            }
        }
        out
    }
}

/// Copies the value at `path` (object members only) from `src` into `dst`, creating the
/// objects on the way. A path that is missing or runs into a non-object copies nothing.
fn copy_path(src: &Value, dst: &mut Map<String, Value>, path: &[String]) {
    let mut cur = src;
    for seg in path {
        match cur.get(seg.as_str()) {
            Some(v) if cur.is_object() => cur = v,
            _ => return,
        }
    }
    let mut at = dst;
    for seg in &path[..path.len() - 1] {
        let slot = at
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(m) = slot else { return };
        at = m;
    }
    at.insert(path[path.len() - 1].clone(), cur.clone());
}

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

/// 32 hex digits: 16 from the source revision alone, 16 from it and the field list.
fn mapped_hash(h: &str, pos: &str, digest: &str) -> String {
    let a = md5_hex(&[TAG, pos, h]);
    let b = md5_hex(&[TAG, pos, h, digest]);
    format!("{}{}", &a[..16], &b[..16])
}

/// Whether a revision held by a target came from a source whose revisions (every revision
/// on the paths of its leaves) are `source_revs`: it is one of them, or it is a mapped
/// revision of one of them under any field list. Decided from the revision ids alone, so a
/// replication document that was edited (a new replication id, another field list) still
/// recognises what it wrote.
pub fn from_source(rev: &str, source_revs: &[String]) -> bool {
    if source_revs.iter().any(|r| r == rev) {
        return true;
    }
    let Some((pos, h)) = rev.split_once('-') else {
        return false;
    };
    if h.len() != 32 {
        return false;
    }
    source_revs.iter().any(|s| {
        s.split_once('-')
            .is_some_and(|(p, sh)| p == pos && md5_hex(&[TAG, p, sh])[..16] == h[..16])
    })
}

/// Whether `rev` is a mapped revision of one of `revs` (under any field list) without being
/// one of them: a projection of a revision the other side already has.
pub fn is_projection_of(rev: &str, revs: &[String]) -> bool {
    !revs.iter().any(|r| r == rev) && from_source(rev, revs)
}

/// JSON equality as CouchDB users see it: numbers compare by value (a peer may re-encode
/// `1.0` as `1`), attachments by name and digest (one side may hold data, the other a stub),
/// and `_rev`/`_revisions` are ignored.
pub fn same_content(a: &Value, b: &Value) -> bool {
    fn eq(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| eq(p, q))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| eq(v, w)))
            }
            _ => a == b,
        }
    }
    fn digests(v: &Value) -> Option<Vec<(String, Option<String>)>> {
        let atts = v.get("_attachments")?.as_object()?;
        let mut out: Vec<_> = atts
            .iter()
            .map(|(k, a)| {
                (
                    k.clone(),
                    a.get("digest").and_then(Value::as_str).map(str::to_owned),
                )
            })
            .collect();
        out.sort();
        Some(out)
    }
    fn content(v: &Value) -> Option<&Map<String, Value>> {
        v.as_object()
    }
    let (Some(x), Some(y)) = (content(a), content(b)) else {
        return false;
    };
    let skip = |k: &str| matches!(k, "_rev" | "_revisions" | "_attachments");
    let xs: Vec<_> = x.iter().filter(|(k, _)| !skip(k)).collect();
    let ys: Vec<_> = y.iter().filter(|(k, _)| !skip(k)).collect();
    if xs.len() != ys.len() || !xs.iter().all(|(k, v)| y.get(*k).is_some_and(|w| eq(v, w))) {
        return false;
    }
    let (da, db) = (digests(a), digests(b));
    if da
        .as_ref()
        .is_some_and(|d| d.iter().any(|(_, x)| x.is_none()))
    {
        return false;
    }
    da.unwrap_or_default() == db.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: Value) -> Fields {
        Fields::parse(&v).unwrap()
    }

    #[test]
    fn a_plain_list_keeps_only_its_paths() {
        let fields = f(json!(["title", "data.summary", "_attachments.cover.jpg"]));
        let doc = json!({"_id": "e1", "_rev": "2-bb", "_revisions": {"start": 2, "ids": ["bb", "aa"]},
            "title": "T", "witness_name": "secret", "data": {"summary": "S", "notes": "private"},
            "_attachments": {"cover.jpg": {"digest": "md5-x", "data": "AA=="}, "scan.pdf": {"digest": "md5-y"}}});
        let p = fields.project(&doc).unwrap();
        assert_eq!(p["title"], "T");
        assert_eq!(p["data"], json!({"summary": "S"}));
        assert!(p.get("witness_name").is_none());
        assert_eq!(
            p["_attachments"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            vec!["cover.jpg"]
        );
        let rev = p["_rev"].as_str().unwrap();
        assert!(rev.starts_with("2-") && rev.len() == 34 && rev != "2-bb");
        assert_eq!(p["_revisions"]["start"], 2);
        let ids = p["_revisions"]["ids"].as_array().unwrap();
        assert_eq!(format!("2-{}", ids[0].as_str().unwrap()), rev);
        assert_eq!(
            format!("1-{}", ids[1].as_str().unwrap()),
            fields.map_rev("1-aa").unwrap(),
            "the history is the mapped ids of the source's ancestors"
        );
    }

    #[test]
    fn rules_pick_the_first_match_and_skip_the_rest() {
        let fields = f(json!([
            {"selector": {"template": "case"}, "fields": ["title", "date"]},
            {"selector": {"template": "person"}, "fields": ["name"]}
        ]));
        assert!(fields.per_kind());
        let case = fields
            .project(
                &json!({"_id": "c", "_rev": "1-a", "template": "case", "title": "t", "name": "n"}),
            )
            .unwrap();
        assert_eq!(case.get("title"), Some(&json!("t")));
        assert!(case.get("name").is_none() && case.get("template").is_none());
        assert!(fields
            .project(&json!({"_id": "x", "_rev": "1-a", "template": "other"}))
            .is_none());
    }

    #[test]
    fn the_field_list_defines_the_mapping() {
        let a = f(json!(["b", "a"]));
        let b = f(json!(["a", "b", "a"]));
        let c = f(json!(["a"]));
        assert_eq!(
            a.map_rev("3-abc"),
            b.map_rev("3-abc"),
            "order and repeats do not matter"
        );
        assert_ne!(a.map_rev("3-abc"), c.map_rev("3-abc"));
        assert_ne!(a.map_rev("3-abc"), a.map_rev("3-abd"));
        assert_eq!(a.map_rev("x"), None);
    }

    #[test]
    fn mapped_leaves_are_recognised_under_any_field_list() {
        let src = vec!["1-aa".to_string(), "2-bb".to_string()];
        for fields in [f(json!(["a"])), f(json!(["b", "c"]))] {
            assert!(from_source(&fields.map_rev("2-bb").unwrap(), &src));
            assert!(!from_source(&fields.map_rev("2-cc").unwrap(), &src));
            assert!(
                !from_source(&fields.map_rev("1-bb").unwrap(), &src),
                "same hash, other generation"
            );
        }
        assert!(from_source("2-bb", &src));
        assert!(!from_source("2-bc", &src));
        assert!(!from_source("junk", &src));
    }

    #[test]
    fn bad_lists_are_refused_with_the_place() {
        let e = |v: Value| Fields::parse(&v).unwrap_err();
        assert!(e(json!("title")).contains("array"));
        assert!(e(json!(["a..b"])).contains("\"a..b\""));
        assert!(e(json!(["_rev"])).contains("special"));
        assert!(e(json!([{"selector": {}, "fields": ["a"]}, "b"])).contains("`fields[1]`"));
        assert!(e(json!([{"selector": {"a": {"$bad": 1}}, "fields": ["a"]}])).contains("selector"));
        assert!(e(json!([{"selector": {}, "field": ["a"]}])).contains("\"field\""));
        assert!(e(json!([5])).contains("strings"));
    }

    #[test]
    fn content_equality_ignores_number_spelling_and_revisions() {
        let a = json!({"_id": "x", "_rev": "1-a", "n": 1.0, "o": {"k": [1, 2]}, "_attachments": {"f": {"digest": "md5-1", "data": "AA=="}}});
        let b = json!({"_id": "x", "_rev": "2-b", "n": 1, "o": {"k": [1, 2]}, "_attachments": {"f": {"digest": "md5-1", "stub": true}}});
        assert!(same_content(&a, &b));
        let c = json!({"_id": "x", "n": 1, "o": {"k": [1, 2]}});
        assert!(!same_content(&a, &c), "an attachment more is a difference");
        let d = json!({"_id": "x", "_rev": "2-b", "n": 2, "o": {"k": [1, 2]}, "_attachments": {"f": {"digest": "md5-1"}}});
        assert!(!same_content(&b, &d));
        assert!(same_content(&json!({"_id": "x"}), &json!({"_id": "x"})));
        assert!(!same_content(
            &json!({"_id": "x", "_deleted": true}),
            &json!({"_id": "x"})
        ));
    }
}
