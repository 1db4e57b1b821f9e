//! The revision tree of one document: every revision ever seen (up to `revs_limit` deep), every
//! branch, tombstones as deleted leaves. Pure data, no I/O, never panics on input.
//!
//! Representation: a flat list of nodes with parent indices. A node without a parent is a root:
//! either the true first revision or the oldest one kept after stemming. Invariants:
//! - revision ids are unique within a tree;
//! - a node's parent has `pos` exactly one less than the node's;
//! - the parent index always points inside the list.

use std::collections::HashMap;

use super::rev::Rev;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub rev: Rev,
    pub parent: Option<usize>,
    pub deleted: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevTree {
    nodes: Vec<Node>,
}

/// What merging a path did to the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// The path's newest revision was already in the tree: nothing changed.
    AlreadyPresent,
    /// New revisions were added.
    Added,
}

impl RevTree {
    /// Builds a tree from raw nodes, checking the invariants (used by the codec).
    pub fn from_nodes(nodes: Vec<Node>) -> Option<RevTree> {
        for n in &nodes {
            if let Some(p) = n.parent {
                let parent = nodes.get(p)?;
                if parent.rev.pos + 1 != n.rev.pos {
                    return None;
                }
            }
        }
        Some(RevTree { nodes })
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn find(&self, rev: &Rev) -> Option<usize> {
        self.nodes.iter().position(|n| &n.rev == rev)
    }

    pub fn contains(&self, rev: &Rev) -> bool {
        self.find(rev).is_some()
    }

    pub fn node(&self, idx: usize) -> &Node {
        &self.nodes[idx]
    }

    fn has_child(&self) -> Vec<bool> {
        let mut has = vec![false; self.nodes.len()];
        for n in &self.nodes {
            if let Some(p) = n.parent {
                has[p] = true;
            }
        }
        has
    }

    /// Indices of the leaves, winner first, then the others in CouchDB's order
    /// (non-deleted before deleted, then deeper first, then greater rev id first).
    pub fn leaves(&self) -> Vec<usize> {
        let has = self.has_child();
        let mut leaves: Vec<usize> = (0..self.nodes.len()).filter(|&i| !has[i]).collect();
        leaves.sort_by(|&a, &b| self.leaf_key(b).cmp(&self.leaf_key(a)));
        leaves
    }

    fn leaf_key(&self, i: usize) -> (bool, &Rev) {
        (!self.nodes[i].deleted, &self.nodes[i].rev)
    }

    pub fn is_leaf(&self, idx: usize) -> bool {
        !self.nodes.iter().any(|n| n.parent == Some(idx))
    }

    /// The winning leaf: a live leaf beats a deleted one, then depth, then rev id.
    pub fn winner(&self) -> Option<usize> {
        self.leaves().first().copied()
    }

    /// The document is deleted when its winner is a tombstone.
    pub fn is_deleted(&self) -> bool {
        self.winner().is_none_or(|w| self.nodes[w].deleted)
    }

    /// Revision ids from `idx` back to its root, newest first (the `_revisions` path).
    pub fn path(&self, idx: usize) -> Vec<Rev> {
        let mut out = Vec::new();
        let mut cur = Some(idx);
        while let Some(i) = cur {
            out.push(self.nodes[i].rev.clone());
            cur = self.nodes[i].parent;
        }
        out
    }

    /// Leaves descending from `idx` (itself if it is a leaf): what `latest=true` resolves to.
    pub fn leaves_under(&self, idx: usize) -> Vec<usize> {
        self.leaves()
            .into_iter()
            .filter(|&leaf| {
                let mut cur = Some(leaf);
                while let Some(i) = cur {
                    if i == idx {
                        return true;
                    }
                    cur = self.nodes[i].parent;
                }
                false
            })
            .collect()
    }

    /// Adds a child to an existing node (an interactive edit) or a new root.
    pub fn add_child(&mut self, parent: Option<usize>, rev: Rev, deleted: bool) -> usize {
        self.nodes.push(Node {
            rev,
            parent,
            deleted,
        });
        self.nodes.len() - 1
    }

    /// Merges a replicated path (newest first, positions descending by one) into the tree.
    /// Only the newest revision carries `deleted`. A path whose newest revision is already here
    /// changes nothing, whatever else it says.
    pub fn merge_path(&mut self, path: &[Rev], leaf_deleted: bool) -> Merge {
        let Some(newest) = path.first() else {
            return Merge::AlreadyPresent;
        };
        if self.contains(newest) {
            return Merge::AlreadyPresent;
        }
        let index: HashMap<&Rev, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (&n.rev, i))
            .collect();
        let existing: Vec<Option<usize>> = path.iter().map(|r| index.get(r).copied()).collect();
        let mut prev: Option<usize> = None;
        for (i, rev) in path.iter().enumerate().rev() {
            match existing[i] {
                Some(idx) => {
                    if self.nodes[idx].parent.is_none() {
                        // A stemmed root learns its ancestry back from the longer path.
                        self.nodes[idx].parent = prev;
                    }
                    prev = Some(idx);
                }
                None => {
                    let deleted = i == 0 && leaf_deleted;
                    prev = Some(self.add_child(prev, rev.clone(), deleted));
                }
            }
        }
        Merge::Added
    }

