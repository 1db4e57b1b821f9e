//! Field paths: `"a.b\\.c"` -> segments `["a", "b.c"]`.
//!
//! Rules (CouchDB `mango_util:parse_field`): split on `.` not preceded by `\`; every backslash
//! is then deleted from each segment. An empty segment (`"a..b"`, `"a."`, `".a"`) is an
//! `invalid_field_name` error, found at parse time like CouchDB main (3.5.2 finds it lazily at
//! match time). Deliberately stricter: a segment made only of backslashes (empty once the
//! backslashes are removed) is rejected too, since no dotted spelling could round-trip it.
//! Numeric segments index arrays (`binary_to_integer`: optional sign, digits; `"01"` is 1,
//! `"-1"` is never a valid index).

use super::json::{Json, Object, View};

/// One pre-parsed path segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub key: Box<str>,
    /// `Some(i)` when the key reads as a non-negative integer (usable as an array index).
    pub index: Option<usize>,
}

impl Segment {
    pub fn new(key: &str) -> Segment {
        Segment {
            key: key.into(),
            index: parse_index(key),
        }
    }
}

fn parse_index(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let (neg, digits) = match b.first() {
        Some(b'+') => (false, &b[1..]),
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: usize = 0;
    for d in digits {
        v = v.checked_mul(10)?.checked_add((d - b'0') as usize)?;
    }
    if neg && v != 0 {
        None
    } else {
        Some(v)
    }
}

/// A parsed field path; empty = "the current value" (CouchDB's `""` field).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldPath {
    pub segs: Vec<Segment>,
}

/// Result of looking a path up in a value.
#[derive(Debug, PartialEq)]
pub enum Lookup<'a, J> {
    Found(&'a J),
    /// A key is missing from an object.
    NotFound,
    /// Descending into a scalar, a non-index segment on an array, an index out of range.
    BadPath,
}

impl FieldPath {
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// True for exactly the one-segment path `_id` (compared with raw order).
    pub fn is_id(&self) -> bool {
        self.segs.len() == 1 && &*self.segs[0].key == "_id"
    }

    pub fn lookup<'a, J: Json>(&self, v: &'a J) -> Lookup<'a, J> {
        let mut cur = v;
        for seg in &self.segs {
            cur = match cur.view() {
                View::Obj(m) => match m.get(&seg.key) {
                    Some(x) => x,
                    None => return Lookup::NotFound,
                },
                View::Arr(a) => match seg.index.and_then(|i| a.get(i)) {
                    Some(x) => x,
                    None => return Lookup::BadPath,
                },
                _ => return Lookup::BadPath,
            };
        }
        Lookup::Found(cur)
    }

    /// Dotted spelling that parses back to the same segments (`.` escaped as `\.`; a leading
    /// `$` escaped as `\$` so the name is not read as an operator).
    pub fn to_field_string(&self) -> String {
        let mut out = String::new();
        if self.segs.first().is_some_and(|s| s.key.starts_with('$')) {
            out.push('\\');
        }
        for (i, s) in self.segs.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            for c in s.key.chars() {
                if c == '.' {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        out
    }
}

/// Split a field name into segment strings. `None` on an empty segment.
pub fn split_field(field: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut raw_len = 0usize;
    let mut prev_backslash = false;
    for c in field.chars() {
        if c == '.' && !prev_backslash {
            if raw_len == 0 || cur.is_empty() {
                return None;
            }
            parts.push(std::mem::take(&mut cur));
            raw_len = 0;
            prev_backslash = false;
            continue;
        }
        raw_len += 1;
        prev_backslash = c == '\\';
        if c != '\\' {
            cur.push(c);
        }
    }
    if raw_len == 0 || cur.is_empty() {
        return None;
    }
    parts.push(cur);
    Some(parts)
}

/// Parse a field name into a path.
pub fn parse_field(field: &str) -> Option<FieldPath> {
    Some(FieldPath {
        segs: split_field(field)?
            .iter()
            .map(|s| Segment::new(s))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(f: &str) -> Vec<String> {
        split_field(f).unwrap()
    }

    #[test]
    fn splitting() {
        assert_eq!(keys("ab"), vec!["ab"]);
        assert_eq!(keys("a.b"), vec!["a", "b"]);
        assert_eq!(keys("a\\.b"), vec!["a.b"]);
        assert_eq!(keys("a.b.c"), vec!["a", "b", "c"]);
        assert_eq!(keys("a.b\\.c"), vec!["a", "b.c"]);
        assert_eq!(keys("a\\\\b"), vec!["ab"]);
        assert_eq!(keys("deep.$key"), vec!["deep", "$key"]);
        for bad in ["a..b", "a.", ".a", "", ".", "a.\\", "\\"] {
            assert!(split_field(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn indexes() {
        assert_eq!(parse_index("0"), Some(0));
        assert_eq!(parse_index("01"), Some(1));
        assert_eq!(parse_index("+1"), Some(1));
        assert_eq!(parse_index("-0"), Some(0));
        assert_eq!(parse_index("-1"), None);
        assert_eq!(parse_index("1a"), None);
        assert_eq!(parse_index(""), None);
        assert_eq!(parse_index("+"), None);
        assert_eq!(parse_index("99999999999999999999999999"), None);
    }

    #[test]
    fn lookups() {
        let d = json!({"a": {"b": [10, {"c": 1}]}, "s": 5, "x.y": 2});
        let p = |f: &str| parse_field(f).unwrap();
        assert_eq!(p("a.b.0").lookup(&d), Lookup::Found(&json!(10)));
        assert_eq!(p("a.b.1.c").lookup(&d), Lookup::Found(&json!(1)));
        assert_eq!(p("a.b.2").lookup(&d), Lookup::BadPath);
        assert_eq!(p("a.b.c").lookup(&d), Lookup::BadPath);
        assert_eq!(p("a.z.c").lookup(&d), Lookup::NotFound);
        assert_eq!(p("s.t").lookup(&d), Lookup::BadPath);
        assert_eq!(p("x\\.y").lookup(&d), Lookup::Found(&json!(2)));
        assert_eq!(FieldPath::default().lookup(&d), Lookup::Found(&d));
    }

    #[test]
    fn round_trip() {
        for f in ["a", "a.b", "a\\.b.c", "x\\.y\\.z", "\\$key.$x"] {
            let p = parse_field(f).unwrap();
            assert_eq!(p.to_field_string(), f);
            assert_eq!(parse_field(&p.to_field_string()).unwrap(), p);
        }
    }
}
