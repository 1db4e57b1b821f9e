//! Parse + normalize, in CouchDB's three steps (`mango_selector:normalize/1`):
//!
//! 1. `norm_ops`: validate operators and arguments; an object with >= 2 keys is an implicit
//!    `$and`; a non-object or `{}` is an implicit `$eq`; a non-`$` key is a sub-field.
//! 2. `norm_fields`: push field paths down to the leaf operators (through `$and $or $not
//!    $nor`); `$elemMatch $allMatch $keyMapMatch` start a fresh root (path `""` = the current
//!    value).
//! 3. `norm_negations`: push `$not`/`$nor` down by De Morgan and operator inversion; what
//!    cannot be inverted keeps a `$not` at the leaf. Exactly like CouchDB, this step does not
//!    descend into `$elemMatch`/`$allMatch`/`$keyMapMatch` sub-selectors: there `$not` stays a
//!    plain logical not and `$nor` stays unnormalized (which CouchDB's matcher rejects at run
//!    time, making the enclosing `$elemMatch` false).
//!
//! Finally a top-level condition without a field name is `invalid_selector`.

use serde_json::{Map, Number, Value};

use super::error::{show, MangoError};
use super::path::{split_field, FieldPath, Segment};
use super::pcre::MangoRegex;

/// Deepest nesting of operators (`$and`, `$not`, `$elemMatch`, implicit `$and`, ...) accepted.
/// Guards the recursion; CouchDB has no such limit. Nested field keys are not counted (they
/// are bounded by the JSON decoder's own depth limit, 128 for `serde_json`).
pub const MAX_DEPTH: usize = 64;

/// A leaf operator with its validated argument.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Leaf {
    Eq(Value),
    Ne(Value),
    Lt(Value),
    Lte(Value),
    Gt(Value),
    Gte(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    All(Vec<Value>),
    Exists(bool),
    Type(String),
    /// divisor, remainder, and the two original JSON numbers
    Mod(i128, i128, Number, Number),
    Regex(Box<MangoRegex>),
    BeginsWith(String),
    Size(u64),
}

/// A field's condition in the normalized tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    Op(Leaf),
    ElemMatch(Box<Node>),
    AllMatch(Box<Node>),
    KeyMapMatch(Box<Node>),
    /// `$not` kept at a leaf: the operator could not be inverted.
    Not(Box<Cond>),
}

/// The normalized selector tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    /// Only inside `$elemMatch`-style sub-selectors (not pushed down there, as in CouchDB).
    Not(Box<Node>),
    /// Only inside `$elemMatch`-style sub-selectors; evaluating it is an error (-> false).
    Nor(Vec<Node>),
    Field(Box<FieldNode>),
    /// `{"$default": {"$text": X}}`: a text-index condition, always true in memory.
    Default(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldNode {
    pub path: FieldPath,
    pub is_id: bool,
    pub cond: Cond,
}

// ---------------------------------------------------------------- step 1: norm_ops

enum A {
    And(Vec<A>),
    Or(Vec<A>),
    Not(Box<A>),
    Nor(Vec<A>),
    ElemMatch(Box<A>),
    AllMatch(Box<A>),
    KeyMapMatch(Box<A>),
    Leaf(Leaf),
    Default(Value),
    Field(String, Box<A>),
}

fn too_deep() -> MangoError {
    MangoError::InvalidSelector(format!("selector nested deeper than {MAX_DEPTH} levels"))
}

fn norm_ops(v: &Value, depth: usize) -> Result<A, MangoError> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    match v {
        Value::Object(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next().expect("one entry");
            norm_pair(k, arg, depth)
        }
        Value::Object(m) if m.len() >= 2 => Ok(A::And(
            m.iter()
                .map(|(k, arg)| norm_pair(k, arg, depth + 1))
                .collect::<Result<_, _>>()?,
        )),
        _ => Ok(A::Leaf(Leaf::Eq(v.clone()))),
    }
}

fn norm_list(op: &str, arg: &Value, depth: usize) -> Result<Vec<A>, MangoError> {
    match arg {
        Value::Array(xs) => xs.iter().map(|x| norm_ops(x, depth + 1)).collect(),
        _ => Err(MangoError::bad_arg(
            op,
            arg,
            "expected an array of selectors",
        )),
    }
}

