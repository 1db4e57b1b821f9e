//! Evaluation of a normalized selector against a document (CouchDB `mango_selector:match/3`).
//!
//! Evaluation never allocates except for `$keyMapMatch` (each key is turned into a JSON
//! string) and `$regex` on non-ASCII subjects (byte-mode view of the subject).

use std::cmp::Ordering;

use serde_json::Value;

use super::collate::{cmp_json, cmp_raw, term_eq};
use super::json::{Json, Object, View};
use super::parse::{Cond, Leaf, Node};
use super::path::Lookup;

/// An evaluation error: CouchDB throws (e.g. an unnormalized `$nor` inside `$elemMatch`);
/// the enclosing `$elemMatch`/`$allMatch`/`$keyMapMatch` catches it and yields false.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thrown;

type R = Result<bool, Thrown>;

/// Compares a document value with a selector argument.
#[inline]
fn cmp<J: Json>(a: &J, b: &Value, raw: bool) -> Ordering {
    if raw {
        cmp_raw(a, b)
    } else {
        cmp_json(a, b)
    }
}

#[inline]
fn eq<J: Json>(a: &J, b: &Value, raw: bool) -> bool {
    // Byte-identical strings are equal under both orders; skip the collator.
    if let (View::Str(x), Value::String(y)) = (a.view(), b) {
        if x == y {
            return true;
        }
        if raw {
            return false;
        }
    }
    cmp(a, b, raw) == Ordering::Equal
}

pub(crate) fn eval<J: Json>(node: &Node, v: &J, raw: bool) -> R {
    match node {
        Node::And(xs) => {
            for x in xs {
                if !eval(x, v, raw)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Node::Or(xs) => {
            if xs.is_empty() {
                return Ok(true);
            }
            for x in xs {
                if eval(x, v, raw)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Node::Not(x) => Ok(!eval(x, v, raw)?),
        Node::Nor(_) => Err(Thrown),
        Node::Default(_) => Ok(true),
        Node::Field(f) => {
            if f.path.is_empty() {
                return eval_cond(&f.cond, v, raw);
            }
            match f.path.lookup(v) {
                Lookup::Found(sub) => eval_cond(&f.cond, sub, raw || f.is_id),
                Lookup::NotFound => Ok(matches!(f.cond, Cond::Op(Leaf::Exists(false)))),
                Lookup::BadPath => Ok(false),
            }
        }
    }
}

fn eval_cond<J: Json>(c: &Cond, v: &J, raw: bool) -> R {
    match c {
        Cond::Op(l) => Ok(eval_leaf(l, v, raw)),
        Cond::Not(c) => Ok(!eval_cond(c, v, raw)?),
        Cond::ElemMatch(sub) => {
            if let View::Arr(xs) = v.view() {
                for x in xs {
                    match eval(sub, x, raw) {
                        Ok(true) => return Ok(true),
                        Ok(false) => {}
                        Err(Thrown) => return Ok(false),
                    }
                }
            }
            Ok(false)
        }
        Cond::AllMatch(sub) => match v.view() {
            View::Arr(xs) if !xs.is_empty() => {
                for x in xs {
                    if !matches!(eval(sub, x, raw), Ok(true)) {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            _ => Ok(false),
        },
        Cond::KeyMapMatch(sub) => {
            if let View::Obj(m) = v.view() {
                for (k, _) in m.members() {
                    match eval(sub, &Value::String(k.to_owned()), raw) {
                        Ok(true) => return Ok(true),
                        Ok(false) => {}
                        Err(Thrown) => return Ok(false),
                    }
                }
            }
            Ok(false)
        }
    }
}

fn type_name<J: Json>(v: &J) -> &'static str {
    match v.view() {
        View::Null => "null",
        View::Bool(_) => "boolean",
        View::Num(_) => "number",
        View::Str(_) => "string",
        View::Arr(_) => "array",
        View::Obj(_) => "object",
    }
}

fn eval_in<J: Json>(xs: &[Value], v: &J, raw: bool) -> bool {
    match v.view() {
        View::Arr(vs) => xs.iter().any(|x| vs.iter().any(|e| eq(e, x, raw))),
        _ => xs.iter().any(|x| eq(v, x, raw)),
    }
}

fn eval_leaf<J: Json>(l: &Leaf, v: &J, raw: bool) -> bool {
    match l {
        Leaf::Eq(x) => eq(v, x, raw),
        Leaf::Ne(x) => !eq(v, x, raw),
        Leaf::Lt(x) => cmp(v, x, raw) == Ordering::Less,
        Leaf::Lte(x) => cmp(v, x, raw) != Ordering::Greater,
        Leaf::Gt(x) => cmp(v, x, raw) == Ordering::Greater,
        Leaf::Gte(x) => cmp(v, x, raw) != Ordering::Less,
        Leaf::In(xs) => !xs.is_empty() && eval_in(xs, v, raw),
        Leaf::Nin(xs) => {
            xs.is_empty()
                || match v.view() {
                    View::Arr(_) => !eval_in(xs, v, raw),
                    _ => xs.iter().all(|x| !eq(v, x, raw)),
                }
        }
        Leaf::All(xs) => {
            if xs.is_empty() {
                return false;
            }
            let View::Arr(vs) = v.view() else {
                return false;
            };
            let has_all = xs.iter().all(|a| vs.iter().any(|e| term_eq(a, e, true)));
            has_all || (xs.len() == 1 && xs[0].is_array() && term_eq(&xs[0], v, false))
        }
        Leaf::Exists(b) => *b,
        Leaf::Type(t) => t == type_name(v),
        Leaf::Mod(d, r, _, _) => match v.view() {
            View::Num(n) if !n.is_f64() => {
                let x = n
                    .as_i64()
                    .map(|i| i as i128)
                    .or_else(|| n.as_u64().map(|u| u as i128));
                match x {
                    // i128 `%` truncates toward zero like Erlang `rem`; d != 0 (checked at parse).
                    Some(x) => x.checked_rem(*d) == Some(*r),
                    None => false,
                }
            }
            _ => false,
        },
        Leaf::Regex(re) => match v.view() {
            View::Str(s) => re.is_match(s),
            _ => false,
        },
        Leaf::BeginsWith(p) => match v.view() {
            View::Str(s) => s.starts_with(p.as_str()),
            _ => false,
        },
        Leaf::Size(n) => match v.view() {
            View::Arr(xs) => xs.len() as u64 == *n,
            _ => false,
        },
    }
}
