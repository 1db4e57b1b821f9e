//! CouchDB value ordering.
//!
//! * [`cmp_json`] is view collation (`couch_ejson_compare`): `null < false < true < numbers <
//!   strings < arrays < objects`; numbers compare numerically and exactly across integers and
//!   floats (`1 == 1.0`, `9007199254740993 > 9007199254740992.0`); strings compare with the ICU
//!   root collator at tertiary strength; arrays element-wise (shorter prefix first); objects
//!   pair-wise in stored key order (key by ICU, then value), fewer pairs first.
//! * [`cmp_raw`] is Erlang term order, which CouchDB uses for the top-level `_id` field:
//!   `number < false < null < true < object < array < string`, strings bytewise.
//!
//! Strings that are byte-equal are equal under both orders. For strings made only of printable
//! ASCII (U+0020..U+007E), ICU's root tertiary order is reproduced by a small table computed
//! once from ICU itself (primary rank per character, then lowercase-before-uppercase at the
//! first case difference). Every printable ASCII character has exactly one collation element
//! in the root collation, with a common secondary weight, so this is the UCA algorithm
//! specialised to that alphabet; `tests` checks it exhaustively against ICU on all strings of
//! length <= 2 and on random longer strings.

use std::cmp::Ordering;
use std::sync::OnceLock;

use icu_collator::options::{CollatorOptions, Strength};
use icu_collator::{CollatorBorrowed, CollatorPreferences};
use serde_json::Number;

use super::json::{Json, Object, View};

struct Icu {
    tertiary: Option<CollatorBorrowed<'static>>,
    /// Primary-level rank for bytes 0x20..=0x7E (index = byte). Equal ranks = same primary.
    ascii_rank: [u8; 128],
    ascii_ok: bool,
}

fn icu() -> &'static Icu {
    static ICU: OnceLock<Icu> = OnceLock::new();
    ICU.get_or_init(|| {
        let tertiary =
            CollatorBorrowed::try_new(CollatorPreferences::default(), CollatorOptions::default())
                .ok();
        let mut primary_opts = CollatorOptions::default();
        primary_opts.strength = Some(Strength::Primary);
        let primary = CollatorBorrowed::try_new(CollatorPreferences::default(), primary_opts).ok();
        let mut ascii_rank = [0u8; 128];
        let mut ascii_ok = false;
        if let (Some(_), Some(p)) = (&tertiary, &primary) {
            let mut chars: Vec<u8> = (0x20u8..=0x7e).collect();
            let s = |b: u8| (b as char).to_string();
            chars.sort_by(|a, b| p.compare(&s(*a), &s(*b)));
            let mut rank = 0u8;
            for (i, &c) in chars.iter().enumerate() {
                if i > 0 && p.compare(&s(chars[i - 1]), &s(c)) != Ordering::Equal {
                    rank += 1;
                }
                ascii_rank[c as usize] = rank + 1;
            }
            ascii_ok = true;
        }
        Icu {
            tertiary,
            ascii_rank,
            ascii_ok,
        }
    })
}

#[inline]
fn printable_ascii(s: &[u8]) -> bool {
    s.iter().all(|&b| (0x20..0x7f).contains(&b))
}

fn ascii_cmp(rank: &[u8; 128], a: &[u8], b: &[u8]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match rank[*x as usize].cmp(&rank[*y as usize]) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    match a.len().cmp(&b.len()) {
        Ordering::Equal => {}
        o => return o,
    }
    // Same primary weights everywhere: differing positions are case variants of one letter.
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return if x.is_ascii_lowercase() {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
    }
    Ordering::Equal
}

/// ICU root collation, tertiary strength (CouchDB's `ucol_open("")` with default attributes).
pub fn cmp_str(a: &str, b: &str) -> Ordering {
    if a.as_bytes() == b.as_bytes() {
        return Ordering::Equal;
    }
    let icu = icu();
    if icu.ascii_ok && printable_ascii(a.as_bytes()) && printable_ascii(b.as_bytes()) {
        return ascii_cmp(&icu.ascii_rank, a.as_bytes(), b.as_bytes());
    }
    match &icu.tertiary {
        Some(c) => c.compare(a, b),
        None => a.cmp(b),
    }
}

/// ICU comparison without the ASCII table (used by tests to check the table).
#[doc(hidden)]
pub fn cmp_str_icu_only(a: &str, b: &str) -> Ordering {
    match &icu().tertiary {
        Some(c) => c.compare(a, b),
        None => a.cmp(b),
    }
}

#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

#[inline]
fn num(n: &Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i as i128)
    } else if let Some(u) = n.as_u64() {
        Num::Int(u as i128)
    } else {
        Num::Float(n.as_f64().unwrap_or(0.0))
    }
}

