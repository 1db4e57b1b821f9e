//! The `settee` binary: parse the command line, run one command, exit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use settee::store::{Store, StoreConfig};

#[derive(Parser)]
#[command(
    name = "settee",
    version,
    about = "A CouchDB-compatible replication engine",
    after_help = "Examples:
  settee serve --data ./data --admin admin:secret
  settee status --server http://admin:secret@127.0.0.1:5984 --watch
  settee doc check replicator-docs/uwazi-publish-whitelisted.json
  settee share list --json | jq .shares[].id

Exit codes: 0 done (also when the reader of stdout stopped reading), 1 the operation failed
(refused, unreachable, invalid document), 2 bad usage (unknown flag, malformed argument).
With --json, every answer is one JSON value per line on stdout and a failure is one JSON
object {\"error\", \"reason\"} on stderr."
)]
struct Cli {
    /// Print JSON for scripts (one value per line) instead of tables and sentences.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the CouchDB-compatible HTTP API.
    #[command(after_help = "Examples:
  settee serve                                   # admin party on http://127.0.0.1:5984, data in ./data
  settee serve --bind 0.0.0.0:5984 --admin admin:s3cret --data /var/lib/settee
  Then open http://127.0.0.1:5984/_utils/ for the status page.")]
    Serve(settee::cli::ServeArgs),
    /// Replicate SOURCE to TARGET in the foreground (URLs, or local database names with --data).
    #[command(after_help = "Examples:
  settee replicate http://admin:pw@127.0.0.1:5984/a http://peer:5984/a --selector '{\"type\": \"entity\"}'
  settee replicate http://127.0.0.1:5984/a http://127.0.0.1:5984/b --create-target --dry-run
  settee replicate a b --data ./data --json        # local databases of a stopped server")]
    Replicate(settee::cli::ReplicateArgs),
    /// Print every replication document and job of a server as a table.
    #[command(after_help = "Examples:
  settee status --server http://admin:secret@127.0.0.1:5984
  SETTEE_SERVER=http://admin:secret@127.0.0.1:5984 settee status --watch
  settee status --json | jq '.docs[] | {doc_id, state}'")]
    Status {
        /// Server URL, with credentials if needed: http://admin:pass@127.0.0.1:5984
        #[arg(long, env = "SETTEE_SERVER", default_value = "http://127.0.0.1:5984")]
        server: String,
        /// Repeat every --interval seconds until interrupted.
        #[arg(long)]
        watch: bool,
        /// Seconds between rounds of --watch.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
    },
    /// Documents with conflicting versions: winner, losers, and the fields that differ.
    #[command(after_help = "Example:
  settee conflicts articles --server http://admin:secret@127.0.0.1:5984")]
    Conflicts {
        /// The database.
        db: String,
        /// Server URL, with credentials if needed: http://admin:pass@127.0.0.1:5984
        #[arg(long, env = "SETTEE_SERVER", default_value = "http://127.0.0.1:5984")]
        server: String,
    },
    /// Replication documents: check one, or apply it to a server's _replicator.
    #[command(after_help = "Examples:
  settee doc check replicator-docs/sharing-guide-push.json
  settee doc apply my-replication.json --server http://admin:secret@127.0.0.1:5984
  cat doc.json | settee doc check - --json")]
    Doc {
        #[command(subcommand)]
        action: DocAction,
    },
    /// Shares: selective one-way or two-way replication with a peer, as one object.
    #[command(after_help = "Examples:
  settee share create team --local notes --remote https://bob:pw@peer:6984/notes \\
      --selector '{\"team\": \"blue\"}' --mode read-write
  settee share list
  settee share stop team --purge --dry-run")]
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
    #[command(after_help = "Example:
  settee inspect --data ./data --json")]
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
    /// Validate a replication document as the scheduler would and explain each problem
    /// (exit code 1 when it has one). FILE `-` reads stdin.
    Check { file: PathBuf },
    /// Validate, then put the document into the server's _replicator database.
    Apply {
        /// The document (`-` reads stdin); its `_id`, else the file's name, names it.
        file: PathBuf,
        #[arg(long, env = "SETTEE_SERVER", default_value = "http://127.0.0.1:5984")]
        server: String,
    },
}

#[derive(Subcommand)]
enum ShareAction {
    /// Share part of a local database with a peer database.
    Create(settee::cli::ShareCreateArgs),
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
    let json = cli.json;
    let result = run(cli.command, json);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            use settee::cli::output;
            output::report_error(e.as_ref(), json);
            ExitCode::from(output::exit_code(e.as_ref()))
        }
    }
}

fn run(command: Command, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    use settee::cli;
    match command {
        Command::Serve(args) => serve(args),
        Command::Replicate(args) => cli::replicate(args, json),
        Command::Status {
            server,
            watch,
            interval,
        } => {
            let interval = std::time::Duration::try_from_secs_f64(interval.max(0.1))
                .map_err(|e| cli::output::Usage(format!("--interval: {e}")))?;
            cli::status(&server, json, watch, interval)
        }
        Command::Conflicts { db, server } => cli::conflicts(&server, &db, json),
        Command::Doc {
            action: DocAction::Check { file },
        } => match cli::doc_check(&file, json)? {
            true => Ok(()),
            // The problems are printed already: fail without another message.
            false => std::process::exit(1),
        },
        Command::Doc {
            action: DocAction::Apply { file, server },
        } => cli::doc_apply(&file, &server, json),
        Command::Share { action, server } => match action {
            ShareAction::Create(args) => cli::share_create(&server, &args, json),
            ShareAction::List => cli::share_show(&server, None, json),
            ShareAction::Show { id } => cli::share_show(&server, Some(&id), json),
            ShareAction::Stop { id, purge, dry_run } => {
                cli::share_stop(&server, &id, purge.as_deref(), dry_run, json)
            }
        },
        Command::Inspect { data } => inspect(data, json),
        Command::CrashWriter { data, batch } => settee::debug::crash_writer(&data, batch),
    }
}

fn inspect(data: PathBuf, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    use settee::say;
    let store = Store::open(&StoreConfig::new(&data))?;
    let mut dbs = Vec::new();
    for name in store.all_dbs()? {
        let info = store.db(&name)?.info()?;
        dbs.push((name, info));
    }
    if json {
        let dbs: Vec<_> = dbs
            .iter()
            .map(|(name, i)| serde_json::json!({"db_name": name, "doc_count": i.doc_count, "doc_del_count": i.doc_del_count, "update_seq": i.update_seq}))
            .collect();
        settee::cli::output::json_line(
            &serde_json::json!({"data": data, "uuid": store.uuid(), "dbs": dbs}),
        );
        return Ok(());
    }
    say!("settee store at {} (uuid {})", data.display(), store.uuid());
    for (name, info) in dbs {
        say!(
            "  {name}: {} docs, {} deleted, update_seq {}",
            info.doc_count,
            info.doc_del_count,
            info.update_seq
        );
    }
    Ok(())
}

fn serve(args: settee::cli::ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = args.config()?;
    let (data, admin) = (cfg.data.clone(), cfg.admin.clone());
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = settee::server::run(cfg).await.map_err(|e| e.to_string())?;
        // Startup lines go to stdout, which may be closed: never fail over it.
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "settee listening on {scheme}://{}/ (data in {})",
            server.addr,
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
        shutdown_signal().await;
        let _ = writeln!(out, "shutting down: finishing requests, checkpointing jobs");
        let _ = out.flush();
        server.shutdown().await.map_err(|e| e.to_string())?;
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