fn norm_sub(op: &str, arg: &Value, depth: usize) -> Result<Box<A>, MangoError> {
    match arg {
        Value::Object(_) => Ok(Box::new(norm_ops(arg, depth + 1)?)),
        _ => Err(MangoError::bad_arg(op, arg, "expected a selector object")),
    }
}

fn values(op: &str, arg: &Value) -> Result<Vec<Value>, MangoError> {
    match arg {
        Value::Array(xs) => Ok(xs.clone()),
        _ => Err(MangoError::bad_arg(op, arg, "expected an array")),
    }
}

fn int_of(n: &Number) -> Option<i128> {
    if n.is_f64() {
        None
    } else if let Some(i) = n.as_i64() {
        Some(i as i128)
    } else {
        n.as_u64().map(|u| u as i128)
    }
}

fn norm_pair(k: &str, arg: &Value, depth: usize) -> Result<A, MangoError> {
    let leaf = |l: Leaf| Ok(A::Leaf(l));
    match k {
        "$and" => Ok(A::And(norm_list(k, arg, depth)?)),
        "$or" => Ok(A::Or(norm_list(k, arg, depth)?)),
        "$nor" => Ok(A::Nor(norm_list(k, arg, depth)?)),
        "$not" => Ok(A::Not(norm_sub(k, arg, depth)?)),
        "$elemMatch" => Ok(A::ElemMatch(norm_sub(k, arg, depth)?)),
        "$allMatch" => Ok(A::AllMatch(norm_sub(k, arg, depth)?)),
        "$keyMapMatch" => Ok(A::KeyMapMatch(norm_sub(k, arg, depth)?)),
        "$in" => leaf(Leaf::In(values(k, arg)?)),
        "$nin" => leaf(Leaf::Nin(values(k, arg)?)),
        "$all" => leaf(Leaf::All(values(k, arg)?)),
        "$exists" => match arg {
            Value::Bool(b) => leaf(Leaf::Exists(*b)),
            _ => Err(MangoError::bad_arg(k, arg, "expected true or false")),
        },
        "$type" => match arg {
            Value::String(s) => leaf(Leaf::Type(s.clone())),
            _ => Err(MangoError::bad_arg(k, arg, "expected a type name string")),
        },
        "$mod" => {
            let why = "expected [Divisor, Remainder], two integers, divisor not 0";
            match arg {
                Value::Array(xs) if xs.len() == 2 => match (&xs[0], &xs[1]) {
                    (Value::Number(d), Value::Number(r)) => match (int_of(d), int_of(r)) {
                        // Deliberate deviation: CouchDB accepts a 0 divisor and then crashes
                        // (HTTP 500 / dead _changes feed) when it meets an integer value.
                        (Some(0), Some(_)) => Err(MangoError::bad_arg(
                            k,
                            arg,
                            "the divisor must be a non-zero integer",
                        )),
                        (Some(di), Some(ri)) => leaf(Leaf::Mod(di, ri, d.clone(), r.clone())),
                        _ => Err(MangoError::bad_arg(k, arg, why)),
                    },
                    _ => Err(MangoError::bad_arg(k, arg, why)),
                },
                _ => Err(MangoError::bad_arg(k, arg, why)),
            }
        }
        "$regex" => match arg {
            Value::String(p) => match MangoRegex::new(p) {
                Ok(r) => leaf(Leaf::Regex(Box::new(r))),
                Err(e) => Err(MangoError::bad_arg(k, arg, format!("invalid regex: {e}"))),
            },
            _ => Err(MangoError::InvalidOperator(format!(
                "$regex (argument must be a string, got {})",
                show(arg)
            ))),
        },
        "$beginsWith" => match arg {
            Value::String(p) => leaf(Leaf::BeginsWith(p.clone())),
            _ => Err(MangoError::InvalidOperator(format!(
                "$beginsWith (argument must be a string, got {})",
                show(arg)
            ))),
        },
        "$size" => match arg {
            Value::Number(n) if !n.is_f64() && n.as_u64().is_some() => {
                leaf(Leaf::Size(n.as_u64().unwrap_or(0)))
            }
            _ => Err(MangoError::bad_arg(k, arg, "expected an integer >= 0")),
        },
        "$text" => match arg {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                let mut m = Map::new();
                m.insert("$text".into(), arg.clone());
                Ok(A::Default(Value::Object(m)))
            }
            _ => Err(MangoError::bad_arg(
                k,
                arg,
                "expected a string, number or boolean",
            )),
        },
        "$default" => Ok(A::Default(arg.clone())),
        "$eq" => leaf(Leaf::Eq(arg.clone())),
        "$ne" => leaf(Leaf::Ne(arg.clone())),
        "$lt" => leaf(Leaf::Lt(arg.clone())),
        "$lte" => leaf(Leaf::Lte(arg.clone())),
        "$gt" => leaf(Leaf::Gt(arg.clone())),
        "$gte" => leaf(Leaf::Gte(arg.clone())),
        "$where" | "$geoWithin" | "$geoIntersects" | "$near" | "$nearSphere" => {
            Err(MangoError::NotSupported(k.to_string()))
        }
        _ if k.starts_with('$') => Err(MangoError::InvalidOperator(k.to_string())),
        // Field keys do not count towards the depth: normalization folds them into one
        // dotted path, while every operator level survives into the normal form.
        _ => Ok(A::Field(k.to_string(), Box::new(norm_ops(arg, depth)?))),
    }
}

