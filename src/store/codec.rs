//! On-disk encodings: the key layout of a database's sled tree and the binary form of a
//! document record. ARCHITECTURE.md repeats this table; change both together.
//!
//! | key                                   | value                                        |
//! |---------------------------------------|----------------------------------------------|
//! | `d` id                                | [`DocRecord`]: seq, revision tree, leaf bodies |
//! | `s` seq (u64 BE)                      | a [`Run`]: up to [`RUN_MAX`] (seq, id) of one batch, keyed by the first seq; format 2 wrote one doc id per entry (still read) |
//! | `b` len(id) (u32 BE) id rev           | format 1 only: a leaf's body (migrated away) |
//! | `a` digest                            | attachment bytes, shared by every revision   |
//! | `l` id                                | `_local` document JSON                       |
//! | `m` name                              | database metadata (counters, limits, security)|
//! | `p` purge_seq (u64 BE)                | purge info JSON `{"id","revs"}`              |
//! | `e` id                                | format 1 only: edited here (migrated away)   |

use super::error::{Result, StoreError};
use super::rev::Rev;
use super::rev_tree::{Node, RevTree};

pub const DOC: u8 = b'd';
pub const SEQ: u8 = b's';
pub const BODY: u8 = b'b';
pub const ATT: u8 = b'a';
pub const LOCAL: u8 = b'l';
pub const META: u8 = b'm';
pub const PURGE: u8 = b'p';
pub const EDITED: u8 = b'e';

pub fn edited_key(id: &str) -> Vec<u8> {
    prefixed(EDITED, id.as_bytes())
}

pub fn doc_key(id: &str) -> Vec<u8> {
    prefixed(DOC, id.as_bytes())
}

pub fn seq_key(seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = SEQ;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Most changes one by-sequence entry holds.
pub const RUN_MAX: usize = 64;

/// First byte of a run value. No UTF-8 text starts with it, so a value without it is a
/// format-2 entry: the id of the one change at the key's sequence.
const RUN_MARK: u8 = 0xff;

/// The changes of one by-sequence entry, in sequence order: a document's latest sequence
/// only (an update takes its old one out of the run that held it). Keyed by a sequence at or
/// below every sequence it holds, and runs never overlap: the run that may hold `seq` is the
/// entry with the greatest key at or below `seq`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    pub items: Vec<(u64, String)>,
}

impl Run {
    /// `RUN_MARK`, then per change: seq (u64 LE), id length (u32 LE), id.
    pub fn encode(&self) -> Vec<u8> {
        let len: usize = self.items.iter().map(|(_, id)| 12 + id.len()).sum();
        let mut out = Vec::with_capacity(1 + len);
        out.push(RUN_MARK);
        for (seq, id) in &self.items {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&(id.len() as u32).to_le_bytes());
            out.extend_from_slice(id.as_bytes());
        }
        out
    }

    /// Decodes the entry stored under sequence key `key_seq`.
    pub fn decode(key_seq: u64, v: &[u8]) -> Result<Run> {
        let Some((&RUN_MARK, rest)) = v.split_first() else {
            let id = std::str::from_utf8(v)
                .map_err(|_| StoreError::Corrupt(format!("by-sequence entry {key_seq}")))?;
            return Ok(Run {
                items: vec![(key_seq, id.to_owned())],
            });
        };
        let mut r = Reader { bytes: rest, at: 0 };
        let mut items = Vec::new();
        let bad = |_| StoreError::Corrupt(format!("by-sequence entry {key_seq}"));
        while r.at < rest.len() {
            let seq = r.u64().map_err(bad)?;
            let len = r.u32().map_err(bad)? as usize;
            let id = r.take(len).map_err(bad)?;
            let id = std::str::from_utf8(id).map_err(|_| bad(corrupt()))?;
            items.push((seq, id.to_owned()));
        }
        Ok(Run { items })
    }
}

pub fn purge_key(seq: u64) -> [u8; 9] {
    let mut k = seq_key(seq);
    k[0] = PURGE;
    k
}

