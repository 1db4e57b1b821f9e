//! The JSON the matcher reads: `serde_json::Value`, or a [`Doc`] borrowed from stored bytes.
//!
//! A filtered `_changes` feed tests every stored revision it passes. Decoding each one into a
//! `Value` (an ordered hash map per object, an owned `String` per member name and string) was
//! most of a filtered scan's cost; a [`Doc`] borrows its strings from the body when they hold
//! no escapes and keeps an object's members in a plain vector, which is all the matcher needs
//! (it looks members up by name and walks them in stored order).
//!
//! Invariant: for any JSON text, a [`Doc`] decoded from it and the `Value` decoded from it
//! give the same [`View`]s all the way down (a repeated member name keeps its first place and
//! its last value, as in a map), so every selector answers the same on both.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// One level of a JSON value, as the matcher and the collation read it.
pub enum View<'a, J: Json> {
    Null,
    Bool(bool),
    Num(&'a Number),
    Str(&'a str),
    Arr(&'a [J]),
    Obj(&'a J::Obj),
}

/// A JSON value the matcher can read.
pub trait Json: Sized {
    /// An object's members.
    type Obj: Object<Self> + ?Sized;
    fn view(&self) -> View<'_, Self>;
}

/// An object's members, in stored order.
pub trait Object<J> {
    fn get(&self, key: &str) -> Option<&J>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn members<'s>(&'s self) -> impl Iterator<Item = (&'s str, &'s J)>
    where
        J: 's;
}

impl Json for Value {
    type Obj = Map<String, Value>;

    #[inline]
    fn view(&self) -> View<'_, Value> {
        match self {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::Number(n) => View::Num(n),
            Value::String(s) => View::Str(s),
            Value::Array(a) => View::Arr(a),
            Value::Object(m) => View::Obj(m),
        }
    }
}

impl Object<Value> for Map<String, Value> {
    #[inline]
    fn get(&self, key: &str) -> Option<&Value> {
        Map::get(self, key)
    }
    #[inline]
    fn len(&self) -> usize {
        Map::len(self)
    }
    fn members<'s>(&'s self) -> impl Iterator<Item = (&'s str, &'s Value)>
    where
        Value: 's,
    {
        self.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// A JSON value borrowing its strings from the text it was decoded from.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc<'a> {
    Null,
    Bool(bool),
    Num(Number),
    Str(Cow<'a, str>),
    Arr(Vec<Doc<'a>>),
    Obj(Vec<(Cow<'a, str>, Doc<'a>)>),
}

impl<'a> Json for Doc<'a> {
    type Obj = [(Cow<'a, str>, Doc<'a>)];

    #[inline]
    fn view(&self) -> View<'_, Doc<'a>> {
        match self {
            Doc::Null => View::Null,
            Doc::Bool(b) => View::Bool(*b),
            Doc::Num(n) => View::Num(n),
            Doc::Str(s) => View::Str(s),
            Doc::Arr(a) => View::Arr(a),
            Doc::Obj(m) => View::Obj(m.as_slice()),
        }
    }
}

impl<'a> Object<Doc<'a>> for [(Cow<'a, str>, Doc<'a>)] {
    #[inline]
    fn get(&self, key: &str) -> Option<&Doc<'a>> {
        // Last one wins, as when a map is built from the members.
        self.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    #[inline]
    fn len(&self) -> usize {
        <[_]>::len(self)
    }
    fn members<'s>(&'s self) -> impl Iterator<Item = (&'s str, &'s Doc<'a>)>
    where
        Doc<'a>: 's,
    {
        self.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl<'a> Doc<'a> {
    /// Decodes a JSON object, keeping only the members named in `only` (all when `None`):
    /// the others are skipped without being built. `None` if `text` is not a JSON object.
    pub fn object(text: &'a [u8], only: Option<&[String]>) -> Option<Doc<'a>> {
        let mut de = serde_json::Deserializer::from_slice(text);
        let doc = de.deserialize_map(ObjectVisitor(only)).ok()?;
        de.end().ok()?;
        Some(doc)
    }

    /// Adds a member (the caller makes sure it is not there yet); no-op on a non-object.
    pub fn push(&mut self, key: &'a str, value: Doc<'a>) {
        if let Doc::Obj(m) = self {
            m.push((Cow::Borrowed(key), value));
        }
    }
}

impl<'de> serde::Deserialize<'de> for Doc<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Doc<'de>, E> {
        Ok(Doc::Bool(b))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Doc<'de>, E> {
        Ok(Doc::Num(n.into()))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Doc<'de>, E> {
        Ok(Doc::Num(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Doc<'de>, E> {
        // JSON text has no NaN or infinity; `Value` turns them into null the same way.
        Ok(Number::from_f64(n).map_or(Doc::Null, Doc::Num))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Doc<'de>, E> {
        Ok(Doc::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Doc<'de>, E> {
        Ok(Doc::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Doc<'de>, E> {
        Ok(Doc::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc<'de>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(x) = seq.next_element()? {
            out.push(x);
        }
        Ok(Doc::Arr(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Doc<'de>, A::Error> {
        ObjectVisitor(None).visit_map(map)
    }
}

/// A member name, borrowed when it holds no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Objects up to this many members are checked for repeated names by a linear search.
const LINEAR_MEMBERS: usize = 16;

/// An object, keeping only the named members when given names.
struct ObjectVisitor<'f>(Option<&'f [String]>);

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Doc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        let mut out: Vec<(Cow<'de, str>, Doc<'de>)> = Vec::new();
        // Positions by name, built once an object is too big to search linearly.
        let mut index: Option<HashMap<Cow<'de, str>, usize>> = None;
        while let Some(Key(k)) = map.next_key()? {
            if self.0.is_some_and(|only| !only.iter().any(|f| *f == *k)) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let v = map.next_value_seed(DocSeed)?;
            // A repeated name replaces the earlier value in place, as in a map.
            let seen = match &index {
                Some(ix) => ix.get(&k).copied(),
                None => out.iter().position(|(x, _)| *x == k),
            };
            match seen {
                Some(i) => out[i].1 = v,
                None => {
                    if let Some(ix) = &mut index {
                        ix.insert(k.clone(), out.len());
                    }
                    out.push((k, v));
                    if index.is_none() && out.len() > LINEAR_MEMBERS {
                        index = Some(
                            out.iter()
                                .enumerate()
                                .map(|(i, (k, _))| (k.clone(), i))
                                .collect(),
                        );
                    }
                }
            }
        }
        Ok(Doc::Obj(out))
    }
}

struct DocSeed;

impl<'de> DeserializeSeed<'de> for DocSeed {
    type Value = Doc<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Doc<'de>, D::Error> {
        d.deserialize_any(DocVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The same value seen through `Value` and through `Doc`, all the way down.
    pub(crate) fn same<A: Json, B: Json>(a: &A, b: &B) -> bool {
        match (a.view(), b.view()) {
            (View::Null, View::Null) => true,
            (View::Bool(x), View::Bool(y)) => x == y,
            (View::Num(x), View::Num(y)) => x == y,
            (View::Str(x), View::Str(y)) => x == y,
            (View::Arr(x), View::Arr(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
            }
            (View::Obj(x), View::Obj(y)) => {
                x.len() == y.len()
                    && x.members()
                        .zip(y.members())
                        .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
            }
            _ => false,
        }
    }

    #[test]
    fn decodes_like_value() {
        let v = json!({"a": [1, -2, 3.5, 1e300, null, true, false], "b\"": "x\u{e9}\n", "c": {"d": {}},
                       "e": [], "big": 18446744073709551615u64, "neg": -9223372036854775808i64});
        let text = serde_json::to_vec(&v).unwrap();
        let d = Doc::object(&text, None).unwrap();
        assert!(same(&v, &d));
        // Escaped strings are owned, plain ones borrowed.
        let Doc::Obj(m) = &d else { panic!() };
        assert!(matches!(m[1].0, Cow::Owned(_)));
        assert!(matches!(m[0].0, Cow::Borrowed(_)));
    }

    #[test]
    fn keeps_only_named_members() {
        let text = br#"{"a": 1, "pad": "xxxx", "b": {"c": [2]}, "z": null}"#;
        let d = Doc::object(text, Some(&["b".into(), "z".into(), "q".into()])).unwrap();
        assert!(same(&json!({"b": {"c": [2]}, "z": null}), &d));
        assert_eq!(Doc::object(b"[1]", None), None);
        assert_eq!(Doc::object(b"{\"a\":1} x", None), None);
    }

    #[test]
    fn repeated_names_as_in_a_map() {
        let text = br#"{"a": 1, "b": 2, "a": 3}"#;
        let v: Value = serde_json::from_slice(text).unwrap();
        assert!(same(&v, &Doc::object(text, None).unwrap()));
        // Past the linear search too.
        let mut big: String = (0..40).map(|i| format!("\"k{i}\": {i},")).collect();
        big.push_str(r#""k3": "again", "k39": null, "z": 1"#);
        let text = format!("{{{big}}}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(same(&v, &Doc::object(text.as_bytes(), None).unwrap()));
    }
}