// ---------------------------------------------------------------- step 2: norm_fields

enum BCond {
    Leaf(Leaf),
    ElemMatch(Box<B>),
    AllMatch(Box<B>),
    KeyMapMatch(Box<B>),
}

enum B {
    And(Vec<B>),
    Or(Vec<B>),
    Not(Box<B>),
    Nor(Vec<B>),
    Field(Vec<String>, BCond),
    Default(Value),
}

fn path_text(path: &[String]) -> String {
    FieldPath {
        segs: path.iter().map(|s| Segment::new(s)).collect(),
    }
    .to_field_string()
}

fn norm_fields(a: A, path: &[String]) -> Result<B, MangoError> {
    let many = |xs: Vec<A>| -> Result<Vec<B>, MangoError> {
        xs.into_iter().map(|x| norm_fields(x, path)).collect()
    };
    Ok(match a {
        A::And(xs) => B::And(many(xs)?),
        A::Or(xs) => B::Or(many(xs)?),
        A::Nor(xs) => B::Nor(many(xs)?),
        A::Not(x) => B::Not(Box::new(norm_fields(*x, path)?)),
        A::ElemMatch(x) => B::Field(
            path.to_vec(),
            BCond::ElemMatch(Box::new(norm_fields(*x, &[])?)),
        ),
        A::AllMatch(x) => B::Field(
            path.to_vec(),
            BCond::AllMatch(Box::new(norm_fields(*x, &[])?)),
        ),
        A::KeyMapMatch(x) => B::Field(
            path.to_vec(),
            BCond::KeyMapMatch(Box::new(norm_fields(*x, &[])?)),
        ),
        A::Leaf(l) => B::Field(path.to_vec(), BCond::Leaf(l)),
        A::Default(arg) => {
            let ok = path.is_empty()
                && matches!(&arg, Value::Object(m) if m.len() == 1 && m.contains_key("$text"));
            if !ok {
                let mut m = Map::new();
                m.insert("$default".into(), arg.clone());
                let shown = show(&Value::Object(m));
                return Err(MangoError::BadField(if path.is_empty() {
                    shown
                } else {
                    format!("{} under field {:?}", shown, path_text(path))
                }));
            }
            B::Default(arg)
        }
        A::Field(key, sub) => {
            if key.is_empty() && path.is_empty() {
                // CouchDB 3.5.2: an empty key at the root leaves the path empty.
                norm_fields(*sub, path)?
            } else {
                let segs = split_field(&key).ok_or_else(|| {
                    MangoError::InvalidFieldName(if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{}.{}", path_text(path), key)
                    })
                })?;
                let mut p = path.to_vec();
                p.extend(segs);
                norm_fields(*sub, &p)?
            }
        }
    })
}

