//! Documents that stop matching (`"unmatched": "keep" | "delete" | "purge"`): what a job does
//! on the target when a document's winning source revision no longer passes the filter (or
//! the `fields` rules), or is a plain tombstone, which no content selector lets through.
//! Pure: the job reads both sides' leaves and performs the [`Action`]s this module returns.
//!
//! Safety: a job only ever deletes or purges target leaves that came from its source, decided
//! from the revisions themselves ([`super::project::from_source`]): the leaf is a revision the
//! source has, or a mapped (projected) revision of one. In a many-to-one setup another
//! source's document with the same id stays, and is reported as kept.

use md5::{Digest, Md5};
use serde_json::{json, Value};

use super::project::from_source;
use crate::ids::hex;

/// The `unmatched` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Unmatched {
    /// CouchDB's behaviour: the target keeps its copy.
    #[default]
    Keep,
    /// The target's copy is deleted (a tombstone that replicates onwards).
    Delete,
    /// The target's copy is purged (needs admin credentials on the target).
    Purge,
}

impl Unmatched {
    pub fn parse(v: &Value) -> Result<Unmatched, String> {
        match v.as_str() {
            Some("keep") => Ok(Unmatched::Keep),
            Some("delete") => Ok(Unmatched::Delete),
            Some("purge") => Ok(Unmatched::Purge),
            _ => Err(format!(
                "`unmatched` must be \"keep\", \"delete\" or \"purge\", not {v}"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Unmatched::Keep => "keep",
            Unmatched::Delete => "delete",
            Unmatched::Purge => "purge",
        }
    }
}

/// One leaf revision of a document, with the revision ids of its path (leaf first).
#[derive(Clone, Debug, PartialEq)]
pub struct Leaf {
    pub rev: String,
    pub deleted: bool,
    pub path: Vec<String>,
    /// The revision as it was read (attachments as stubs), for comparing content.
    pub doc: Value,
}

impl Leaf {
    /// From a document as `open_revs` returns it with `revs=true`.
    pub fn from_doc(d: &Value) -> Option<Leaf> {
        let rev = d.get("_rev")?.as_str()?.to_owned();
        let deleted = d.get("_deleted") == Some(&Value::Bool(true));
        let path = match d.get("_revisions") {
            Some(r) => {
                let start = r.get("start")?.as_u64()?;
                r.get("ids")?
                    .as_array()?
                    .iter()
                    .enumerate()
                    .map(|(i, h)| Some(format!("{}-{}", start.checked_sub(i as u64)?, h.as_str()?)))
                    .collect::<Option<Vec<_>>>()?
            }
            None => vec![rev.clone()],
        };
        Some(Leaf {
            rev,
            deleted,
            path,
            doc: d.clone(),
        })
    }
}

/// A change whose winning revision does not match: the source's side of the decision.
#[derive(Clone, Debug)]
pub struct Gone {
    pub id: String,
    /// The winning source revision is a tombstone with no fields of its own.
    pub plain_tombstone: bool,
}

/// What to do on the target for one document.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Write this tombstone (`new_edits:false`), a child of a leaf the target holds.
    Write(Value),
    /// Copy this source revision (a plain tombstone) as it is.
    Send { id: String, rev: String },
    /// Purge these target leaves.
    Purge { id: String, revs: Vec<String> },
    /// The target holds a live leaf this source never wrote: it stays.
    Kept { id: String },
}

/// The tombstone written as a child of `leaf`: its id depends only on the leaf, so a retry
/// after a crash writes the same revision (a no-op).
pub fn tombstone_child(id: &str, leaf: &str) -> Option<Value> {
    let (pos, h) = leaf.split_once('-')?;
    let pos: u64 = pos.parse().ok()?;
    let mut m = Md5::new();
    m.update(b"settee-unmatched-1\0");
    m.update(leaf.as_bytes());
    let child = hex(&m.finalize());
    Some(json!({
        "_id": id,
        "_rev": format!("{}-{child}", pos + 1),
        "_deleted": true,
        "_revisions": {"start": pos + 1, "ids": [child, h]},
    }))
}

/// Decides what happens on the target to a document that stopped matching. `projected`:
/// the job writes mapped revisions (`fields`), so the source's own tombstone would not
/// continue the target's branch and a tombstone child is written instead.
pub fn decide(
    mode: Unmatched,
    projected: bool,
    gone: &Gone,
    source: &[Leaf],
    target: &[Leaf],
) -> Vec<Action> {
    let mut out = Vec::new();
    if mode == Unmatched::Keep || target.is_empty() {
        return out;
    }
    let source_revs: Vec<String> = source.iter().flat_map(|l| l.path.iter().cloned()).collect();
    let (ours, foreign): (Vec<&Leaf>, Vec<&Leaf>) = target
        .iter()
        .partition(|l| from_source(&l.rev, &source_revs));
    if foreign.iter().any(|l| !l.deleted) {
        out.push(Action::Kept {
            id: gone.id.clone(),
        });
    }
    match mode {
        Unmatched::Keep => {}
        Unmatched::Purge => {
            if !ours.is_empty() {
                out.push(Action::Purge {
                    id: gone.id.clone(),
                    revs: ours.iter().map(|l| l.rev.clone()).collect(),
                });
            }
        }
        Unmatched::Delete => {
            let mut live: Vec<&Leaf> = ours.into_iter().filter(|l| !l.deleted).collect();
            if gone.plain_tombstone && !projected {
                // The source's own tombstones, where they continue a branch the target holds:
                // the trees stay identical and nothing of the document's content crosses.
                for t in source.iter().filter(|l| l.deleted) {
                    let before = live.len();
                    live.retain(|l| !t.path.contains(&l.rev));
                    if live.len() < before {
                        out.push(Action::Send {
                            id: gone.id.clone(),
                            rev: t.rev.clone(),
                        });
                    }
                }
            }
            out.extend(
                live.into_iter()
                    .filter_map(|l| tombstone_child(&gone.id, &l.rev))
                    .map(Action::Write),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicator::project::Fields;

    fn leaf(path: &[&str], deleted: bool) -> Leaf {
        Leaf {
            rev: path[0].to_string(),
            deleted,
            path: path.iter().map(|s| s.to_string()).collect(),
            doc: Value::Null,
        }
    }

    fn gone(plain: bool) -> Gone {
        Gone {
            id: "d".into(),
            plain_tombstone: plain,
        }
    }

    #[test]
    fn keep_never_acts_and_nothing_held_means_nothing_to_do() {
        let s = [leaf(&["2-b", "1-a"], false)];
        let t = [leaf(&["1-a"], false)];
        assert!(decide(Unmatched::Keep, false, &gone(false), &s, &t).is_empty());
        assert!(decide(Unmatched::Delete, false, &gone(false), &s, &[]).is_empty());
        assert!(decide(Unmatched::Purge, false, &gone(false), &s, &[]).is_empty());
    }

    #[test]
    fn a_live_document_that_stopped_matching_gets_a_tombstone_child() {
        let s = [leaf(&["3-c", "2-b", "1-a"], false)];
        let t = [leaf(&["2-b", "1-a"], false)];
        let a = decide(Unmatched::Delete, false, &gone(false), &s, &t);
        let [Action::Write(doc)] = a.as_slice() else {
            panic!("{a:?}")
        };
        assert_eq!(doc["_deleted"], true);
        assert!(doc["_rev"].as_str().unwrap().starts_with("3-"));
        assert_eq!(doc["_revisions"]["ids"][1], "b");
        assert_eq!(
            decide(Unmatched::Delete, false, &gone(false), &s, &t),
            a,
            "the same decision twice writes the same revision"
        );
        // Already deleted there: nothing more.
        let t = [leaf(&["3-x", "2-b", "1-a"], true)];
        assert!(decide(Unmatched::Delete, false, &gone(false), &s, &t).is_empty());
    }

    #[test]
    fn a_plain_tombstone_crosses_as_itself() {
        let s = [leaf(&["3-del", "2-b", "1-a"], true)];
        let t = [leaf(&["2-b", "1-a"], false)];
        assert_eq!(
            decide(Unmatched::Delete, false, &gone(true), &s, &t),
            vec![Action::Send {
                id: "d".into(),
                rev: "3-del".into()
            }]
        );
        // Projected: the target's branch is mapped, so a tombstone child instead.
        let fields = Fields::parse(&json!(["x"])).unwrap();
        let t = [Leaf {
            rev: fields.map_rev("2-b").unwrap(),
            deleted: false,
            path: vec![],
            doc: Value::Null,
        }];
        let a = decide(Unmatched::Delete, true, &gone(true), &s, &t);
        assert!(matches!(a.as_slice(), [Action::Write(_)]), "{a:?}");
    }

    #[test]
    fn another_sources_document_is_never_touched() {
        let s = [leaf(&["2-b", "1-a"], false)];
        let t = [leaf(&["1-other"], false)];
        for mode in [Unmatched::Delete, Unmatched::Purge] {
            assert_eq!(
                decide(mode, false, &gone(false), &s, &t),
                vec![Action::Kept { id: "d".into() }]
            );
        }
        // Both: ours goes, theirs stays and is reported.
        let t = [leaf(&["1-other"], false), leaf(&["1-a"], false)];
        let a = decide(Unmatched::Purge, false, &gone(false), &s, &t);
        assert_eq!(
            a,
            vec![
                Action::Kept { id: "d".into() },
                Action::Purge {
                    id: "d".into(),
                    revs: vec!["1-a".into()]
                }
            ]
        );
    }

    #[test]
    fn leaves_read_from_open_revs_documents() {
        let l = Leaf::from_doc(
            &json!({"_id": "d", "_rev": "3-c", "_deleted": true, "_revisions": {"start": 3, "ids": ["c", "b", "a"]}}),
        )
        .unwrap();
        assert_eq!(
            (l.rev.as_str(), l.deleted, l.path.clone()),
            ("3-c", true, leaf(&["3-c", "2-b", "1-a"], true).path)
        );
        assert!(Leaf::from_doc(&json!({"_id": "d"})).is_none());
    }
}
