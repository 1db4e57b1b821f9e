//! A stored document as the rest of settee sees it: its sequence and its revision tree, read
//! through revision-tree operations (winner, leaves, path to a leaf). The on-disk record and
//! the tree's node indexes stay inside the store; a [`Leaf`] is a handle to pass back to
//! [`Database`](super::Database) to read or render that revision.

use super::codec::DocRecord;
use super::rev::Rev;
use super::rev_tree::Node;

/// One document as read from the store (a snapshot: later writes do not change it).
#[derive(Clone, Debug)]
pub struct Doc {
    pub(super) rec: DocRecord,
}

/// A leaf revision of a [`Doc`]. Only meaningful with the document it came from.
#[derive(Clone, Copy, Debug)]
pub struct Leaf<'d> {
    pub(super) idx: usize,
    node: &'d Node,
}

impl Doc {
    pub(super) fn new(rec: DocRecord) -> Doc {
        Doc { rec }
    }

    /// The document's latest update sequence.
    pub fn seq(&self) -> u64 {
        self.rec.seq
    }

    /// Whether the winning revision is a deletion: the document reads as deleted.
    pub fn is_deleted(&self) -> bool {
        self.rec.tree.is_deleted()
    }

    /// Whether some revision was written here by an interactive edit, rather than only
    /// arriving by replication ("received only" when a share stops with purge).
    pub fn edited_locally(&self) -> bool {
        self.rec.edited
    }

    /// The winning leaf (CouchDB's: live before deleted, then deeper, then greater rev id).
    pub fn winner(&self) -> Option<Leaf<'_>> {
        self.rec.tree.winner().map(|i| self.leaf_at(i))
    }

    /// Every leaf, the winner first, then the others in CouchDB's order.
    pub fn leaves(&self) -> Vec<Leaf<'_>> {
        self.rec
            .tree
            .leaves()
            .into_iter()
            .map(|i| self.leaf_at(i))
            .collect()
    }

    /// The leaves that are not deletions, in [`Doc::leaves`]' order: more than one is a
    /// conflict.
    pub fn live_leaves(&self) -> Vec<Leaf<'_>> {
        self.leaves().into_iter().filter(|l| !l.deleted()).collect()
    }

    /// Revision ids from `leaf` back to the oldest one kept, newest first (`_revisions`).
    pub fn path(&self, leaf: Leaf<'_>) -> Vec<Rev> {
        self.rec.tree.path(leaf.idx)
    }

    fn leaf_at(&self, idx: usize) -> Leaf<'_> {
        Leaf {
            idx,
            node: self.rec.tree.node(idx),
        }
    }
}

impl<'d> Leaf<'d> {
    pub fn rev(&self) -> &'d Rev {
        &self.node.rev
    }

    /// A tombstone.
    pub fn deleted(&self) -> bool {
        self.node.deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rev_tree::RevTree;

    #[test]
    fn leaves_winner_first_and_paths() {
        let mut tree = RevTree::default();
        let a = tree.add_child(None, Rev::new(1, "a"), false);
        tree.add_child(Some(a), Rev::new(2, "b"), false);
        tree.add_child(Some(a), Rev::new(2, "c"), true);
        let doc = Doc::new(DocRecord::new(7, tree));
        assert_eq!(doc.seq(), 7);
        assert!(!doc.is_deleted());
        let w = doc.winner().unwrap();
        assert_eq!(w.rev().to_string(), "2-b");
        let all: Vec<String> = doc.leaves().iter().map(|l| l.rev().to_string()).collect();
        assert_eq!(all, ["2-b", "2-c"]);
        assert_eq!(doc.live_leaves().len(), 1);
        assert_eq!(doc.path(w), [Rev::new(2, "b"), Rev::new(1, "a")]);
    }
}