// ---------------------------------------------------------------- step 3: norm_negations

fn field_node(path: Vec<String>, cond: Cond) -> Node {
    let path = FieldPath {
        segs: path.iter().map(|s| Segment::new(s)).collect(),
    };
    let is_id = path.is_id();
    Node::Field(Box::new(FieldNode { path, is_id, cond }))
}

/// Convert without pushing negations (used inside `$elemMatch`-style sub-selectors).
fn plain(b: B) -> Node {
    match b {
        B::And(xs) => Node::And(xs.into_iter().map(plain).collect()),
        B::Or(xs) => Node::Or(xs.into_iter().map(plain).collect()),
        B::Nor(xs) => Node::Nor(xs.into_iter().map(plain).collect()),
        B::Not(x) => Node::Not(Box::new(plain(*x))),
        B::Default(v) => Node::Default(v),
        B::Field(p, c) => field_node(p, plain_cond(c)),
    }
}

fn plain_cond(c: BCond) -> Cond {
    match c {
        BCond::Leaf(l) => Cond::Op(l),
        BCond::ElemMatch(x) => Cond::ElemMatch(Box::new(plain(*x))),
        BCond::AllMatch(x) => Cond::AllMatch(Box::new(plain(*x))),
        BCond::KeyMapMatch(x) => Cond::KeyMapMatch(Box::new(plain(*x))),
    }
}

fn norm_neg(b: B) -> Result<Node, MangoError> {
    Ok(match b {
        B::Not(x) => negate(*x)?,
        B::Nor(xs) => Node::And(xs.into_iter().map(negate).collect::<Result<_, _>>()?),
        B::And(xs) => Node::And(xs.into_iter().map(norm_neg).collect::<Result<_, _>>()?),
        B::Or(xs) => Node::Or(xs.into_iter().map(norm_neg).collect::<Result<_, _>>()?),
        other => plain(other),
    })
}

fn negate(b: B) -> Result<Node, MangoError> {
    Ok(match b {
        B::Not(x) => norm_neg(*x)?,
        B::Nor(xs) => Node::Or(xs.into_iter().map(norm_neg).collect::<Result<_, _>>()?),
        B::And(xs) => Node::Or(xs.into_iter().map(negate).collect::<Result<_, _>>()?),
        B::Or(xs) => Node::And(xs.into_iter().map(negate).collect::<Result<_, _>>()?),
        B::Default(v) => {
            let mut m = Map::new();
            m.insert("$default".into(), v);
            return Err(MangoError::bad_arg(
                "$not",
                &Value::Object(m),
                "a $text condition cannot be negated",
            ));
        }
        B::Field(p, BCond::Leaf(l)) => {
            let cond = match l {
                Leaf::Lt(v) => Cond::Op(Leaf::Gte(v)),
                Leaf::Lte(v) => Cond::Op(Leaf::Gt(v)),
                Leaf::Gt(v) => Cond::Op(Leaf::Lte(v)),
                Leaf::Gte(v) => Cond::Op(Leaf::Lt(v)),
                Leaf::Eq(v) => Cond::Op(Leaf::Ne(v)),
                Leaf::Ne(v) => Cond::Op(Leaf::Eq(v)),
                Leaf::In(v) => Cond::Op(Leaf::Nin(v)),
                Leaf::Nin(v) => Cond::Op(Leaf::In(v)),
                Leaf::Exists(x) => Cond::Op(Leaf::Exists(!x)),
                other => Cond::Not(Box::new(Cond::Op(other))),
            };
            field_node(p, cond)
        }
        B::Field(p, c) => field_node(p, Cond::Not(Box::new(plain_cond(c)))),
    })
}

/// Parse and normalize a selector object. `Ok(None)` is the empty selector `{}`.
pub(crate) fn normalize(v: &Value) -> Result<Option<Node>, MangoError> {
    let m = match v {
        Value::Object(m) => m,
        _ => return Err(MangoError::InvalidSelectorJson(show(v))),
    };
    if m.is_empty() {
        return Ok(None);
    }
    let a = norm_ops(v, 0)?;
    let b = norm_fields(a, &[])?;
    let n = norm_neg(b)?;
    if let Node::Field(f) = &n {
        if f.path.is_empty() {
            return Err(MangoError::InvalidSelector(format!(
                "the condition {} applies to no field",
                show(&cond_json(&f.cond))
            )));
        }
    }
    Ok(Some(n))
}

