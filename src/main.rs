//! The `settee` binary: parse the command line, run one command, exit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use settee::store::{Store, StoreConfig};

#[derive(Parser)]
#[command(
    name = "settee",
    version,
    about = "A CouchDB-compatible replication engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the CouchDB-compatible HTTP API.
    Serve {
        /// Data directory.
        #[arg(long, env = "SETTEE_DATA", default_value = "data")]
        data: PathBuf,
        /// Address to listen on. Anything but loopback needs --admin.
        #[arg(long, env = "SETTEE_BIND", default_value = "127.0.0.1:5984")]
        bind: std::net::SocketAddr,
        /// Server admin as USER:PASS. Without it only loopback clients are served ("admin party").
        #[arg(long, env = "SETTEE_ADMIN")]
        admin: Option<String>,
        /// Largest request body accepted, in bytes (413 beyond).
        #[arg(long, env = "SETTEE_MAX_BODY", default_value_t = 64 * 1024 * 1024)]
        max_body: usize,
        /// Most replication jobs running at once; the rest wait as `pending` and rotate.
        #[arg(long, env = "SETTEE_MAX_JOBS", default_value_t = 500)]
        max_jobs: usize,
        /// Seconds between scheduler rotations of pending continuous jobs.
        #[arg(long, env = "SETTEE_SCHEDULER_INTERVAL", default_value_t = 60)]
        scheduler_interval: u64,
        /// Most jobs started or stopped per rotation.
        #[arg(long, env = "SETTEE_MAX_CHURN", default_value_t = 20)]
        max_churn: usize,
        /// SMTP relay for e-mail notifications: smtp://[user:pass@]host[:port] (plain, or
        /// STARTTLS with ?tls=required) or smtps://… (TLS).
        #[arg(long, env = "SETTEE_SMTP_URL")]
        smtp_url: Option<String>,
        /// Sender of e-mail notifications.
        #[arg(
            long,
            env = "SETTEE_SMTP_FROM",
            default_value = "settee <settee@localhost>"
        )]
        smtp_from: String,
    },
    /// Replicate SOURCE to TARGET in the foreground (URLs, or local database names with --data).
    Replicate(settee::cli::ReplicateArgs),
    /// Print every replication document and job of a server as a table.
    Status {
        /// Server URL, with credentials if needed: http://admin:pass@127.0.0.1:5984
        #[arg(long, env = "SETTEE_SERVER", default_value = "http://127.0.0.1:5984")]
        server: String,
    },
    /// Documents with conflicting versions: winner, losers, and the fields that differ.
    Conflicts {
        /// The database.
        db: String,
        /// Server URL, with credentials if needed: http://admin:pass@127.0.0.1:5984
        #[arg(long, env = "SETTEE_SERVER", default_value = "http://127.0.0.1:5984")]
        server: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replication documents: check one, or apply it to a server's _replicator.
    Doc {
        #[command(subcommand)]
        action: DocAction,
    },
    /// Shares: selective one-way or two-way replication with a peer, as one object.
    Share {
        #[command(subcommand)]
        action: ShareAction,
        /// Server URL, with credentials if needed: http://admin:pass@127.0.0.1:5984
        #[arg(
            long,
            global = true,
            env = "SETTEE_SERVER",
            default_value = "http://127.0.0.1:5984"
        )]
        server: String,
    },
    /// Open the store and print the databases it holds.
    Inspect {
        /// Data directory.
        #[arg(long, env = "SETTEE_DATA", default_value = "data")]
        data: PathBuf,
    },
    /// Test helper: write numbered batches forever, printing each committed batch number.
    #[command(hide = true)]
    CrashWriter {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 50)]
        batch: usize,
    },
}

#[derive(Subcommand)]
enum DocAction {
    /// Validate a replication document as the scheduler would and explain each problem.
    Check { file: PathBuf },
    /// Validate, then put the document into the server's _replicator database.
    Apply {
        file: PathBuf,
        #[arg(long, env = "SETTEE_SERVER", default_value = "http://127.0.0.1:5984")]
        server: String,
    },
}

