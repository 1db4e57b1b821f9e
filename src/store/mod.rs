//! The document store: many CouchDB databases in one sled instance, with CouchDB's revision
//! semantics. A library with no knowledge of HTTP; the HTTP API is a thin layer over it.
//!
//! Layout in sled: a `catalog` tree maps a database name to the sled tree holding it (a fresh
//! tree per creation, so a recreated database never sees its predecessor's data); a `server`
//! tree holds the server uuid. See [`codec`] for the keys inside a database's tree.

mod codec;
mod database;
mod doc;
mod durability;
mod error;
mod migrate;
mod rev;
mod rev_tree;
mod stored;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub use database::{
    att_digest, AttMeta, AttMode, Change, Database, DbInfo, DocOutcome, IdRevs, ReadOpts, RevsDiff,
    DEFAULT_PURGED_INFOS_LIMIT, DEFAULT_REVS_LIMIT, PENDING_EXACT,
};
pub use doc::{check_shape, validate_doc_id, AttInput, DocUpdate, LOCAL_PREFIX};
pub use durability::GroupCommit;
pub use error::{DocError, Result, StoreError};
pub use rev::{write_canonical, Rev};
pub use stored::{Doc, Leaf};

/// sled's page cache unless told otherwise (`settee serve --cache-mb`), in MiB.
pub const DEFAULT_CACHE_MB: u64 = 256;
/// Free space below which writes are refused unless told otherwise (`--disk-reserve`), in bytes.
pub const DEFAULT_DISK_RESERVE: u64 = 64 * 1024 * 1024;

/// Where and how to open the store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
    /// Writes are refused while the data folder's filesystem has less free space than this
    /// (0: never refused).
    pub disk_reserve: u64,
}

impl StoreConfig {
    pub fn new(path: impl AsRef<Path>) -> StoreConfig {
        StoreConfig {
            path: path.as_ref().to_path_buf(),
            cache_bytes: DEFAULT_CACHE_MB * 1024 * 1024,
            disk_reserve: DEFAULT_DISK_RESERVE,
        }
    }
}

/// All databases of one server.
pub struct Store {
    sled: sled::Db,
    catalog: sled::Tree,
    open: RwLock<HashMap<String, Arc<Database>>>,
    /// Serializes create and delete so a name maps to one live tree at a time.
    ddl: Mutex<()>,
    commit: Arc<GroupCommit>,
    uuid: String,
    /// Random bytes made once per store: signs session cookies, so they survive restarts.
    secret: Vec<u8>,
    /// The data folder (for the [`SEAL`]).
    path: PathBuf,
}

/// A file beside sled's where a store that closes records each database's update sequence.
/// On the next start no database may be behind it: sled, given a truncated or damaged file,
/// recovers a consistent but shorter history without a word, and the seal is what notices.
/// A crash leaves an older seal, which still holds as a lower bound.
const SEAL: &str = "settee-seal.json";

/// System databases allowed besides the ordinary name pattern.
pub const SYSTEM_DBS: &[&str] = &["_replicator", "_users"];

/// CouchDB's database name rule: `^[a-z][a-z0-9_$()+/-]*$`, or a known system name.
/// A sequence as settee shows it: `N-settee`, CouchDB's `N-<opaque>` shape, so clients that
/// read the number before the dash (PouchDB does) get it, and every sequence is a string as
/// CouchDB 3's are. Read back with [`parse_seq`].
pub fn seq_string(seq: u64) -> String {
    format!("{seq}-settee")
}

/// The number of a sequence written by [`seq_string`], a bare number (`4`, `"4"`: what older
/// settee versions wrote), or `None`.
pub fn parse_seq(s: &str) -> Option<u64> {
    s.trim_matches('"').split('-').next()?.parse().ok()
}

pub fn validate_db_name(name: &str) -> Result<()> {
    if SYSTEM_DBS.contains(&name) {
        return Ok(());
    }
    let mut chars = name.chars();
    let ok = name.len() <= 238
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_$()+/-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StoreError::IllegalDbName(name.to_owned()))
    }
}