// ---------------------------------------------------------------- back to JSON

fn obj1(k: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(k.to_string(), v);
    Value::Object(m)
}

pub(crate) fn leaf_json(l: &Leaf) -> Value {
    match l {
        Leaf::Eq(v) => obj1("$eq", v.clone()),
        Leaf::Ne(v) => obj1("$ne", v.clone()),
        Leaf::Lt(v) => obj1("$lt", v.clone()),
        Leaf::Lte(v) => obj1("$lte", v.clone()),
        Leaf::Gt(v) => obj1("$gt", v.clone()),
        Leaf::Gte(v) => obj1("$gte", v.clone()),
        Leaf::In(v) => obj1("$in", Value::Array(v.clone())),
        Leaf::Nin(v) => obj1("$nin", Value::Array(v.clone())),
        Leaf::All(v) => obj1("$all", Value::Array(v.clone())),
        Leaf::Exists(b) => obj1("$exists", Value::Bool(*b)),
        Leaf::Type(t) => obj1("$type", Value::String(t.clone())),
        Leaf::Mod(_, _, d, r) => obj1(
            "$mod",
            Value::Array(vec![Value::Number(d.clone()), Value::Number(r.clone())]),
        ),
        Leaf::Regex(r) => obj1("$regex", Value::String(r.source.clone())),
        Leaf::BeginsWith(p) => obj1("$beginsWith", Value::String(p.clone())),
        Leaf::Size(n) => obj1("$size", Value::from(*n)),
    }
}

pub(crate) fn cond_json(c: &Cond) -> Value {
    match c {
        Cond::Op(l) => leaf_json(l),
        Cond::ElemMatch(n) => obj1("$elemMatch", node_json(n)),
        Cond::AllMatch(n) => obj1("$allMatch", node_json(n)),
        Cond::KeyMapMatch(n) => obj1("$keyMapMatch", node_json(n)),
        Cond::Not(c) => obj1("$not", cond_json(c)),
    }
}