    /// Keeps only the `limit` newest revisions of every branch (CouchDB's `revs_limit`).
    /// Returns whether anything was removed.
    pub fn stem(&mut self, limit: usize) -> bool {
        let limit = limit.max(1);
        let mut keep = vec![false; self.nodes.len()];
        for leaf in self.leaves() {
            let mut cur = Some(leaf);
            let mut depth = 0;
            while let (Some(i), true) = (cur, depth < limit) {
                keep[i] = true;
                cur = self.nodes[i].parent;
                depth += 1;
            }
        }
        if keep.iter().all(|&k| k) {
            return false;
        }
        self.retain(&keep);
        true
    }

    fn retain(&mut self, keep: &[bool]) {
        let mut new_index = vec![None; self.nodes.len()];
        let mut next = 0;
        for (i, &k) in keep.iter().enumerate() {
            if k {
                new_index[i] = Some(next);
                next += 1;
            }
        }
        let old = std::mem::take(&mut self.nodes);
        self.nodes = old
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep[*i])
            .map(|(_, mut n)| {
                n.parent = n.parent.and_then(|p| new_index[p]);
                n
            })
            .collect();
    }

    /// Purge: removes the given leaves and every ancestor no remaining leaf needs, as if those
    /// revisions had never been written. Revs that are not leaves are ignored. Returns the
    /// revisions actually removed from the leaf set.
    pub fn remove_leaves(&mut self, revs: &[Rev]) -> Vec<Rev> {
        let leaves = self.leaves();
        let purged: Vec<usize> = leaves
            .iter()
            .copied()
            .filter(|&i| revs.contains(&self.nodes[i].rev))
            .collect();
        if purged.is_empty() {
            return Vec::new();
        }
        let mut keep = vec![false; self.nodes.len()];
        for &leaf in leaves.iter().filter(|l| !purged.contains(l)) {
            let mut cur = Some(leaf);
            while let Some(i) = cur {
                keep[i] = true;
                cur = self.nodes[i].parent;
            }
        }
        let removed = purged.iter().map(|&i| self.nodes[i].rev.clone()).collect();
        self.retain(&keep);
        removed
    }

    /// CouchDB's `possible_ancestors` for a set of missing revisions: every leaf whose depth is
    /// below the deepest missing one.
    pub fn possible_ancestors(&self, missing: &[Rev]) -> Vec<Rev> {
        let Some(max) = missing.iter().map(|r| r.pos).max() else {
            return Vec::new();
        };
        let mut out: Vec<Rev> = self
            .leaves()
            .into_iter()
            .map(|i| self.nodes[i].rev.clone())
            .filter(|r| r.pos < max)
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Rev {
        Rev::parse(s).unwrap()
    }
    fn path(revs: &[&str]) -> Vec<Rev> {
        revs.iter().map(|s| r(s)).collect()
    }
    fn leaf_revs(t: &RevTree) -> Vec<String> {
        t.leaves()
            .into_iter()
            .map(|i| t.node(i).rev.to_string())
            .collect()
    }

    #[test]
    fn winner_prefers_live_then_depth_then_id() {
        let mut t = RevTree::default();
        t.merge_path(&path(&["2-b", "1-a"]), false);
        t.merge_path(&path(&["2-c", "1-a"]), false);
        assert_eq!(leaf_revs(&t), ["2-c", "2-b"]);
        t.merge_path(&path(&["3-d", "2-c", "1-a"]), true);
        // The deeper branch is deleted: the live 2-b wins.
        assert_eq!(leaf_revs(&t), ["2-b", "3-d"]);
        assert!(!t.is_deleted());
        t.merge_path(&path(&["3-e", "2-b", "1-a"]), true);
        assert!(t.is_deleted());
        assert_eq!(leaf_revs(&t), ["3-e", "3-d"]);
    }

    #[test]
    fn merging_a_present_revision_is_a_no_op() {
        let mut t = RevTree::default();
        assert_eq!(t.merge_path(&path(&["2-b", "1-a"]), false), Merge::Added);
        let before = t.clone();
        assert_eq!(
            t.merge_path(&path(&["2-b", "1-a"]), true),
            Merge::AlreadyPresent
        );
        assert_eq!(t.merge_path(&path(&["1-a"]), false), Merge::AlreadyPresent);
        assert_eq!(t, before);
    }

    #[test]
    fn stemming_keeps_the_newest_per_branch_and_reroots_on_merge() {
        let mut t = RevTree::default();
        t.merge_path(&path(&["4-d", "3-c", "2-b", "1-a"]), false);
        assert!(t.stem(2));
        assert_eq!(t.nodes().len(), 2);
        assert_eq!(t.path(t.winner().unwrap()), path(&["4-d", "3-c"]));
        t.merge_path(&path(&["5-e", "4-d", "3-c", "2-b"]), false);
        assert_eq!(
            t.path(t.winner().unwrap()),
            path(&["5-e", "4-d", "3-c", "2-b"])
        );
        assert!(!t.stem(10));
    }

    #[test]
    fn disconnected_paths_form_separate_roots() {
        let mut t = RevTree::default();
        t.merge_path(&path(&["1-a"]), false);
        t.merge_path(&path(&["3-x", "2-w"]), false);
        assert_eq!(leaf_revs(&t), ["3-x", "1-a"]);
    }

    #[test]
    fn purge_removes_leaf_and_its_private_ancestors() {
        let mut t = RevTree::default();
        t.merge_path(&path(&["3-c", "2-b", "1-a"]), false);
        t.merge_path(&path(&["3-y", "2-x", "1-a"]), false);
        assert_eq!(t.remove_leaves(&path(&["3-y", "2-b"])), path(&["3-y"]));
        assert!(!t.contains(&r("2-x")));
        assert!(t.contains(&r("1-a")));
        assert_eq!(leaf_revs(&t), ["3-c"]);
        assert_eq!(t.remove_leaves(&path(&["3-c"])), path(&["3-c"]));
        assert!(t.is_empty());
    }

    #[test]
    fn possible_ancestors_are_shallower_leaves() {
        let mut t = RevTree::default();
        t.merge_path(&path(&["2-b", "1-a"]), false);
        t.merge_path(&path(&["4-z", "3-y", "2-x", "1-a"]), false);
        assert_eq!(t.possible_ancestors(&path(&["3-q"])), path(&["2-b"]));
        assert_eq!(t.possible_ancestors(&path(&["5-q"])), path(&["2-b", "4-z"]));
        assert!(t.possible_ancestors(&path(&["1-q"])).is_empty());
    }

    #[test]
    fn latest_resolves_to_descendant_leaves() {
        let mut t = RevTree::default();
        t.merge_path(&path(&["3-c", "2-b", "1-a"]), false);
        t.merge_path(&path(&["2-x", "1-a"]), false);
        let a = t.find(&r("1-a")).unwrap();
        assert_eq!(t.leaves_under(a).len(), 2);
        let b = t.find(&r("2-b")).unwrap();
        assert_eq!(t.leaves_under(b), vec![t.find(&r("3-c")).unwrap()]);
    }
}
