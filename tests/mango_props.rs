//! Property tests for the Mango selector engine.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use settee::mango::json::Doc;
use settee::mango::Selector;
use std::cmp::Ordering;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ generators

/// Scalar/array values from a domain where view collation is easy to state independently:
/// null < false < true < ints < lowercase ASCII strings (bytewise == ICU here) < int arrays.
fn simple_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(|i| json!(i)),
        "[a-c]{0,2}".prop_map(Value::String),
        prop::collection::vec((-2i64..3).prop_map(|i| json!(i)), 0..3).prop_map(Value::Array),
    ]
}

const FIELDS: &[&str] = &["a", "b", "c.d"];

fn simple_doc() -> impl Strategy<Value = Value> {
    (
        prop::option::of(simple_value()),
        prop::option::of(simple_value()),
        prop_oneof![
            Just(None),
            simple_value().prop_map(|v| Some(json!(v))),
            prop::option::of(simple_value()).prop_map(|d| {
                let mut m = Map::new();
                if let Some(d) = d {
                    m.insert("d".into(), d);
                }
                Some(Value::Object(m))
            }),
        ],
    )
        .prop_map(|(a, b, c)| {
            let mut m = Map::new();
            if let Some(a) = a {
                m.insert("a".into(), a);
            }
            if let Some(b) = b {
                m.insert("b".into(), b);
            }
            if let Some(c) = c {
                m.insert("c".into(), c);
            }
            Value::Object(m)
        })
}

fn leaf_cond() -> impl Strategy<Value = Value> {
    prop_oneof![
        simple_value().prop_map(|v| json!({"$eq": v})),
        simple_value().prop_map(|v| json!({"$ne": v})),
        simple_value().prop_map(|v| json!({"$lt": v})),
        simple_value().prop_map(|v| json!({"$lte": v})),
        simple_value().prop_map(|v| json!({"$gt": v})),
        simple_value().prop_map(|v| json!({"$gte": v})),
        prop::collection::vec(simple_value(), 0..3).prop_map(|v| json!({"$in": v})),
        prop::collection::vec(simple_value(), 0..3).prop_map(|v| json!({"$nin": v})),
        any::<bool>().prop_map(|b| json!({"$exists": b})),
        prop::sample::select(vec![
            "null", "boolean", "number", "string", "array", "object"
        ])
        .prop_map(|t| json!({"$type": t})),
        (0u64..3).prop_map(|n| json!({"$size": n})),
    ]
}

fn field_sel() -> impl Strategy<Value = Value> {
    (prop::sample::select(FIELDS), leaf_cond()).prop_map(|(f, c)| {
        let mut m = Map::new();
        m.insert(f.to_string(), c);
        Value::Object(m)
    })
}

fn logic_sel() -> impl Strategy<Value = Value> {
    field_sel().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| json!({"$and": v})),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| json!({"$or": v})),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| json!({"$nor": v})),
            inner.clone().prop_map(|v| json!({"$not": v})),
        ]
    })
}

/// Wider selector generator for idempotence: every operator, nested sub-fields, escapes.
fn any_selector() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec!["a", "b", "a.b", "x\\.y", "0", "_id"]);
    let leaf = prop_oneof![
        leaf_cond(),
        simple_value(),
        (1i64..5, -2i64..3).prop_map(|(d, r)| json!({"$mod": [d, r]})),
        prop::sample::select(vec!["^a", "b+", "(?i)A", "a|b"]).prop_map(|p| json!({"$regex": p})),
        "[a-b]{0,2}".prop_map(|p| json!({"$beginsWith": p})),
        prop::collection::vec(simple_value(), 0..3).prop_map(|v| json!({"$all": v})),
    ];
    leaf.prop_recursive(4, 24, 3, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| json!({"$and": v})),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| json!({"$or": v})),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| json!({"$nor": v})),
            inner.clone().prop_map(|v| json!({"$not": v})),
            inner.clone().prop_map(|v| json!({"$elemMatch": v})),
            inner.clone().prop_map(|v| json!({"$allMatch": v})),
            inner.clone().prop_map(|v| json!({"$keyMapMatch": v})),
            prop::collection::vec((key.clone(), inner.clone()), 1..3).prop_map(|kvs| {
                let mut m = Map::new();
                for (k, v) in kvs {
                    m.insert(k.to_string(), v);
                }
                Value::Object(m)
            }),
        ]
    })
}

