//! Revision ids: `N-hash`, where N is the depth in the revision tree.

use std::fmt;

use md5::{Digest, Md5};
use serde_json::Value;

use super::error::DocError;

/// A parsed revision id. Ordering is CouchDB's tie-break for winners: depth first, then the hash
/// compared as a string (bytewise), which equals CouchDB's order for 32-hex revs.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rev {
    pub pos: u64,
    pub hash: String,
}

impl Rev {
    pub fn new(pos: u64, hash: impl Into<String>) -> Rev {
        Rev {
            pos,
            hash: hash.into(),
        }
    }

    /// Parses `N-hash`; N must be a positive integer. The hash may be empty (`1-`), as
    /// CouchDB's `parse_rev` allows and PouchDB's suite writes with `new_edits=false`.
    pub fn parse(s: &str) -> Result<Rev, DocError> {
        let bad = || DocError::BadRequest(format!("Invalid rev format: {s:?}"));
        let (n, hash) = s.split_once('-').ok_or_else(bad)?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let pos: u64 = n.parse().map_err(|_| bad())?;
        if pos == 0 {
            return Err(bad());
        }
        Ok(Rev::new(pos, hash))
    }

    /// The id of the edit that writes `body` (with `deleted`) on top of `parent`. Deterministic:
    /// the same edit made twice from the same parent gets the same id.
    pub fn for_edit(parent: Option<&Rev>, deleted: bool, body: &Value) -> Rev {
        let mut h = Md5::new();
        h.update([deleted as u8]);
        if let Some(p) = parent {
            h.update(p.to_string().as_bytes());
        }
        h.update([0u8]);
        let mut canon = Vec::with_capacity(256);
        write_canonical(body, &mut canon);
        h.update(&canon);
        let digest = h.finalize();
        Rev::new(parent.map_or(1, |p| p.pos + 1), crate::ids::hex(&digest))
    }
}

impl fmt::Display for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.pos, self.hash)
    }
}

impl fmt::Debug for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// JSON with object keys sorted (recursively), so that key order never changes a revision id.
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => write_scalar(other, out),
    }
}

/// Appends compact JSON; writing a string, number or literal into a `Vec` cannot fail.
fn write_scalar(v: &(impl serde::Serialize + ?Sized), out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(Rev::parse("3-abc").unwrap(), Rev::new(3, "abc"));
        // Hash-less, as CouchDB allows.
        assert_eq!(Rev::parse("3-").unwrap(), Rev::new(3, ""));
        for bad in [
            "",
            "3",
            "-abc",
            "0-abc",
            "x-abc",
            "+3-a",
            "18446744073709551616-a",
        ] {
            assert!(Rev::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn edit_ids_are_deterministic_and_key_order_free() {
        let p = Rev::new(1, "aa");
        let a = Rev::for_edit(Some(&p), false, &json!({"x":1,"y":[1,{"b":2,"a":1}]}));
        let b = Rev::for_edit(Some(&p), false, &json!({"y":[1,{"a":1,"b":2}],"x":1}));
        assert_eq!(a, b);
        assert_eq!(a.pos, 2);
        assert_eq!(a.hash.len(), 32);
        assert_ne!(
            a,
            Rev::for_edit(Some(&p), true, &json!({"x":1,"y":[1,{"b":2,"a":1}]}))
        );
        assert_ne!(
            a,
            Rev::for_edit(None, false, &json!({"x":1,"y":[1,{"b":2,"a":1}]}))
        );
    }

    /// Revision ids must not change between versions: two replicas making the same edit must
    /// agree whatever settee each runs.
    #[test]
    fn edit_ids_are_stable_across_versions() {
        let body = json!({"z": "\u{e9}\"q\n", "a": [1, -2.5, 1e300, null, true, {"k": {}}], "m": 18446744073709551615u64});
        let r = Rev::for_edit(Some(&Rev::new(3, "abc")), false, &body);
        assert_eq!(r.to_string(), "4-fcbf34356c71d12758b42757ee3de3db");
    }

    #[test]
    fn order_is_depth_then_hash() {
        assert!(Rev::new(2, "a") > Rev::new(1, "z"));
        assert!(Rev::new(2, "b") > Rev::new(2, "a"));
    }
}
