//! The CouchDB-compatible HTTP API: a thin layer over [`crate::store`]. Only this module knows
//! hyper. Requests are read whole (bounded), routed by path segments, and answered with
//! CouchDB's JSON shapes; every failure goes through [`error::ApiError`].

pub mod auth;
pub mod body;
pub mod changes;
pub mod conflicts_api;
pub mod db_api;
pub mod doc_api;
pub mod error;
pub mod find_api;
mod lenient;
pub mod limits;
pub mod multipart;
mod node_api;
pub mod replication_api;
pub mod request;
pub mod router;
pub mod sharing_api;
pub mod tls;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::scheduler::Scheduler;
use crate::store::Store;

/// What `settee serve` was told.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub bind: SocketAddr,
    /// Server admin as (user, password); `None` is CouchDB's "admin party", loopback only.
    pub admin: Option<(String, String)>,
    pub max_body_bytes: usize,
    /// Changes feeds held open at once; more are refused with 429.
    pub max_feeds: usize,
}

/// Shared state of every request handler.
pub struct Ctx {
    pub store: Arc<Store>,
    pub cfg: ServeConfig,
    /// Flips to `true` on shutdown: streaming feeds end.
    pub shutdown: watch::Receiver<bool>,
    pub auth: auth::AuthCache,
    pub scheduler: Arc<Scheduler>,
    pub sharing: crate::sharing::Sharing,
    /// Request counts, latencies and open feeds (`/_node/_local/_prometheus`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Slots for open changes feeds (`--max-feeds`).
    pub feeds: limits::Feeds,
}

/// Accepts connections until `shutdown` flips, then lets in-flight requests finish. With
/// `tls`, every connection is HTTPS.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    scheduler: Arc<Scheduler>,
    cfg: ServeConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let ctx = Arc::new(Ctx {
        feeds: limits::Feeds::new(cfg.max_feeds),
        cfg,
        shutdown: shutdown.clone(),
        auth: auth::AuthCache::default(),
        sharing: crate::sharing::Sharing::new(store.clone(), scheduler.clone()),
        scheduler,
        store,
        metrics: Default::default(),
    });
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                };
                let _ = stream.set_nodelay(true);
                let ctx = ctx.clone();
                let stop = shutdown.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    match tls {
                        None => connection(stream, ctx, stop).await,
                        Some(tls) => {
                            // A client that never finishes its handshake does not hold a task.
                            let shake = tokio::time::timeout(
                                std::time::Duration::from_secs(10),
                                tls.accept(stream),
                            );
                            match shake.await {
                                Ok(Ok(s)) => connection(s, ctx, stop).await,
                                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!("TLS handshake timed out"),
                            }
                        }
                    }
                });
            }
            _ = stopped(&mut shutdown) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// Serves one connection (plain or TLS) until it ends, or finishes its requests on shutdown.
async fn connection<S>(stream: S, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| router::handle(ctx.clone(), req));
    let conn = http1::Builder::new()
        .max_buf_size(limits::HYPER_MAX_BUF)
        .keep_alive(true)
        .serve_connection(TokioIo::new(lenient::Lenient::new(stream)), svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res { tracing::debug!(error = %e, "connection ended"); }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
