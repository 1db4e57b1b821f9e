//! One settee server as a value: [`run`] opens the store, starts the scheduler and the HTTP
//! listener, and returns a [`Handle`] that knows the bound address and stops everything in
//! order. `settee serve` is this plus signal handling; tests and embedders can start a server
//! in their own process with it.
//!
//! Invariant: after [`Handle::shutdown`] returns, every task `run` started has ended (requests
//! finished, jobs checkpointed and stopped) and the store is flushed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http::ServeConfig;
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::store::{Store, StoreConfig};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a server is started with (`settee serve`'s flags).
#[derive(Clone, Debug)]
pub struct Config {
    pub data: PathBuf,
    /// Port 0 picks a free one; [`Handle::addr`] tells which.
    pub bind: SocketAddr,
    /// Server admin as (user, password); `None` is admin party, loopback only.
    pub admin: Option<(String, String)>,
    pub max_body_bytes: usize,
    /// Changes feeds held open at once (`--max-feeds`).
    pub max_feeds: usize,
    /// HTTPS with this certificate chain and key (PEM files), or plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Writes are refused (507) while the data folder's filesystem has less free space.
    pub disk_reserve: u64,
    /// sled's page cache (`--cache-mb`), in bytes.
    pub cache_bytes: u64,
    pub scheduler: SchedulerConfig,
}

impl Config {
    /// A server on a free loopback port with the defaults of `settee serve`.
    pub fn new(data: impl Into<PathBuf>) -> Config {
        Config {
            data: data.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
            max_body_bytes: crate::http::limits::DEFAULT_MAX_BODY,
            max_feeds: crate::http::limits::DEFAULT_MAX_FEEDS,
            tls: None,
            disk_reserve: crate::store::DEFAULT_DISK_RESERVE,
            cache_bytes: crate::store::DEFAULT_CACHE_MB * 1024 * 1024,
            scheduler: SchedulerConfig::default(),
        }
    }
}

/// `--tls-cert` and `--tls-key`.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running server.
pub struct Handle {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    stop: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    jobs: JoinHandle<()>,
}

/// Starts a server: refuses a non-loopback address without an admin, opens (or creates) the
/// store with its system databases, starts the scheduler and listens. Must be called inside
/// a multi-threaded tokio runtime.
pub async fn run(cfg: Config) -> Result<Handle, Error> {
    if cfg.admin.is_none() && !cfg.bind.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {} with no admin configured: pass --admin USER:PASS, or bind 127.0.0.1",
            cfg.bind
        )
        .into());
    }
    let data = cfg.data.clone();
    let (disk_reserve, cache_bytes) = (cfg.disk_reserve, cfg.cache_bytes);
    let store = tokio::task::spawn_blocking(move || -> Result<Arc<Store>, Error> {
        let store = Arc::new(Store::open(&StoreConfig {
            disk_reserve,
            cache_bytes,
            ..StoreConfig::new(&data)
        })?);
        for sys in crate::store::SYSTEM_DBS {
            store.ensure_db(sys)?;
        }
        Ok(store)
    })
    .await??;
    let tls = match &cfg.tls {
        Some(t) => Some(crate::http::tls::acceptor(&t.cert, &t.key)?),
        None => None,
    };
    let listener = listen(cfg.bind)?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let scheduler = Scheduler::new(store.clone(), cfg.scheduler);
    let jobs = scheduler.start(stopped.clone());
    let http = tokio::spawn(crate::http::serve(
        listener,
        store.clone(),
        scheduler,
        ServeConfig {
            bind: addr,
            admin: cfg.admin,
            max_body_bytes: cfg.max_body_bytes,
            max_feeds: cfg.max_feeds,
        },
        tls,
        stopped,
    ));
    Ok(Handle {
        addr,
        store,
        stop,
        http,
        jobs,
    })
}

impl Handle {
    /// Stops accepting, lets requests finish, checkpoints and stops every job, flushes.
    pub async fn shutdown(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        let served = self.http.await;
        let _ = self.jobs.await;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush()).await??;
        served??;
        Ok(())
    }
}

/// A listening socket with a deep accept queue. tokio's `bind` asks for 1,024: a thousand
/// replication jobs reconnecting at once overflowed it, and every dropped connection attempt
/// cost its client a 1 s SYN retransmit (benches/jobs.sh p99). The kernel caps the depth at
/// `net.core.somaxconn`.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server in this process: it answers, refuses what `serve` refuses, and what it
    /// acknowledged is in the store after `shutdown` (reopened from disk).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_in_process_and_shuts_down_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let mut wide = Config::new(dir.path());
        wide.bind = SocketAddr::from(([0, 0, 0, 0], 0));
        let refused = run(wide).await.err().map(|e| e.to_string());
        assert!(refused.is_some_and(|e| e.contains("--admin")));

        let h = run(Config::new(dir.path())).await.unwrap();
        assert!(h.addr.ip().is_loopback() && h.addr.port() != 0);
        let url = format!("http://{}", h.addr);
        let client = reqwest::Client::new();
        let put = client.put(format!("{url}/db")).send().await.unwrap();
        assert_eq!(put.status(), 201);
        let doc = client
            .put(format!("{url}/db/a"))
            .header("content-type", "application/json")
            .body(r#"{"x": 1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(doc.status(), 201);
        h.shutdown().await.unwrap();
        assert!(
            client.get(&url).send().await.is_err(),
            "nothing listens after shutdown"
        );

        let store = Store::open(&StoreConfig::new(dir.path())).unwrap();
        assert_eq!(store.db("db").unwrap().info().unwrap().doc_count, 1);
    }
}