impl Store {
    /// Opens (or creates) the store in `cfg.path`. A folder whose files are damaged is refused
    /// with [`StoreError::Damaged`], naming it: never a panic, and never an empty store in
    /// place of one that had data (sled, given a truncated or overwritten file, may recover
    /// nothing and say nothing).
    pub fn open(cfg: &StoreConfig) -> Result<Store> {
        let damaged = |detail: String| StoreError::Damaged {
            path: cfg.path.display().to_string(),
            detail,
        };
        let config = sled::Config::new()
            .path(&cfg.path)
            .cache_capacity(cfg.cache_bytes)
            .mode(sled::Mode::HighThroughput);
        // sled 0.34 panics on some damaged files instead of returning an error.
        let opened = quiet_panics(|| config.open())
            .map_err(|p| damaged(format!("sled failed reading it: {p}")))?;
        let sled = opened.map_err(|e| match e {
            // sled 0.34 locks its folder with a non-blocking `flock` and reports a held
            // lock as an `Other` error with this text (a test below pins it).
            sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock") => {
                StoreError::InUse(cfg.path.display().to_string())
            }
            e @ (sled::Error::Corruption { .. }
            | sled::Error::Unsupported(_)
            | sled::Error::ReportableBug(_)) => damaged(e.to_string()),
            e => StoreError::Storage(e),
        })?;
        let catalog = sled.open_tree("catalog")?;
        let server = sled.open_tree("server")?;
        let uuid = match server.get("uuid")? {
            Some(u) => String::from_utf8_lossy(&u).into_owned(),
            None => {
                let u = crate::ids::new_uuid();
                server.insert("uuid", u.as_bytes())?;
                sled.flush()?;
                u
            }
        };
        let secret = match server.get("secret")? {
            Some(s) => s.to_vec(),
            None => {
                let s: [u8; 32] = rand::random();
                server.insert("secret", &s[..])?;
                sled.flush()?;
                s.to_vec()
            }
        };
        migrate::run(&sled, &catalog, &server)?;
        let commit = Arc::new(GroupCommit::new(
            sled.clone(),
            cfg.path.clone(),
            cfg.disk_reserve,
        ));
        check_seal(&cfg.path, &sled, &catalog).map_err(damaged)?;
        Ok(Store {
            path: cfg.path.clone(),
            secret,
            sled,
            catalog,
            open: RwLock::new(HashMap::new()),
            ddl: Mutex::new(()),
            commit,
            uuid,
        })
    }

    /// This server's stable uuid (`GET /` shows it; replication ids and shares use it).
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    pub fn all_dbs(&self) -> Result<Vec<String>> {
        self.catalog
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    pub fn create_db(&self, name: &str) -> Result<Arc<Database>> {
        validate_db_name(name)?;
        self.commit.room_to_write()?;
        let _ddl = self.ddl.lock().unwrap_or_else(|p| p.into_inner());
        if self.catalog.contains_key(name)? {
            return Err(StoreError::DbExists);
        }
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let tree_name = format!("db/{name}/{micros}-{}", crate::ids::new_uuid());
        let entry = json!({"tree": tree_name, "instance_start_time": micros.to_string()});
        self.sled.open_tree(&tree_name)?;
        self.catalog
            .insert(name, error::encode("a catalog entry", &entry)?)?;
        self.commit.commit()?;
        drop(_ddl);
        self.db(name)
    }

    /// Creates the database if it does not exist yet (system databases at start-up).
    pub fn ensure_db(&self, name: &str) -> Result<Arc<Database>> {
        match self.create_db(name) {
            Err(StoreError::DbExists) => self.db(name),
            other => other,
        }
    }

    pub fn delete_db(&self, name: &str) -> Result<()> {
        let _ddl = self.ddl.lock().unwrap_or_else(|p| p.into_inner());
        let entry = self.catalog.get(name)?.ok_or(StoreError::DbNotFound)?;
        if let Some(tree) = catalog_tree(&entry) {
            unseal(&self.path, &tree)?;
        }
        self.catalog.remove(name)?;
        if let Some(db) = self
            .open
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
        {
            db.mark_dropped();
        }
        if let Some(tree) = catalog_tree(&entry) {
            self.sled.drop_tree(tree.as_bytes())?;
        }
        self.commit.commit()
    }

    /// An open handle to an existing database.
    pub fn db(&self, name: &str) -> Result<Arc<Database>> {
        if let Some(db) = self
            .open
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(db.clone());
        }
        let entry = self.catalog.get(name)?.ok_or(StoreError::DbNotFound)?;
        let tree_name =
            catalog_tree(&entry).ok_or_else(|| StoreError::Corrupt(format!("catalog {name}")))?;
        let start = serde_json::from_slice::<Value>(&entry)
            .ok()
            .and_then(|v| v["instance_start_time"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = open.get(name) {
            return Ok(db.clone());
        }
        let tree = self.sled.open_tree(tree_name.as_bytes())?;
        let db = Arc::new(Database::open(
            name.to_owned(),
            tree,
            start,
            self.commit.clone(),
        )?);
        open.insert(name.to_owned(), db.clone());
        Ok(db)
    }

    /// Flushes everything to disk (shutdown, `_ensure_full_commit`).
    pub fn flush(&self) -> Result<()> {
        self.commit.commit()
    }

    /// Bytes sled uses on disk for the whole store.
    pub fn size_on_disk(&self) -> u64 {
        self.sled.size_on_disk().unwrap_or(0)
    }

    pub fn flushes(&self) -> u64 {
        self.commit.flushes()
    }

    /// Flushes and writes the [`SEAL`]: every database's tree and update sequence.
    fn seal(&self) -> Result<()> {
        self.sled.flush()?;
        let mut seqs = serde_json::Map::new();
        for kv in self.catalog.iter() {
            let (_, entry) = kv?;
            if let Some(tree) = catalog_tree(&entry) {
                let seq = database::stored_update_seq(&self.sled.open_tree(&tree)?)?;
                seqs.insert(tree, json!(seq));
            }
        }
        let bytes = error::encode("the seal", &Value::Object(seqs))?;
        let tmp = self.path.join(format!("{SEAL}.tmp"));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, self.path.join(SEAL)))
            .map_err(|e| StoreError::Storage(sled::Error::Io(e)))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.seal() {
            tracing::warn!(error = %e, "could not write the store's seal");
        }
    }
}

