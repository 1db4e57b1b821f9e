//! Purge: leaf revisions removed as if never written, a purge sequence, and purge infos kept
//! up to `purged_infos_limit` (what a peer reads to purge the same revisions).

use serde_json::{json, Value};

use super::writer::Writer;
use super::*;

impl Database {
    /// Removes the given leaf revisions as if they had never been written. Returns the new
    /// purge sequence and, per id, the revisions actually purged.
    pub fn purge(&self, req: Vec<(String, Vec<Rev>)>) -> Result<(u64, Vec<IdRevs>)> {
        self.commit.room_to_write()?;
        let mut meta = self.lock()?;
        let mut w = Writer::new(self, meta.clone(), req.len());
        let mut out = Vec::with_capacity(req.len());
        for (id, revs) in req {
            let purged = w.purge(&id, &revs)?;
            out.push((id, purged));
        }
        let changed = w.finish()?;
        *meta = w.meta;
        let (seq, purge_seq) = (meta.update_seq, meta.purge_seq);
        drop(meta);
        if changed {
            self.publish(seq)?;
        }
        Ok((purge_seq, out))
    }

    /// Purge infos with a purge sequence above `since`, oldest first.
    pub fn purged_infos(&self, since: u64) -> Result<Vec<(u64, Value)>> {
        self.tree
            .range(codec::purge_key(since.saturating_add(1))..=codec::purge_key(u64::MAX))
            .map(|kv| {
                let (k, v) = kv?;
                let info = serde_json::from_slice(&v)
                    .map_err(|_| StoreError::Corrupt("purge info".into()))?;
                Ok((codec::key_seq(&k)?, info))
            })
            .collect()
    }
}

impl<'a> Writer<'a> {
    pub(super) fn purge(&mut self, id: &str, revs: &[Rev]) -> Result<Vec<Rev>> {
        let Some(mut tree) = self.state(id)?.current.as_ref().map(|r| r.tree.clone()) else {
            return Ok(Vec::new());
        };
        let removed = tree.remove_leaves(revs);
        if removed.is_empty() {
            return Ok(removed);
        }
        for r in &removed {
            self.remove_body(id, r)?;
        }
        if tree.is_empty() {
            let st = self.state(id)?;
            st.current = None;
            if !st.dirty {
                st.dirty = true;
                self.order.push(id.to_owned());
            }
            self.changed = true;
        } else {
            self.set_record(id, tree)?;
        }
        self.meta.purge_seq += 1;
        let revs: Vec<String> = removed.iter().map(Rev::to_string).collect();
        self.purge_infos.push(json!({"id": id, "revs": revs}));
        Ok(removed)
    }
}
