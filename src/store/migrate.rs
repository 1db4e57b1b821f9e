//! One-time upgrades of the on-disk layout, run when a store is opened.
//!
//! Format 1 kept each leaf's body under its own `b` key and an `e` key per locally edited
//! document; format 2 keeps both inside the document's record (see [`codec::DocRecord`]), so a
//! write is two sled inserts instead of four. Format 3 writes the by-sequence index in runs of
//! many changes per entry ([`codec::Run`]); it still reads format 2's one-id entries, so going
//! from 2 to 3 rewrites nothing, but the number tells an older settee, which would take a run
//! for one id, not to open the store. A store records its format in the `server` tree; one
//! without a format and with no databases is new and starts at the current format.
//!
//! The migration is idempotent: each batch rewrites some records and deletes their old keys
//! atomically, and a record already in format 2 is left alone, so a crash part-way is
//! finished by the next open.

use super::codec::{self, DocRecord};
use super::error::{Result, StoreError};

pub const FORMAT: u64 = 3;

/// Records rewritten per sled batch.
const BATCH: usize = 500;

/// Brings every database tree named in the catalog to [`FORMAT`].
pub fn run(sled: &sled::Db, catalog: &sled::Tree, server: &sled::Tree) -> Result<()> {
    let stored = match server.get("format")? {
        Some(v) => Some(u64::from_le_bytes(
            v.as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("store format".into()))?,
        )),
        None => None,
    };
    let format = match stored {
        Some(f) => f,
        None if catalog.is_empty() => FORMAT,
        None => 1,
    };
    if format > FORMAT {
        return Err(StoreError::Corrupt(format!(
            "this store is in format {format}, written by a newer settee; this one reads up to {FORMAT}"
        )));
    }
    if format < 2 {
        for entry in catalog.iter().values() {
            if let Some(name) = super::catalog_tree(&entry?) {
                let tree = sled.open_tree(name.as_bytes())?;
                let n = v1_to_v2(&tree)?;
                tracing::info!(tree = %name, documents = n, "store migrated to format 2");
            }
        }
    }
    // An up-to-date store costs its opening nothing more than the read above.
    if stored != Some(FORMAT) {
        server.insert("format", &FORMAT.to_le_bytes())?;
        sled.flush()?;
    }
    Ok(())
}

/// Moves bodies and edited marks into the records of one database. Returns how many
/// records were rewritten.
fn v1_to_v2(tree: &sled::Tree) -> Result<usize> {
    let mut rewritten = 0;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    for kv in tree.scan_prefix([codec::DOC]) {
        let (key, value) = kv?;
        if DocRecord::decode(&value).is_ok() {
            continue; // already format 2
        }
        let mut rec = DocRecord::decode_v1(&value)?;
        let id =
            std::str::from_utf8(&key[1..]).map_err(|_| StoreError::Corrupt("doc id".into()))?;
        for leaf in rec.tree.leaves() {
            let rev = rec.tree.node(leaf).rev.clone();
            let body = tree
                .get(codec::body_key(id, &rev))?
                .ok_or_else(|| StoreError::Corrupt(format!("missing body of {id} {rev}")))?;
            rec.set_body(rev, body);
        }
        rec.edited = tree.contains_key(codec::edited_key(id))?;
        for old in tree.scan_prefix(codec::body_prefix(id)).keys() {
            batch.remove(old?);
        }
        batch.remove(codec::edited_key(id));
        batch.insert(key, rec.encode());
        rewritten += 1;
        in_batch += 1;
        if in_batch == BATCH {
            tree.apply_batch(std::mem::take(&mut batch))?;
            in_batch = 0;
        }
    }
    tree.apply_batch(batch)?;
    Ok(rewritten)
}