/// No database of the catalog is behind the update sequence the last seal recorded for it.
/// `Err` says which and by how much.
fn check_seal(
    path: &Path,
    sled: &sled::Db,
    catalog: &sled::Tree,
) -> std::result::Result<(), String> {
    let Ok(bytes) = std::fs::read(path.join(SEAL)) else {
        return Ok(());
    };
    let Ok(Value::Object(mut sealed)) = serde_json::from_slice::<Value>(&bytes) else {
        tracing::warn!("{SEAL} does not parse: not checked");
        return Ok(());
    };
    for kv in catalog.iter() {
        let (name, entry) = kv.map_err(|e| e.to_string())?;
        let Some(tree) = catalog_tree(&entry) else {
            continue;
        };
        let Some(was) = sealed.remove(&tree).and_then(|v| v.as_u64()) else {
            continue;
        };
        let tree = sled.open_tree(&tree).map_err(|e| e.to_string())?;
        let now = database::stored_update_seq(&tree).map_err(|e| e.to_string())?;
        if now < was {
            return Err(format!(
                "database {:?} is at update sequence {now} but was at {was} when settee last stopped: writes were lost",
                String::from_utf8_lossy(&name)
            ));
        }
    }
    // A database the seal knows and the catalog does not: deleting one takes it out of the
    // seal first, so this one was lost.
    if let Some(tree) = sealed.keys().next() {
        let name = tree.split('/').nth(1).unwrap_or(tree);
        return Err(format!(
            "database {name:?} was there when settee last stopped and is gone: writes were lost"
        ));
    }
    Ok(())
}

/// Takes a deleted database's tree out of the [`SEAL`], before the deletion, so that its
/// absence later is not taken for a loss.
fn unseal(path: &Path, tree: &str) -> Result<()> {
    let Ok(bytes) = std::fs::read(path.join(SEAL)) else {
        return Ok(());
    };
    let Ok(Value::Object(mut sealed)) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(());
    };
    if sealed.remove(tree).is_none() {
        return Ok(());
    }
    let bytes = error::encode("the seal", &Value::Object(sealed))?;
    let tmp = path.join(format!("{SEAL}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path.join(SEAL)))
        .map_err(|e| StoreError::Storage(sled::Error::Io(e)))
}

fn catalog_tree(entry: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(entry)
        .ok()?
        .get("tree")?
        .as_str()
        .map(str::to_owned)
}

thread_local! {
    /// This thread is inside [`quiet_panics`].
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(its message)` without the panic report on stderr (the
/// caller reports it as an error of its own). Other threads' panics are reported as before.
fn quiet_panics<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    res.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_names_follow_couchdb() {
        for ok in ["a", "abc", "a1_$()+-/x", "_replicator", "_users"] {
            assert!(validate_db_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "1a", "_foo", "a b", "aé", &"a".repeat(239)] {
            assert!(validate_db_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_folder_in_use_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(&StoreConfig::new(dir.path())).unwrap();
        match Store::open(&StoreConfig::new(dir.path())) {
            Err(StoreError::InUse(path)) => assert_eq!(path, dir.path().display().to_string()),
            Err(e) => panic!("expected InUse, got {e}"),
            Ok(_) => panic!("opened a folder another store holds"),
        }
    }
}
