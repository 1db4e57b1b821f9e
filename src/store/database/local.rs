//! `_local` documents: per-database, never replicated, no revision tree (a `0-N` counter),
//! stored as whole JSON documents. Replication checkpoints live here.

use serde_json::{Map, Value};

use super::writer::{DocResult, Writer};
use super::*;

impl Database {
    pub fn get_local(&self, id: &str) -> Result<Option<Value>> {
        match self.tree.get(codec::local_key(id))? {
            Some(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).map_err(|_| {
                    StoreError::Corrupt(format!("local doc {id}"))
                })?))
            }
            None => Ok(None),
        }
    }

    /// Every `_local` document, in id order (`GET /{db}/_local_docs`).
    pub fn local_docs(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([codec::LOCAL]) {
            let (k, bytes) = kv?;
            let doc = serde_json::from_slice(&bytes).map_err(|_| {
                StoreError::Corrupt(format!("local doc {}", String::from_utf8_lossy(&k[1..])))
            })?;
            out.push(doc);
        }
        Ok(out)
    }
}

impl<'a> Writer<'a> {
    pub(super) fn write_local(&mut self, upd: DocUpdate, new_edits: bool) -> Result<DocResult> {
        let current = match self.locals.get(&upd.id) {
            Some(v) => v.clone(),
            None => self.db.get_local(&upd.id)?,
        };
        let cur_rev = current
            .as_ref()
            .and_then(|d| d.get("_rev"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let n: u64 = cur_rev
            .as_deref()
            .and_then(|r| r.strip_prefix("0-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if new_edits && cur_rev != upd.local_rev {
            return Ok(Err(DocError::Conflict));
        }
        if upd.deleted {
            if current.is_none() {
                return Ok(Err(DocError::NotFound("missing")));
            }
            self.locals.insert(upd.id, None);
            self.changed = true;
            return Ok(Ok("0-0".into()));
        }
        let rev = format!("0-{}", n + 1);
        let mut doc = Map::new();
        doc.insert("_id".into(), Value::String(upd.id.clone()));
        doc.insert("_rev".into(), Value::String(rev.clone()));
        doc.extend(upd.body);
        self.locals.insert(upd.id, Some(Value::Object(doc)));
        self.changed = true;
        Ok(Ok(rev))
    }
}