#[derive(Subcommand)]
enum ShareAction {
    /// Share part of a local database with a peer database.
    Create {
        id: String,
        /// The local database.
        #[arg(long)]
        local: String,
        /// The peer database's URL (credentials in it are stored for the replications).
        #[arg(long)]
        remote: String,
        /// What to share: a Mango selector (JSON). Required.
        #[arg(long)]
        selector: String,
        /// read-only (push only) or read-write (both ways).
        #[arg(long, default_value = "read-only")]
        mode: String,
        /// Share every document: needed when the selector matches any document at all.
        #[arg(long)]
        all: bool,
    },
    /// Every share with the state of each direction.
    List,
    /// One share.
    Show { id: String },
    /// Stop a share; --purge removes what arrived only through it (--purge all: everything
    /// it matched), by _purge so nothing is deleted on the peer.
    Stop {
        id: String,
        /// Purge the documents that exist here only because of the share; `--purge all`
        /// purges every document the selector matches, edited here or not.
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        purge: Option<String>,
        /// List what would be purged and kept; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    settee::alloc::tune();
    settee::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            data,
            bind,
            admin,
            max_body,
            max_jobs,
            scheduler_interval,
            max_churn,
            smtp_url,
            smtp_from,
        } => serve(
            data,
            bind,
            admin,
            max_body,
            settee::scheduler::SchedulerConfig {
                max_jobs: max_jobs.max(1),
                interval: std::time::Duration::from_secs(scheduler_interval.max(1)),
                max_churn,
                smtp: smtp_url.map(|url| settee::scheduler::notify::Smtp {
                    url,
                    from: smtp_from,
                }),
                ..Default::default()
            },
        ),
        Command::Replicate(args) => settee::cli::replicate(args),
        Command::Status { server } => settee::cli::status(&server),
        Command::Conflicts { db, server, json } => settee::cli::conflicts(&server, &db, json),
        Command::Doc {
            action: DocAction::Check { file },
        } => match settee::cli::doc_check(&file) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Doc {
            action: DocAction::Apply { file, server },
        } => settee::cli::doc_apply(&file, &server),
        Command::Share { action, server } => match action {
            ShareAction::Create {
                id,
                local,
                remote,
                selector,
                mode,
                all,
            } => settee::cli::share_create(&server, &id, &local, &remote, &selector, &mode, all),
            ShareAction::List => settee::cli::share_show(&server, None),
            ShareAction::Show { id } => settee::cli::share_show(&server, Some(&id)),
            ShareAction::Stop { id, purge, dry_run } => {
                settee::cli::share_stop(&server, &id, purge.as_deref(), dry_run)
            }
        },
        Command::Inspect { data } => inspect(data),
        Command::CrashWriter { data, batch } => settee::debug::crash_writer(&data, batch),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("settee: {e}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(data: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(&StoreConfig::new(&data))?;
    println!("settee store at {} (uuid {})", data.display(), store.uuid());
    for name in store.all_dbs()? {
        let info = store.db(&name)?.info()?;
        println!(
            "  {name}: {} docs, {} deleted, update_seq {}",
            info.doc_count, info.doc_del_count, info.update_seq
        );
    }
    Ok(())
}

fn serve(
    data: PathBuf,
    bind: std::net::SocketAddr,
    admin: Option<String>,
    max_body: usize,
    sched: settee::scheduler::SchedulerConfig,
) -> Result<(), Box<dyn std::error::Error>> {
    let admin = match admin {
        Some(a) => match a.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => Some((u.to_owned(), p.to_owned())),
            _ => return Err("--admin must be USER:PASS".into()),
        },
        None => None,
    };
    if admin.is_none() && !bind.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {bind} with no admin configured: pass --admin USER:PASS, or bind 127.0.0.1"
        )
        .into());
    }
    let store = std::sync::Arc::new(Store::open(&StoreConfig::new(&data))?);
    for sys in settee::store::SYSTEM_DBS {
        store.ensure_db(sys)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = listen(bind)?;
        let addr = listener.local_addr()?;
        // Startup lines go to stdout, which may be closed: never fail over it.
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "settee listening on http://{addr}/ (data in {})",
            data.display()
        );
        let _ = match &admin {
            Some((user, _)) => writeln!(
                out,
                "log in as server admin {user:?} with the password given to --admin"
            ),
            None => writeln!(
                out,
                "admin party: no admin configured, loopback clients only"
            ),
        };
        let _ = out.flush();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let cfg = settee::http::ServeConfig {
            bind: addr,
            admin,
            max_body_bytes: max_body,
        };
        let scheduler = settee::scheduler::Scheduler::new(store.clone(), sched);
        let jobs = scheduler.start(rx.clone());
        let server = tokio::spawn(settee::http::serve(
            listener,
            store.clone(),
            scheduler,
            cfg,
            rx,
        ));
        shutdown_signal().await;
        let _ = writeln!(out, "shutting down: finishing requests, checkpointing jobs");
        let _ = out.flush();
        let _ = tx.send(true);
        let _ = server.await;
        let _ = jobs.await;
        store.flush()?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A listening socket with a deep accept queue. tokio's `bind` asks for 1,024: a thousand
/// replication jobs reconnecting at once overflowed it, and every dropped connection attempt
/// cost its client a 1 s SYN retransmit (benches/jobs.sh p99). The kernel caps the depth at
/// `net.core.somaxconn`.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)
}