pub fn key_seq(key: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = key
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt("sequence key".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Prefix of every body key of one document.
pub fn body_prefix(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + id.len());
    k.push(BODY);
    k.extend_from_slice(&(id.len() as u32).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

pub fn body_key(id: &str, rev: &Rev) -> Vec<u8> {
    let mut k = body_prefix(id);
    k.extend_from_slice(rev.to_string().as_bytes());
    k
}

pub fn att_key(digest: &str) -> Vec<u8> {
    prefixed(ATT, digest.as_bytes())
}

pub fn local_key(id: &str) -> Vec<u8> {
    prefixed(LOCAL, id.as_bytes())
}

pub fn meta_key(name: &str) -> Vec<u8> {
    prefixed(META, name.as_bytes())
}

fn prefixed(tag: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(tag);
    k.extend_from_slice(rest);
    k
}

/// Everything the store keeps per document, in one value: sequence, revision tree, whether it
/// was ever edited here, and the JSON body of every leaf revision. One value per document
/// means a write is two sled inserts (this and its by-seq entry) and a read that needs a body
/// costs no second lookup and always sees the body of the tree it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocRecord {
    /// The document's latest update sequence (its single entry in the by-sequence index).
    pub seq: u64,
    pub tree: RevTree,
    /// Some revision was written here by an interactive edit, rather than only arriving by
    /// replication: what "received only" means when a share is stopped with purge.
    pub edited: bool,
    /// The stored body of each leaf revision (invariant: exactly the leaves have one).
    bodies: Vec<(Rev, sled::IVec)>,
}

const NO_PARENT: u32 = u32::MAX;

impl DocRecord {
    pub fn new(seq: u64, tree: RevTree) -> DocRecord {
        DocRecord {
            seq,
            tree,
            edited: false,
            bodies: Vec::new(),
        }
    }

    /// The stored JSON body of a leaf revision.
    pub fn body(&self, rev: &Rev) -> Option<&sled::IVec> {
        self.bodies.iter().find(|(r, _)| r == rev).map(|(_, b)| b)
    }

    pub fn set_body(&mut self, rev: Rev, body: sled::IVec) {
        self.remove_body(&rev);
        self.bodies.push((rev, body));
    }

    pub fn remove_body(&mut self, rev: &Rev) -> Option<sled::IVec> {
        let i = self.bodies.iter().position(|(r, _)| r == rev)?;
        Some(self.bodies.swap_remove(i).1)
    }

    pub fn bodies(&self) -> impl Iterator<Item = &sled::IVec> {
        self.bodies.iter().map(|(_, b)| b)
    }

    /// Layout: seq u64, node count u32, then per node: pos u64, flags u8 (bit 0 = deleted),
    /// parent u32 (MAX = root), hash length u16, hash bytes; then record flags u8 (bit 0 =
    /// edited here), body count u32, and per body: node index u32, length u32, JSON bytes.
    /// All little-endian. Format 1 (before bodies moved in) ended after the nodes.
    pub fn encode(&self) -> Vec<u8> {
        let nodes = self.tree.nodes();
        let body_bytes: usize = self.bodies.iter().map(|(_, b)| 8 + b.len()).sum();
        let mut out = Vec::with_capacity(17 + nodes.len() * 48 + body_bytes);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&(nodes.len() as u32).to_le_bytes());
        for n in nodes {
            out.extend_from_slice(&n.rev.pos.to_le_bytes());
            out.push(n.deleted as u8);
            let parent = n.parent.map_or(NO_PARENT, |p| p as u32);
            out.extend_from_slice(&parent.to_le_bytes());
            out.extend_from_slice(&(n.rev.hash.len() as u16).to_le_bytes());
            out.extend_from_slice(n.rev.hash.as_bytes());
        }
        out.push(self.edited as u8);
        let bodies: Vec<(u32, &sled::IVec)> = self
            .bodies
            .iter()
            .filter_map(|(r, b)| self.tree.find(r).map(|i| (i as u32, b)))
            .collect();
        out.extend_from_slice(&(bodies.len() as u32).to_le_bytes());
        for (i, b) in bodies {
            out.extend_from_slice(&i.to_le_bytes());
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    /// Decodes a record; bodies are slices of `bytes`, not copies.
    pub fn decode(bytes: &sled::IVec) -> Result<DocRecord> {
        let mut r = Reader {
            bytes: &bytes[..],
            at: 0,
        };
        let mut rec = DocRecord::decode_head(&mut r)?;
        rec.edited = r.take(1)?[0] & 1 == 1;
        let count = r.u32()? as usize;
        for _ in 0..count {
            let node = r.u32()? as usize;
            let len = r.u32()? as usize;
            let at = r.at;
            r.take(len)?;
            if node >= rec.tree.nodes().len() {
                return Err(corrupt());
            }
            let rev = rec.tree.node(node).rev.clone();
            rec.bodies.push((rev, bytes.subslice(at, len)));
        }
        if r.at != bytes.len() {
            return Err(corrupt());
        }
        Ok(rec)
    }

    /// Decodes a format-1 record (sequence and tree only; bodies and the edited mark lived
    /// under their own keys), for the one-time migration.
    pub fn decode_v1(bytes: &[u8]) -> Result<DocRecord> {
        let mut r = Reader { bytes, at: 0 };
        let rec = DocRecord::decode_head(&mut r)?;
        if r.at != bytes.len() {
            return Err(corrupt());
        }
        Ok(rec)
    }

    fn decode_head(r: &mut Reader<'_>) -> Result<DocRecord> {
        let seq = r.u64()?;
        let count = r.u32()? as usize;
        let mut nodes = Vec::with_capacity(count.min(4096));
        for _ in 0..count {
            let pos = r.u64()?;
            let deleted = r.take(1)?[0] & 1 == 1;
            let parent = match r.u32()? {
                NO_PARENT => None,
                p => Some(p as usize),
            };
            let len = u16::from_le_bytes(r.take(2)?.try_into().map_err(|_| corrupt())?) as usize;
            let hash = std::str::from_utf8(r.take(len)?)
                .map_err(|_| corrupt())?
                .to_owned();
            nodes.push(Node {
                rev: Rev::new(pos, hash),
                parent,
                deleted,
            });
        }
        let tree = RevTree::from_nodes(nodes).ok_or_else(corrupt)?;
        Ok(DocRecord::new(seq, tree))
    }
}

fn corrupt() -> StoreError {
    StoreError::Corrupt("document record".into())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or_else(corrupt)?;
        let s = self.bytes.get(self.at..end).ok_or_else(corrupt)?;
        self.at = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| corrupt())?,
        ))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| corrupt())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip_and_read_format_2_entries() {
        let run = Run {
            items: vec![
                (7, "a".into()),
                (9, "\u{e9}t\u{e9}".into()),
                (10, String::new()),
            ],
        };
        assert_eq!(Run::decode(7, &run.encode()).unwrap(), run);
        assert_eq!(
            Run::decode(5, b"doc-5").unwrap().items,
            vec![(5, "doc-5".to_owned())]
        );
        let bytes = run.encode();
        for cut in 1..bytes.len() {
            let r = Run::decode(7, &bytes[..cut]);
            assert!(r.is_err() || r.unwrap().items.len() < 3, "cut at {cut}");
        }
        assert!(Run::decode(1, &[0xff, 1, 2]).is_err());
    }

    #[test]
    fn record_round_trips() {
        let mut tree = RevTree::default();
        tree.merge_path(&[Rev::new(2, "bb"), Rev::new(1, "aa")], false);
        tree.merge_path(&[Rev::new(2, "cc"), Rev::new(1, "aa")], true);
        let mut rec = DocRecord::new(42, tree);
        rec.edited = true;
        rec.set_body(Rev::new(2, "bb"), sled::IVec::from(&br#"{"a":1}"#[..]));
        rec.set_body(Rev::new(2, "cc"), sled::IVec::from(&b"{}"[..]));
        let back = DocRecord::decode(&rec.encode().into()).unwrap();
        assert_eq!(back.seq, 42);
        assert_eq!(back.tree, rec.tree);
        assert!(back.edited);
        assert_eq!(&back.body(&Rev::new(2, "bb")).unwrap()[..], br#"{"a":1}"#);
        assert_eq!(&back.body(&Rev::new(2, "cc")).unwrap()[..], b"{}");
        assert!(back.body(&Rev::new(1, "aa")).is_none());
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let mut tree = RevTree::default();
        tree.merge_path(&[Rev::new(1, "aa")], false);
        let mut rec = DocRecord::new(1, tree);
        rec.set_body(Rev::new(1, "aa"), sled::IVec::from(&b"{\"x\":true}"[..]));
        let bytes = rec.encode();
        for cut in 0..bytes.len() {
            assert!(DocRecord::decode(&bytes[..cut].into()).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(DocRecord::decode(&longer.into()).is_err());
    }

    #[test]
    fn seq_keys_sort_numerically() {
        assert!(seq_key(255) < seq_key(256));
        assert_eq!(key_seq(&seq_key(1234)).unwrap(), 1234);
    }
}
