//! A database of this server's own store as a replication endpoint: no HTTP, no JSON
//! round-trips for the feed, the same filter code as `_changes`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};

use super::peer::{local_seq, ChangeRow, ChangesPage, ChangesReq, DbMeta, Missing, PushFilter};
use super::unmatched::Leaf;
use super::{Env, ReplError};
use crate::feed::FeedFilter;
use crate::store::{AttMode, Database, ReadOpts, Rev, Store, StoreError};

pub struct LocalPeer {
    store: Arc<Store>,
    name: String,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReplError> + Send + 'static,
) -> Result<T, ReplError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ReplError::Internal(e.to_string()))?
}

fn revs(list: &[String]) -> Vec<Rev> {
    list.iter().filter_map(|r| Rev::parse(r).ok()).collect()
}

impl LocalPeer {
    pub fn new(env: &Env, name: &str) -> Result<LocalPeer, ReplError> {
        let store = env.store.clone().ok_or_else(|| ReplError::DbNotFound {
            endpoint: format!("{name} (a local database, but no local store is open; give a URL)"),
        })?;
        Ok(LocalPeer {
            store,
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn db(&self) -> Result<Arc<Database>, ReplError> {
        self.store.db(&self.name).map_err(|e| match e {
            StoreError::DbNotFound => ReplError::DbNotFound {
                endpoint: self.name.clone(),
            },
            e => e.into(),
        })
    }

    pub fn server_uuid(&self) -> String {
        self.store.uuid().to_owned()
    }

    pub fn info(&self) -> Result<DbMeta, ReplError> {
        let db = self.db()?;
        Ok(DbMeta {
            update_seq: json!(crate::store::seq_string(db.update_seq())),
            instance_start_time: db.instance_start_time().to_owned(),
        })
    }

    pub fn create(&self) -> Result<(), ReplError> {
        match self.store.create_db(&self.name) {
            Ok(_) | Err(StoreError::DbExists) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn get_local(&self, id: &str) -> Result<Option<Value>, ReplError> {
        Ok(self.db()?.get_local(&format!("_local/{id}"))?)
    }

    pub async fn put_local(&self, id: &str, mut body: Value) -> Result<(), ReplError> {
        let db = self.db()?;
        let id = format!("_local/{id}");
        blocking(move || {
            let current = db.get_local(&id)?;
            body["_id"] = json!(id);
            if let Some(rev) = current.as_ref().and_then(|c| c.get("_rev")) {
                body["_rev"] = rev.clone();
            }
            let out = db.bulk_docs(vec![body], true)?;
            match out.into_iter().next().map(|o| o.result) {
                Some(Err(e)) => Err(ReplError::Store(e.to_string())),
                _ => Ok(()),
            }
        })
        .await
    }

    pub async fn ensure_full_commit(&self) -> Result<String, ReplError> {
        let db = self.db()?;
        let store = self.store.clone();
        blocking(move || {
            store.flush()?;
            Ok(db.instance_start_time().to_owned())
        })
        .await
    }

    pub async fn changes(&self, req: &ChangesReq<'_>) -> Result<ChangesPage, ReplError> {
        let db = self.db()?;
        let filter = FeedFilter {
            all_docs: !req.winning_only,
            doc_ids: match req.filter {
                PushFilter::DocIds(ids) => Some(ids.iter().cloned().collect::<HashSet<_>>()),
                _ => None,
            },
            design_only: false,
            selector: match req.filter {
                PushFilter::Selector(s) => Some(s.clone()),
                _ => None,
            },
        };
        let since = local_seq(req.since);
        let (limit, include_docs) = (req.limit as u64, req.include_docs);
        let deadline = req.wait.map(|w| tokio::time::Instant::now() + w);
        let mut updates = db.subscribe();
        loop {
            let (db2, filter2) = (db.clone(), filter.clone());
            let page = blocking(move || scan(&db2, &filter2, since, limit, include_docs)).await?;
            let waiting = deadline.is_some_and(|d| tokio::time::Instant::now() < d);
            if !page.rows.is_empty() || !waiting {
                return Ok(page);
            }
            if let Some(d) = deadline {
                if tokio::time::timeout_at(d, updates.changed()).await.is_err() {
                    // One last look, then answer with what there is.
                    continue;
                }
            }
        }
    }

    pub async fn revs_diff(
        &self,
        req: Vec<(String, Vec<String>)>,
    ) -> Result<Vec<Missing>, ReplError> {
        let db = self.db()?;
        blocking(move || {
            let req = req.into_iter().map(|(id, r)| (id, revs(&r))).collect();
            Ok(db
                .revs_diff(req)?
                .into_iter()
                .map(|d| Missing {
                    id: d.id,
                    missing: d.missing.iter().map(Rev::to_string).collect(),
                    possible_ancestors: d.possible_ancestors.iter().map(Rev::to_string).collect(),
                })
                .collect())
        })
        .await
    }

    pub async fn fetch(&self, missing: &[Missing]) -> Result<(Vec<Value>, u64), ReplError> {
        let db = self.db()?;
        let missing = missing.to_vec();
        blocking(move || {
            let mut docs = Vec::new();
            let mut not_found = 0;
            for m in missing {
                let opts = ReadOpts {
                    revs: true,
                    attachments: AttMode::Since(revs(&m.possible_ancestors)),
                    ..Default::default()
                };
                match db.open_revs(&m.id, Some(&revs(&m.missing)), true, &opts) {
                    Ok(list) => {
                        for d in list {
                            match d {
                                Ok(doc) => docs.push(doc),
                                Err(_) => not_found += 1,
                            }
                        }
                    }
                    Err(StoreError::NotFound(_)) => not_found += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            Ok((docs, not_found))
        })
        .await
    }

    pub async fn leaves(&self, ids: Vec<String>) -> Result<HashMap<String, Vec<Leaf>>, ReplError> {
        let db = self.db()?;
        blocking(move || {
            let opts = ReadOpts {
                revs: true,
                ..Default::default()
            };
            let mut out = HashMap::new();
            for id in ids {
                match db.open_revs(&id, None, false, &opts) {
                    Ok(list) => {
                        let leaves = list
                            .iter()
                            .filter_map(|d| d.as_ref().ok().and_then(Leaf::from_doc))
                            .collect();
                        out.insert(id, leaves);
                    }
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn purge(&self, req: Vec<(String, Vec<String>)>) -> Result<(), ReplError> {
        if req.is_empty() {
            return Ok(());
        }
        let db = self.db()?;
        blocking(move || {
            db.purge(req.into_iter().map(|(id, r)| (id, revs(&r))).collect())?;
            Ok(())
        })
        .await
    }

    pub async fn write(&self, docs: Vec<Value>) -> Result<Vec<Value>, ReplError> {
        let db = self.db()?;
        blocking(move || {
            Ok(db
                .bulk_docs(docs, false)?
                .into_iter()
                .filter_map(|o| match o.result {
                    Ok(_) => None,
                    Err(e) => {
                        Some(json!({"id": o.id, "error": e.error_tag(), "reason": e.to_string()}))
                    }
                })
                .collect())
        })
        .await
    }
}

fn scan(
    db: &Database,
    filter: &FeedFilter,
    since: u64,
    limit: u64,
    include_docs: bool,
) -> Result<ChangesPage, ReplError> {
    let s = filter.scan(db, since, Some(limit), false)?;
    let mut rows = Vec::with_capacity(s.hits.len());
    for (c, leaves) in s.hits {
        // A change is a document with at least one leaf.
        let Some(winner) = c.doc.winner() else {
            continue;
        };
        let doc = if include_docs {
            Some(db.doc_json(&c.id, &c.doc, winner, &ReadOpts::default())?)
        } else {
            None
        };
        rows.push(ChangeRow {
            seq: json!(crate::store::seq_string(c.seq)),
            revs: leaves,
            deleted: winner.deleted(),
            id: c.id,
            doc,
        });
    }
    let pending = db.pending(s.last);
    Ok(ChangesPage {
        rows,
        last_seq: json!(crate::store::seq_string(s.last)),
        pending: Some(pending),
    })
}