pub(crate) fn node_json(n: &Node) -> Value {
    match n {
        Node::And(xs) => obj1("$and", Value::Array(xs.iter().map(node_json).collect())),
        Node::Or(xs) => obj1("$or", Value::Array(xs.iter().map(node_json).collect())),
        Node::Nor(xs) => obj1("$nor", Value::Array(xs.iter().map(node_json).collect())),
        Node::Not(x) => obj1("$not", node_json(x)),
        Node::Default(v) => obj1("$default", v.clone()),
        Node::Field(f) => obj1(&f.path.to_field_string(), cond_json(&f.cond)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(v: Value) -> Value {
        match normalize(&v).unwrap() {
            None => json!({}),
            Some(n) => node_json(&n),
        }
    }

    fn err(v: Value) -> &'static str {
        normalize(&v).unwrap_err().error_tag()
    }

    #[test]
    fn shapes() {
        assert_eq!(norm(json!({})), json!({}));
        assert_eq!(norm(json!({"a": 5})), json!({"a": {"$eq": 5}}));
        assert_eq!(
            norm(json!({"a": {"$gt": 1, "$lt": 5}})),
            json!({"$and": [{"a": {"$gt": 1}}, {"a": {"$lt": 5}}]})
        );
        assert_eq!(norm(json!({"a": {"b": 1}})), json!({"a.b": {"$eq": 1}}));
        assert_eq!(norm(json!({"a": {}})), json!({"a": {"$eq": {}}}));
        assert_eq!(norm(json!({"a": [1, 2]})), json!({"a": {"$eq": [1, 2]}}));
        assert_eq!(
            norm(json!({"a": {"$or": [1, 2]}})),
            json!({"$or": [{"a": {"$eq": 1}}, {"a": {"$eq": 2}}]})
        );
        assert_eq!(
            norm(json!({"a": {"$elemMatch": {"$gte": 80}}})),
            json!({"a": {"$elemMatch": {"": {"$gte": 80}}}})
        );
        assert_eq!(norm(json!({"$not": {"a": 1}})), json!({"a": {"$ne": 1}}));
        assert_eq!(
            norm(json!({"$nor": [{"a": 1}, {"b": {"$gt": 2}}]})),
            json!({"$and": [{"a": {"$ne": 1}}, {"b": {"$lte": 2}}]})
        );
        assert_eq!(
            norm(json!({"a": {"$not": {"$size": 1}}})),
            json!({"a": {"$not": {"$size": 1}}})
        );
        assert_eq!(
            norm(json!({"a": {"$not": {"$not": {"$size": 1}}}})),
            json!({"a": {"$size": 1}})
        );
        assert_eq!(
            norm(json!({"x": {"$not": {"$and": []}}})),
            json!({"$or": []})
        );
        assert_eq!(norm(json!({"x": {"$nor": []}})), json!({"$and": []}));
        assert_eq!(
            norm(json!({"a": {"$not": {"$exists": true, "$eq": 0}}})),
            json!({"$or": [{"a": {"$exists": false}}, {"a": {"$ne": 0}}]})
        );
        assert_eq!(norm(json!({"a\\.b": 1})), json!({"a\\.b": {"$eq": 1}}));
        assert_eq!(
            norm(json!({"a": {"b\\.c": 1}})),
            json!({"a.b\\.c": {"$eq": 1}})
        );
        assert_eq!(
            norm(json!({"$text": "x"})),
            json!({"$default": {"$text": "x"}})
        );
        // negations are not pushed inside $elemMatch (as in CouchDB)
        assert_eq!(
            norm(json!({"a": {"$elemMatch": {"$not": {"b": 1}}}})),
            json!({"a": {"$elemMatch": {"$not": {"b": {"$eq": 1}}}}})
        );
        // the sharing guide's first example is a condition on type.type
        assert_eq!(
            norm(json!({"type": {"$or": [{"type": "collection"}, {"type": "item"}]}})),
            json!({"$or": [{"type.type": {"$eq": "collection"}}, {"type.type": {"$eq": "item"}}]})
        );
    }

    #[test]
    fn errors() {
        assert_eq!(err(json!({"a": {"$foo": 1}})), "invalid_operator");
        assert_eq!(err(json!({"$key": 1})), "invalid_operator");
        assert_eq!(err(json!({"a": {"$regex": 1}})), "invalid_operator");
        assert_eq!(err(json!({"a": {"$regex": "("}})), "bad_arg");
        assert_eq!(err(json!({"a": {"$mod": [0, 1]}})), "bad_arg");
        assert_eq!(err(json!({"a": {"$mod": [2.0, 1]}})), "bad_arg");
        assert_eq!(err(json!({"a": {"$size": 1.0}})), "bad_arg");
        assert_eq!(err(json!({"a": {"$size": -1}})), "bad_arg");
        assert_eq!(err(json!({"$and": {"a": 1}})), "bad_arg");
        assert_eq!(err(json!({"$where": "x"})), "not_supported");
        assert_eq!(err(json!({"$gt": 1})), "invalid_selector");
        assert_eq!(err(json!({"": 1})), "invalid_selector");
        assert_eq!(err(json!({"a..b": 1})), "invalid_field_name");
        assert_eq!(err(json!({"a": {"": 1}})), "invalid_field_name");
        assert_eq!(err(json!({"a": {"$text": "x"}})), "bad_field");
        assert_eq!(err(json!({"$not": {"$text": "x"}})), "bad_arg");
        assert_eq!(err(json!([1])), "invalid_selector_json");
    }

    #[test]
    fn idempotent_examples() {
        for s in [
            json!({"a": {"$gt": 1, "$lt": 5}}),
            json!({"$nor": [{"a": 1}, {"b": {"$elemMatch": {"$nor": [{"c": 1}]}}}]}),
            json!({"a\\.b": {"c": {"$not": {"$regex": "^x"}}}}),
            json!({"$and": [{"$gt": 1}]}),
            json!({"a": {"$keyMapMatch": {"$beginsWith": "x"}}}),
        ] {
            let once = norm(s);
            assert_eq!(norm(once.clone()), once);
        }
    }
}