// ------------------------------------------------------------------ reference evaluator

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// View collation restricted to the generated domain (ints, [a-c] strings, int arrays,
/// objects with [a-d] keys): there ICU order coincides with byte order.
fn ref_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_i64().cmp(&y.as_i64()),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let o = ref_cmp(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            for ((ka, va), (kb, vb)) in x.iter().zip(y) {
                let o = ka.cmp(kb).then_with(|| ref_cmp(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

enum Got<'a> {
    Found(&'a Value),
    Missing,
    Bad,
}

fn ref_get<'a>(doc: &'a Value, field: &str) -> Got<'a> {
    let mut cur = doc;
    for k in field.split('.') {
        match cur {
            Value::Object(m) => match m.get(k) {
                Some(v) => cur = v,
                None => return Got::Missing,
            },
            _ => return Got::Bad,
        }
    }
    Got::Found(cur)
}

fn ref_leaf(op: &str, arg: &Value, v: &Value) -> bool {
    let eq = |a: &Value, b: &Value| ref_cmp(a, b) == Ordering::Equal;
    let in_list = |xs: &Vec<Value>| match v {
        Value::Array(vs) => xs.iter().any(|x| vs.iter().any(|e| eq(e, x))),
        _ => xs.iter().any(|x| eq(v, x)),
    };
    match op {
        "$eq" => eq(v, arg),
        "$ne" => !eq(v, arg),
        "$lt" => ref_cmp(v, arg) == Ordering::Less,
        "$lte" => ref_cmp(v, arg) != Ordering::Greater,
        "$gt" => ref_cmp(v, arg) == Ordering::Greater,
        "$gte" => ref_cmp(v, arg) != Ordering::Less,
        "$in" => {
            let xs = arg.as_array().unwrap();
            !xs.is_empty() && in_list(xs)
        }
        "$nin" => {
            let xs = arg.as_array().unwrap();
            xs.is_empty() || !in_list(xs)
        }
        "$exists" => arg.as_bool().unwrap(),
        "$type" => {
            let t = match v {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            arg == t
        }
        "$size" => matches!(v, Value::Array(xs) if xs.len() as u64 == arg.as_u64().unwrap()),
        _ => unreachable!("{op}"),
    }
}

/// Independent statement of CouchDB semantics for the generated subset: `positive == false`
/// evaluates the negation (negated conditions still need the field, except `$exists`).
fn ref_eval(sel: &Value, doc: &Value, positive: bool) -> bool {
    let m = sel.as_object().unwrap();
    let (k, arg) = m.iter().next().unwrap();
    match k.as_str() {
        "$and" | "$or" => {
            let xs = arg.as_array().unwrap();
            let and = (k == "$and") == positive;
            if xs.is_empty() {
                // $and [] and $or [] are both true; negating either gives the other.
                return true;
            }
            if and {
                xs.iter().all(|x| ref_eval(x, doc, positive))
            } else {
                xs.iter().any(|x| ref_eval(x, doc, positive))
            }
        }
        "$nor" => {
            let xs = arg.as_array().unwrap();
            if xs.is_empty() {
                return true;
            }
            if positive {
                xs.iter().all(|x| ref_eval(x, doc, false))
            } else {
                xs.iter().any(|x| ref_eval(x, doc, true))
            }
        }
        "$not" => ref_eval(arg, doc, !positive),
        field => {
            let (op, oarg) = arg.as_object().unwrap().iter().next().unwrap();
            match ref_get(doc, field) {
                Got::Bad => false,
                Got::Missing => op == "$exists" && oarg.as_bool() == Some(!positive),
                Got::Found(v) => ref_leaf(op, oarg, v) == positive,
            }
        }
    }
}

// ------------------------------------------------------------------ properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn normalization_is_idempotent(s in any_selector()) {
        if let Ok(sel) = Selector::parse(&s) {
            let n1 = sel.normalized();
            let again = Selector::parse(&n1);
            prop_assert!(again.is_ok(), "normal form {} does not parse: {:?}", n1, again.err());
            let again = again.unwrap();
            prop_assert_eq!(again.normalized(), n1);
            prop_assert_eq!(again, sel);
        }
    }

    #[test]
    fn nor_equals_not_or(a in logic_sel(), b in logic_sel(), doc in simple_doc()) {
        let nor = Selector::parse(&json!({"$nor": [a.clone(), b.clone()]}));
        let not_or = Selector::parse(&json!({"$not": {"$or": [a, b]}}));
        match (nor, not_or) {
            (Ok(x), Ok(y)) => {
                prop_assert_eq!(x.matches(&doc), y.matches(&doc));
                prop_assert_eq!(x.normalized(), y.normalized());
            }
            (Err(x), Err(y)) => prop_assert_eq!(x.error_tag(), y.error_tag()),
            (x, y) => prop_assert!(false, "{:?} vs {:?}", x, y),
        }
    }

    #[test]
    fn not_is_complement_when_field_present(
        cond in prop_oneof![
            leaf_cond(),
            (1i64..5, -2i64..3).prop_map(|(d, r)| json!({"$mod": [d, r]})),
            prop::sample::select(vec!["^a", "b+", "(?i)A"]).prop_map(|p| json!({"$regex": p})),
            "[a-b]{0,2}".prop_map(|p| json!({"$beginsWith": p})),
            prop::collection::vec(simple_value(), 0..3).prop_map(|v| json!({"$all": v})),
            leaf_cond().prop_map(|c| json!({"$elemMatch": c})),
            leaf_cond().prop_map(|c| json!({"$allMatch": c})),
            leaf_cond().prop_map(|c| json!({"$keyMapMatch": c})),
            (leaf_cond(), leaf_cond()).prop_map(|(a, b)| json!({"$or": [a, b]})),
        ],
        v in prop_oneof![simple_value(), simple_value().prop_map(|v| json!({"a": v}))],
        nested in any::<bool>(),
    ) {
        let (sel, doc) = if nested {
            (json!({"f": {"g": cond}}), json!({"f": {"g": v}}))
        } else {
            (json!({"f": cond}), json!({"f": v}))
        };
        let pos = Selector::parse(&sel).unwrap();
        let neg = Selector::parse(&json!({"$not": sel})).unwrap();
        prop_assert_eq!(neg.matches(&doc), !pos.matches(&doc), "sel {} doc {}", sel, doc);
        // ...and with the field missing, the negation never matches (except via $exists).
        let empty = json!({});
        if !sel.to_string().contains("$exists") {
            prop_assert!(!neg.matches(&empty));
            prop_assert!(!pos.matches(&empty));
        }
    }

    #[test]
    fn agrees_with_reference_evaluator(s in logic_sel(), doc in simple_doc()) {
        let sel = Selector::parse(&s);
        // Only a bare top-level `{"$not": {"$and": []}}`-like shape can fail (no field name).
        if let Ok(sel) = sel {
            prop_assert_eq!(sel.matches(&doc), ref_eval(&s, &doc, true), "sel {} doc {} norm {}", s, doc, sel.normalized());
        }
    }
}

// ------------------------------------------------------------------ fuzz

fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "$and",
            "$or",
            "$not",
            "$nor",
            "$eq",
            "$ne",
            "$lt",
            "$gt",
            "$in",
            "$nin",
            "$all",
            "$size",
            "$mod",
            "$regex",
            "$exists",
            "$type",
            "$elemMatch",
            "$allMatch",
            "$keyMapMatch",
            "$beginsWith",
            "$text",
            "$default",
            "$where",
            "$bogus",
            "",
            "a",
            "b",
            "a.b",
            "a..b",
            "a\\.b",
            "0",
            "_id",
            "\\",
        ])
        .prop_map(String::from),
        "[a-z$.\\\\]{0,4}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|i| json!(i)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-c(\\[*+?.^$|)\\\\é]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..4).prop_map(|kvs| {
                let mut m = Map::new();
                for (k, v) in kvs {
                    m.insert(k, v);
                }
                Value::Object(m)
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fuzz_parse_and_match_never_panic(sel in arb_json(), docs in prop::collection::vec(arb_json(), 1..4)) {
        let t = Instant::now();
        if let Ok(s) = Selector::parse(&sel) {
            for d in &docs {
                let m = s.matches(d);
                // The same text decoded borrowed (as filtered feeds read stored bodies).
                let text = serde_json::to_vec(d).unwrap();
                if let Some(doc) = Doc::object(&text, None) {
                    prop_assert_eq!(s.matches(&doc), m, "doc {}", d);
                }
            }
            let n = s.normalized();
            let again = Selector::parse(&n);
            prop_assert!(again.is_ok(), "normal form {} of {} does not parse", n, sel);
            prop_assert_eq!(again.unwrap().normalized(), n);
            let _ = s.is_noop_range();
        }
        let _ = settee::mango::find::FindRequest::parse(&json!({"selector": sel, "fields": ["a.b"], "sort": ["a"]}));
        for d in &docs {
            let _ = settee::mango::find::project(d, &["a".into(), "a.b".into(), "0".into()]);
        }
        prop_assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The changes feed decodes only a selector's top-level fields, borrowed from the stored
    /// text: a document cut down to them must match exactly as the whole one does.
    #[test]
    fn top_fields_decide_the_match(s in any_selector(), doc in simple_doc()) {
        if let (Ok(sel), Some(obj)) = (Selector::parse(&s), doc.as_object()) {
            if let Some(fields) = sel.top_fields() {
                let kept: serde_json::Map<String, Value> = obj
                    .iter()
                    .filter(|(k, _)| fields.iter().any(|f| f == *k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(sel.matches(&Value::Object(kept)), sel.matches(&doc), "fields {:?}", fields);
                let text = serde_json::to_vec(&doc).unwrap();
                let cut = Doc::object(&text, Some(fields)).unwrap();
                prop_assert_eq!(sel.matches(&cut), sel.matches(&doc), "borrowed, fields {:?}", fields);
            }
        }
    }
}

// ------------------------------------------------------------------ _id scan ranges

fn id_text() -> impl Strategy<Value = String> {
    "[aAbB_é😀\u{ffff}]{0,3}"
}

fn id_cond() -> impl Strategy<Value = Value> {
    let op = prop::sample::select(vec![
        "$eq",
        "$gt",
        "$gte",
        "$lt",
        "$lte",
        "$beginsWith",
        "$ne",
    ]);
    let arg = prop_oneof![
        4 => id_text().prop_map(Value::String),
        1 => any::<i8>().prop_map(|i| json!(i)),
        1 => Just(Value::Null),
    ];
    (op, arg).prop_map(|(op, arg)| {
        let arg = match (op, arg) {
            ("$beginsWith", Value::String(s)) => Value::String(s),
            ("$beginsWith", _) => json!("a"),
            (_, a) => a,
        };
        json!({"_id": {op: arg}})
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// `_find` reads only the `_all_docs` range `id_scan` gives: every id the selector
    /// matches must lie inside it, whatever mix of `$and`/`$or` holds the conditions.
    #[test]
    fn id_scan_holds_every_match(
        conds in prop::collection::vec(id_cond(), 1..4),
        alt in prop::collection::vec(id_cond(), 0..3),
        ids in prop::collection::vec(id_text(), 1..12),
    ) {
        let mut all = conds.clone();
        if !alt.is_empty() {
            all.push(json!({"$or": alt}));
        }
        let sel = Selector::parse(&json!({"$and": all})).unwrap();
        let scan = sel.id_scan();
        for id in ids {
            if sel.matches(&json!({"_id": id})) {
                prop_assert!(scan.contains(&id), "{} matches but is outside {:?}", id, scan);
                prop_assert!(!scan.past(&id));
            }
        }
    }
}