fn cmp_int_float(i: i128, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Less;
    }
    // Integers held by serde_json lie in [-2^63, 2^64).
    if f >= 18_446_744_073_709_551_616.0 {
        return Ordering::Less;
    }
    if f < -9_223_372_036_854_775_808.0 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    match i.cmp(&(t as i128)) {
        Ordering::Equal => {
            if f > t {
                Ordering::Less
            } else if f < t {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

/// Exact numeric comparison of two JSON numbers (int vs float compared by value).
pub fn cmp_num(a: &Number, b: &Number) -> Ordering {
    match (num(a), num(b)) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).reverse(),
    }
}

#[inline]
fn json_rank<J: Json>(v: &View<'_, J>) -> u8 {
    match v {
        View::Null => 0,
        View::Bool(false) => 1,
        View::Bool(true) => 2,
        View::Num(_) => 3,
        View::Str(_) => 4,
        View::Arr(_) => 5,
        View::Obj(_) => 6,
    }
}

/// View collation (CouchDB `couch_ejson_compare:less/2`).
pub fn cmp_json<A: Json, B: Json>(a: &A, b: &B) -> Ordering {
    match (a.view(), b.view()) {
        (View::Str(x), View::Str(y)) => cmp_str(x, y),
        (View::Num(x), View::Num(y)) => cmp_num(x, y),
        (View::Arr(x), View::Arr(y)) => {
            for (p, q) in x.iter().zip(y) {
                match cmp_json(p, q) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            x.len().cmp(&y.len())
        }
        (View::Obj(x), View::Obj(y)) => {
            for ((ka, va), (kb, vb)) in x.members().zip(y.members()) {
                match cmp_str(ka, kb) {
                    Ordering::Equal => {}
                    o => return o,
                }
                match cmp_json(va, vb) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            x.len().cmp(&y.len())
        }
        (x, y) => json_rank(&x).cmp(&json_rank(&y)),
    }
}

#[inline]
fn raw_rank<J: Json>(v: &View<'_, J>) -> u8 {
    // Erlang term order: number < atom (false < null < true) < tuple < list < binary.
    match v {
        View::Num(_) => 0,
        View::Bool(false) => 1,
        View::Null => 2,
        View::Bool(true) => 3,
        View::Obj(_) => 4,
        View::Arr(_) => 5,
        View::Str(_) => 6,
    }
}

/// Raw Erlang term order (CouchDB `mango_json:cmp_raw/2`), used for the `_id` field.
pub fn cmp_raw<A: Json, B: Json>(a: &A, b: &B) -> Ordering {
    match (a.view(), b.view()) {
        (View::Str(x), View::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        (View::Num(x), View::Num(y)) => cmp_num(x, y),
        (View::Arr(x), View::Arr(y)) => {
            for (p, q) in x.iter().zip(y) {
                match cmp_raw(p, q) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            x.len().cmp(&y.len())
        }
        (View::Obj(x), View::Obj(y)) => {
            for ((ka, va), (kb, vb)) in x.members().zip(y.members()) {
                match ka.as_bytes().cmp(kb.as_bytes()) {
                    Ordering::Equal => {}
                    o => return o,
                }
                match cmp_raw(va, vb) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            x.len().cmp(&y.len())
        }
        (x, y) => raw_rank(&x).cmp(&raw_rank(&y)),
    }
}

/// Erlang term equality: `exact` is `=:=` (`1` and `1.0` differ), otherwise `==` (they are
/// equal). Strings and keys compare bytewise, objects in stored key order.
pub fn term_eq<A: Json, B: Json>(a: &A, b: &B, exact: bool) -> bool {
    match (a.view(), b.view()) {
        (View::Num(x), View::Num(y)) => {
            if exact && (x.is_f64() != y.is_f64()) {
                return false;
            }
            cmp_num(x, y) == Ordering::Equal
        }
        (View::Str(x), View::Str(y)) => x == y,
        (View::Arr(x), View::Arr(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| term_eq(p, q, exact))
        }
        (View::Obj(x), View::Obj(y)) => {
            x.len() == y.len()
                && x.members()
                    .zip(y.members())
                    .all(|((ka, va), (kb, vb))| ka == kb && term_eq(va, vb, exact))
        }
        (View::Null, View::Null) => true,
        (View::Bool(x), View::Bool(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn sorted_strictly(xs: &[Value], f: fn(&Value, &Value) -> Ordering) {
        for w in xs.windows(2) {
            assert_eq!(f(&w[0], &w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
            assert_eq!(f(&w[1], &w[0]), Ordering::Greater, "{} > {}", w[1], w[0]);
        }
    }

    #[test]
    fn string_order_table() {
        let xs: Vec<Value> = ["a", "A", "aa", "b", "B", "ba", "bb"]
            .iter()
            .map(|s| json!(s))
            .collect();
        sorted_strictly(&xs, cmp_json);
        assert_eq!(cmp_str("a", "á"), Ordering::Less);
        assert_eq!(cmp_str("á", "b"), Ordering::Less);
        assert_eq!(cmp_str("\u{00e9}", "e\u{0301}"), Ordering::Equal);
        assert_eq!(cmp_str("a\u{0000}b", "ab"), Ordering::Equal);
        assert_eq!(cmp_str("hello", "help"), Ordering::Less);
        assert_eq!(cmp_str("held", "hello"), Ordering::Less);
    }

    #[test]
    fn couchdb_collation_test_table() {
        // From CouchDB's view collation docs / couch_ejson_compare_tests.erl ordering.
        let xs = vec![
            json!(null),
            json!(false),
            json!(true),
            json!(1),
            json!(2),
            json!(3.0),
            json!(4),
            json!("a"),
            json!("A"),
            json!("aa"),
            json!("b"),
            json!("B"),
            json!("ba"),
            json!("bb"),
            json!(["a"]),
            json!(["b"]),
            json!(["b", "c"]),
            json!(["b", "c", "a"]),
            json!(["b", "d"]),
            json!(["b", "d", "e"]),
            json!({"a": 1}),
            json!({"a": 2}),
            json!({"b": 1}),
            json!({"b": 2}),
            json!({"b": 2, "a": 1}),
            json!({"b": 2, "c": 2}),
        ];
        sorted_strictly(&xs, cmp_json);
    }

    #[test]
    fn numbers_exact() {
        assert_eq!(cmp_json(&json!(1), &json!(1.0)), Ordering::Equal);
        assert_eq!(
            cmp_json(&json!(9007199254740993u64), &json!(9007199254740992.0)),
            Ordering::Greater
        );
        assert_eq!(cmp_json(&json!(-5), &json!(-5.5)), Ordering::Greater);
        assert_eq!(cmp_json(&json!(5), &json!(5.5)), Ordering::Less);
        assert_eq!(
            cmp_json(&json!(u64::MAX), &json!(1.8446744073709552e19)),
            Ordering::Less
        );
        assert_eq!(
            cmp_json(&json!(i64::MIN), &json!(-9.223_372_036_854_776e18)),
            Ordering::Equal
        );
        assert_eq!(cmp_json(&json!(0.0), &json!(-0.0)), Ordering::Equal);
        assert_eq!(cmp_json(&json!(1e300), &json!(u64::MAX)), Ordering::Greater);
    }

    #[test]
    fn raw_order() {
        let xs = vec![
            json!(1),
            json!(false),
            json!(null),
            json!(true),
            json!({}),
            json!({"a": 1}),
            json!([]),
            json!([1]),
            json!("B"),
            json!("a"),
            json!("aa"),
        ];
        sorted_strictly(&xs, cmp_raw);
    }

    #[test]
    fn erlang_equality() {
        assert!(!term_eq(&json!(1), &json!(1.0), true));
        assert!(term_eq(&json!(1), &json!(1.0), false));
        assert!(term_eq(
            &json!([1, {"a": 2}]),
            &json!([1.0, {"a": 2.0}]),
            false
        ));
        assert!(!term_eq(
            &json!({"a": 1, "b": 2}),
            &json!({"b": 2, "a": 1}),
            false
        ));
    }

    #[test]
    fn ascii_table_matches_icu_on_random_longer_strings() {
        assert!(icu().ascii_ok, "the ASCII fast path must be active");
        let alphabet: Vec<char> = "aAbBzZ09 -_.~!eE".chars().collect();
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut mk = || {
                let len = (next() % 6) as usize;
                (0..len)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect::<String>()
            };
            let (a, b) = (mk(), mk());
            assert_eq!(cmp_str(&a, &b), cmp_str_icu_only(&a, &b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn ascii_table_matches_icu_exhaustively_len2() {
        assert!(icu().ascii_ok, "the ASCII fast path must be active");
        let mut all: Vec<String> = vec![String::new()];
        for a in 0x20u8..0x7f {
            all.push((a as char).to_string());
            for b in 0x20u8..0x7f {
                all.push(format!("{}{}", a as char, b as char));
            }
        }
        let mut by_icu = all.clone();
        by_icu.sort_by(|a, b| cmp_str_icu_only(a, b));
        for w in by_icu.windows(2) {
            assert_eq!(
                cmp_str(&w[0], &w[1]),
                cmp_str_icu_only(&w[0], &w[1]),
                "{:?} vs {:?}",
                w[0],
                w[1]
            );
        }
        let mut by_fast = all.clone();
        by_fast.sort_by(|a, b| cmp_str(a, b));
        assert_eq!(by_fast, by_icu);
    }
}
