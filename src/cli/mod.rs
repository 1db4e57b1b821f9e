//! Commands beyond `serve`: `replicate` (a foreground replication with a progress bar),
//! `status` (the scheduler as a table), `doc check|apply` (replication documents), `share …`
//! and `conflicts`. Every command prints for people by default and one JSON value per line
//! with `--json`; [`output`] holds the rules they share (closed pipes, exit codes).

pub mod output;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::replicator::{self, Env, JobState, Spec};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

use crate::say;
use output::{json_line, usage};

/// Options of `settee serve`: a server's [`Config`](crate::server::Config) as flags (and
/// `SETTEE_*` environment variables). A parser of its own so tests and embedders can build
/// the same configuration from the same words.
#[derive(clap::Parser, Debug)]
#[command(name = "serve")]
pub struct ServeArgs {
    /// Data directory.
    #[arg(long, env = "SETTEE_DATA", default_value = "data")]
    pub data: PathBuf,
    /// Address to listen on. Anything but loopback needs --admin.
    #[arg(long, env = "SETTEE_BIND", default_value = "127.0.0.1:5984")]
    pub bind: std::net::SocketAddr,
    /// Server admin as USER:PASS. Without it only loopback clients are served ("admin party").
    #[arg(long, env = "SETTEE_ADMIN")]
    pub admin: Option<String>,
    /// Largest request body accepted, in bytes (413 beyond).
    #[arg(long, env = "SETTEE_MAX_BODY", default_value_t = crate::http::limits::DEFAULT_MAX_BODY)]
    pub max_body: usize,
    /// Most changes feeds (longpoll, continuous, eventsource) open at once; more get 429.
    #[arg(long, env = "SETTEE_MAX_FEEDS", default_value_t = crate::http::limits::DEFAULT_MAX_FEEDS)]
    pub max_feeds: usize,
    /// Serve HTTPS with this certificate chain (PEM; the server's certificate first). Needs
    /// --tls-key.
    #[arg(long, env = "SETTEE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Free bytes kept on the data folder's filesystem: below, writes are refused with 507
    /// while reads and replications out go on (0: never refuse).
    #[arg(long, env = "SETTEE_DISK_RESERVE", default_value_t = crate::store::DEFAULT_DISK_RESERVE)]
    pub disk_reserve: u64,
    /// Memory for the store's page cache, in MiB. sled also keeps ~40-65 bytes per stored
    /// document outside it (ARCHITECTURE.md, "Memory").
    #[arg(long, env = "SETTEE_CACHE_MB", default_value_t = crate::store::DEFAULT_CACHE_MB)]
    pub cache_mb: u64,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SETTEE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Most replication jobs running at once; the rest wait as `pending` and rotate.
    #[arg(long, env = "SETTEE_MAX_JOBS", default_value_t = 500)]
    pub max_jobs: usize,
    /// Seconds between scheduler rotations of pending continuous jobs.
    #[arg(long, env = "SETTEE_SCHEDULER_INTERVAL", default_value_t = 60)]
    pub scheduler_interval: u64,
    /// Most jobs started or stopped per rotation.
    #[arg(long, env = "SETTEE_MAX_CHURN", default_value_t = 20)]
    pub max_churn: usize,
    /// SMTP relay for e-mail notifications: smtp://[user:pass@]host[:port] (plain, or
    /// STARTTLS with ?tls=required) or smtps://… (TLS).
    #[arg(long, env = "SETTEE_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Sender of e-mail notifications.
    #[arg(
        long,
        env = "SETTEE_SMTP_FROM",
        default_value = "settee <settee@localhost>"
    )]
    pub smtp_from: String,
}

impl ServeArgs {
    /// The server configuration these flags describe; a malformed `--admin` is a usage error.
    pub fn config(self) -> Result<crate::server::Config, output::Usage> {
        let admin = match self.admin {
            Some(a) => match a.split_once(':') {
                Some((u, p)) if !u.is_empty() && !p.is_empty() => {
                    Some((u.to_owned(), p.to_owned()))
                }
                _ => return Err(output::Usage("--admin must be USER:PASS".into())),
            },
            None => None,
        };
        Ok(crate::server::Config {
            data: self.data,
            bind: self.bind,
            admin,
            max_body_bytes: self.max_body,
            max_feeds: self.max_feeds,
            disk_reserve: self.disk_reserve,
            cache_bytes: self.cache_mb.saturating_mul(1024 * 1024),
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => Some(crate::server::TlsFiles { cert, key }),
                _ => None,
            },
            scheduler: crate::scheduler::SchedulerConfig {
                max_jobs: self.max_jobs.max(1),
                interval: Duration::from_secs(self.scheduler_interval.max(1)),
                max_churn: self.max_churn,
                smtp: self.smtp_url.map(|url| crate::scheduler::notify::Smtp {
                    url,
                    from: self.smtp_from,
                }),
                ..Default::default()
            },
        })
    }
}

/// Options of `settee replicate`.
#[derive(clap::Args)]
pub struct ReplicateArgs {
    pub source: String,
    pub target: String,
    /// A Mango selector (JSON): only matching documents are replicated.
    #[arg(long, conflicts_with = "doc_ids")]
    pub selector: Option<String>,
    /// Only these document ids, comma-separated.
    #[arg(long)]
    pub doc_ids: Option<String>,
    /// Keep following the source until Ctrl-C.
    #[arg(long)]
    pub continuous: bool,
    /// Create the target database if it is missing.
    #[arg(long)]
    pub create_target: bool,
    /// Start from this source sequence when there is no checkpoint.
    #[arg(long)]
    pub since: Option<String>,
    /// Send only these fields: comma-separated paths (`title,data.summary`), or JSON (a list
    /// of paths, or of {"selector", "fields"} rules).
    #[arg(long)]
    pub fields: Option<String>,
    /// What happens on the target to documents that stop matching: keep, delete or purge.
    #[arg(long)]
    pub unmatched: Option<String>,
    /// `source-wins`: after the push, delete the target's conflicting versions of the
    /// documents pushed, so the source's is the only one.
    #[arg(long)]
    pub resolve: Option<String>,
    /// Print what would be sent (each document and how it would land on the target) and
    /// write nothing to either side.
    #[arg(long, conflicts_with = "continuous")]
    pub dry_run: bool,
    /// Data directory, for local database names (the store must not be in use).
    #[arg(long, env = "SETTEE_DATA")]
    pub data: Option<std::path::PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options of `settee share create`.
#[derive(clap::Args)]
pub struct ShareCreateArgs {
    pub id: String,
    /// The local database.
    #[arg(long)]
    pub local: String,
    /// The peer database's URL (credentials in it are stored for the replications).
    #[arg(long)]
    pub remote: String,
    /// What to share: a Mango selector (JSON). Required.
    #[arg(long)]
    pub selector: String,
    /// read-only (push only) or read-write (both ways).
    #[arg(long, default_value = "read-only")]
    pub mode: String,
    /// Share every document: needed when the selector matches any document at all.
    #[arg(long)]
    pub all: bool,
}

/// Builds the replication body `settee replicate` stands for.
pub fn replicate_body(a: &ReplicateArgs) -> Res<Value> {
    let mut body = json!({"source": a.source, "target": a.target});
    if a.continuous {
        body["continuous"] = json!(true);
    }
    if a.create_target {
        body["create_target"] = json!(true);
    }
    if let Some(s) = &a.selector {
        body["selector"] = serde_json::from_str(s)
            .or_else(|e| usage(format!("--selector is not valid JSON: {e}")))?;
    }
    if let Some(ids) = &a.doc_ids {
        body["doc_ids"] = json!(ids
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>());
    }
    if let Some(s) = &a.since {
        body["since_seq"] = json!(s);
    }
    if let Some(f) = &a.fields {
        body["fields"] = if f.trim_start().starts_with('[') {
            serde_json::from_str(f)
                .or_else(|e| usage(format!("--fields is not valid JSON: {e}")))?
        } else {
            json!(f
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>())
        };
    }
    if let Some(u) = &a.unmatched {
        body["unmatched"] = json!(u);
    }
    if let Some(r) = &a.resolve {
        body["resolve"] = json!(r);
    }
    Ok(body)
}

/// Runs one replication in the foreground. Ctrl-C checkpoints and stops.
pub fn replicate(a: ReplicateArgs, json_mode: bool) -> Res {
    let spec = Spec::parse(&replicate_body(&a)?).or_else(|e| usage(e.to_string()))?;
    let needs_store = matches!(spec.source, replicator::Endpoint::Local(_))
        || matches!(spec.target, replicator::Endpoint::Local(_));
    let store = match (&a.data, needs_store) {
        (Some(d), true) => Some(Arc::new(crate::store::Store::open(&crate::store::StoreConfig::new(d))?)),
        (None, true) => return usage("a local database endpoint needs --data DIR (the store of a stopped settee), or use a URL"),
        _ => None,
    };
    let env = Env {
        server_uuid: store
            .as_ref()
            .map(|s| s.uuid().to_owned())
            .unwrap_or_else(client_uuid),
        store: store.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if a.dry_run {
        // Every page, until the source ends: the preview reads from the checkpoint on.
        let out = rt.block_on(crate::replicator::preview::preview(
            &spec, &env, None, 10_000,
        ))?;
        if json_mode {
            json_line(&out);
        } else {
            say!("{}", serde_json::to_string_pretty(&out)?);
        }
        return Ok(());
    }
    rt.block_on(async move {
        let state = Arc::new(JobState::default());
        let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
        let bar = (!a.quiet && !json_mode).then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} changes  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        let ticker = {
            let (state, bar) = (state.clone(), bar.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Some(b) = &bar {
                        let c = state.stats.snapshot();
                        let p = state.progress();
                        let done = c.revisions_checked;
                        b.set_length(done + p.changes_pending.unwrap_or(0));
                        b.set_position(done);
                        let rate = c.docs_written as f64 / started.elapsed().as_secs_f64().max(0.001);
                        b.set_message(format!("{} docs written, {rate:.0} docs/s", c.docs_written));
                    }
                }
            })
        };
        let started = std::time::Instant::now();
        let run = replicator::run(&spec, &env, state.clone(), cancel_rx);
        tokio::pin!(run);
        let result = tokio::select! {
            r = &mut run => r,
            _ = tokio::signal::ctrl_c() => {
                let _ = cancel_tx.send(true);
                run.await
            }
        };
        ticker.abort();
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        if let Some(s) = &store {
            s.flush()?;
        }
        let out = result?;
        let c = out.counts;
        let state = if out.cancelled { "stopped" } else { "completed" };
        let last_seq = out.report.get("source_last_seq").cloned().unwrap_or(Value::Null);
        let seconds = started.elapsed().as_secs_f64();
        if json_mode {
            json_line(&json!({
                "ok": true, "state": state,
                "source": spec.source.to_string(), "target": spec.target.to_string(),
                "stats": c.to_json(), "source_last_seq": last_seq, "seconds": seconds,
            }));
        } else {
            say!(
                "{state} {} -> {}: docs_read {} docs_written {} doc_write_failures {} revisions_checked {} missing_revisions_found {} source_last_seq {last_seq} seconds {seconds:.3}",
                spec.source,
                spec.target,
                c.docs_read,
                c.docs_written,
                c.doc_write_failures,
                c.revisions_checked,
                c.missing_revisions_found,
            );
        }
        Ok(())
    })
}

/// A replication run without a store still needs an id base; this one is stable per machine
/// user so `settee replicate` resumes from its own checkpoints.
fn client_uuid() -> String {
    use md5::{Digest, Md5};
    let who = format!(
        "settee-cli:{}:{}",
        std::env::var("USER").unwrap_or_default(),
        std::env::var("HOME").unwrap_or_default()
    );
    crate::ids::hex(&Md5::digest(who.as_bytes()))
}

/// `settee doc check FILE`: validates as the scheduler would; lists each problem and hint.
pub fn doc_check(path: &std::path::Path, json_mode: bool) -> Res<bool> {
    let doc = read_doc(path)?;
    let c = crate::scheduler::check::check(&doc);
    if json_mode {
        json_line(&c.to_json());
        return Ok(c.errors.is_empty());
    }
    for w in &c.warnings {
        say!("warning: {w}");
    }
    for p in &c.errors {
        say!("error: {p}");
    }
    if let Some(s) = &c.summary {
        say!("ok: {s}");
    }
    Ok(c.errors.is_empty())
}

/// A replication document from a file (`-` reads stdin).
fn read_doc(path: &std::path::Path) -> Res<Value> {
    let text = if path == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
    };
    serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON: {e}", path.display()).into())
}

/// A blocking JSON request to a settee/CouchDB server; credentials may be in the URL.
fn call(
    method: reqwest::Method,
    server: &str,
    path: &str,
    body: Option<&Value>,
) -> Res<(u16, Value)> {
    let mut url = reqwest::Url::parse(server).map_err(|e| {
        format!(
            "--server {}: {e}",
            crate::replicator::endpoint::redact_str(server)
        )
    })?;
    let auth = (!url.username().is_empty())
        .then(|| (url.username().to_owned(), url.password().map(str::to_owned)));
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let url = url.join(path)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut rb = client.request(method, url.clone());
        if let Some((u, p)) = auth {
            rb = rb.basic_auth(u, p);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(serde_json::to_vec(b)?);
        }
        let resp = rb.send().await.map_err(|e| {
            format!(
                "could not reach {}: {}",
                url.origin().ascii_serialization(),
                e.without_url()
            )
        })?;
        let status = resp.status().as_u16();
        let v = serde_json::from_slice(&resp.bytes().await?).unwrap_or(Value::Null);
        let origin = url.origin().ascii_serialization();
        match status {
            401 => Err(format!(
                "{origin} wants a server admin's name and password: put them in the server URL (--server http://USER:PASS@{host}) or in SETTEE_SERVER",
                host = url.host_str().unwrap_or("127.0.0.1").to_owned() + &url.port().map(|p| format!(":{p}")).unwrap_or_default()
            )
            .into()),
            403 => Err(format!(
                "{origin} refused: the user in --server is not allowed to ({}); use a server admin",
                v["reason"].as_str().unwrap_or("forbidden")
            )
            .into()),
            _ => Ok((status, v)),
        }
    })
}

/// `settee doc apply FILE --server URL`: checks the document, then puts it into `_replicator`.
pub fn doc_apply(path: &std::path::Path, server: &str, json_mode: bool) -> Res {
    let doc = read_doc(path)?;
    let c = crate::scheduler::check::check(&doc);
    if !c.errors.is_empty() {
        return Err(format!(
            "the document has problems; nothing was written: {}",
            c.errors.join("; ")
        )
        .into());
    }
    if !json_mode {
        for w in &c.warnings {
            say!("warning: {w}");
        }
    }
    let id = doc
        .get("_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .ok_or("the document has no _id")?;
    let enc: String = id
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, v) = call(
        reqwest::Method::PUT,
        server,
        &format!("/_replicator/{enc}"),
        Some(&doc),
    )?;
    if (200..300).contains(&status) {
        let rev = v["rev"].as_str().unwrap_or("?");
        if json_mode {
            json_line(&json!({"ok": true, "id": id, "rev": rev, "warnings": c.warnings}));
        } else {
            say!("written as _replicator/{id} (rev {rev})");
        }
        Ok(())
    } else {
        Err(format!(
            "the server refused it ({status}): {} {}",
            v["error"].as_str().unwrap_or(""),
            v["reason"].as_str().unwrap_or("")
        )
        .into())
    }
}

/// `settee status`: every replication document and `/_replicate` job, as a table or (with
/// `--json`) one JSON object `{"docs": [...], "jobs": [...]}`; `--watch` repeats it every
/// `interval` (a redrawn screen on a terminal, one block or JSON line per round otherwise).
pub fn status(server: &str, json_mode: bool, watch: bool, interval: Duration) -> Res {
    loop {
        let (docs, jobs) = scheduler_status(server)?;
        if json_mode {
            json_line(&json!({"docs": docs, "jobs": jobs}));
        } else {
            if watch && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                // Clear the screen and go home: only ever to a terminal.
                print!("\x1b[2J\x1b[H");
            }
            if watch {
                say!("{}", crate::ids::iso8601(std::time::SystemTime::now()));
            }
            print_status(&docs, &jobs);
        }
        if !watch {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

/// `_scheduler/docs` and the `/_replicate` jobs of `_scheduler/jobs`.
fn scheduler_status(server: &str) -> Res<(Vec<Value>, Vec<Value>)> {
    let (s1, docs) = call(reqwest::Method::GET, server, "/_scheduler/docs", None)?;
    let (s2, jobs) = call(reqwest::Method::GET, server, "/_scheduler/jobs", None)?;
    for (s, v) in [(s1, &docs), (s2, &jobs)] {
        if s != 200 {
            return Err(failure(s, v).into());
        }
    }
    let list = |v: &Value, k: &str| v[k].as_array().cloned().unwrap_or_default();
    let jobs = list(&jobs, "jobs")
        .into_iter()
        .filter(|j| j["doc_id"].is_null())
        .collect();
    Ok((list(&docs, "docs"), jobs))
}

fn print_status(docs: &[Value], jobs: &[Value]) {
    let rows: Vec<(&str, &Value)> = docs
        .iter()
        .map(|d| (d["doc_id"].as_str().unwrap_or("-"), d))
        .chain(jobs.iter().map(|j| ("(_replicate)", j)))
        .collect();
    // The first column fits the longest document id, so the others stay aligned.
    let w = rows
        .iter()
        .map(|(n, _)| n.chars().count())
        .fold(24, usize::max);
    say!(
        "{:<w$} {:<11} {:>8} {:>8} {:>7} {:>10}  SOURCE -> TARGET / INFO",
        "DOC",
        "STATE",
        "WRITTEN",
        "PENDING",
        "ERRORS",
        "CHECKPOINT"
    );
    for (name, v) in rows {
        print_row(name, v, w);
    }
}

/// A server's error answer as one sentence.
fn failure(status: u16, v: &Value) -> String {
    format!(
        "{} ({status}): {}",
        v["error"].as_str().unwrap_or("error"),
        v["reason"].as_str().unwrap_or("")
    )
}

fn print_row(name: &str, v: &Value, w: usize) {
    let info = &v["info"];
    let n = |k: &str| {
        info.get(k)
            .map(|x| x.to_string())
            .unwrap_or_else(|| "-".into())
    };
    let cp = info
        .get("checkpointed_source_seq")
        .and_then(|s| s.as_str().map(str::to_owned).or(Some(s.to_string())))
        .unwrap_or_else(|| "-".into());
    let cp: String = cp.chars().take(10).collect();
    let mut line = format!(
        "{:<w$} {:<11} {:>8} {:>8} {:>7} {:>10}  {} -> {}",
        name,
        v["state"].as_str().unwrap_or("?"),
        n("docs_written"),
        n("changes_pending"),
        v.get("error_count")
            .map(|x| x.to_string())
            .unwrap_or_else(|| "0".into()),
        cp,
        v["source"].as_str().unwrap_or("?"),
        v["target"].as_str().unwrap_or("?"),
    );
    if let Some(e) = info.get("error").and_then(Value::as_str) {
        line.push_str(&format!("\n{:<w$} error: {e}", ""));
    }
    say!("{line}");
}

/// A server's answer: printed (compact JSON with `--json`, indented otherwise) when it is a
/// success, else the error it names.
fn print_or_fail(status: u16, v: &Value, json_mode: bool) -> Res {
    if !(200..300).contains(&status) {
        return Err(failure(status, v).into());
    }
    if json_mode {
        json_line(v);
    } else {
        say!("{}", serde_json::to_string_pretty(v)?);
    }
    Ok(())
}

/// `settee share create`: one `POST /_sharing`.
pub fn share_create(server: &str, a: &ShareCreateArgs, json_mode: bool) -> Res {
    let selector: Value = serde_json::from_str(&a.selector)
        .or_else(|e| usage(format!("--selector is not valid JSON: {e}")))?;
    let body = json!({"id": a.id, "local": a.local, "remote": a.remote, "selector": selector, "mode": a.mode, "all": a.all});
    let (s, v) = call(reqwest::Method::POST, server, "/_sharing", Some(&body))?;
    print_or_fail(s, &v, json_mode)
}

/// `settee share list` / `settee share show ID`.
pub fn share_show(server: &str, id: Option<&str>, json_mode: bool) -> Res {
    let path = match id {
        Some(id) => format!("/_sharing/{}", url_escape(id)),
        None => "/_sharing".to_owned(),
    };
    let (s, v) = call(reqwest::Method::GET, server, &path, None)?;
    if json_mode || id.is_some() || !(200..300).contains(&s) {
        return print_or_fail(s, &v, json_mode);
    }
    let shares = v["shares"].as_array().cloned().unwrap_or_default();
    let w = shares
        .iter()
        .filter_map(|x| x["id"].as_str().map(str::len))
        .fold(8, usize::max);
    say!(
        "{:<w$} {:<10} {:>7} {:>9}  DIRECTIONS (state, docs written)",
        "SHARE",
        "MODE",
        "SHARED",
        "CONFLICTS"
    );
    for sh in &shares {
        let dirs: Vec<String> = sh["directions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                format!(
                    "{} {} -> {} ({}, {})",
                    d["direction"].as_str().unwrap_or("?"),
                    d["source"].as_str().unwrap_or("?"),
                    d["target"].as_str().unwrap_or("?"),
                    d["state"].as_str().unwrap_or("?"),
                    d["docs_written"]
                )
            })
            .collect();
        let conflicts = sh["conflicts"]
            .as_array()
            .map_or_else(|| sh["conflicts"].to_string(), |c| c.len().to_string());
        say!(
            "{:<w$} {:<10} {:>7} {:>9}  {}",
            sh["id"].as_str().unwrap_or("?"),
            sh["mode"].as_str().unwrap_or("?"),
            sh["docs_shared"],
            conflicts,
            dirs.join("; ")
        );
    }
    if shares.is_empty() {
        say!("(no shares)");
    }
    Ok(())
}

/// `settee share stop ID [--purge [all]] [--dry-run]`.
pub fn share_stop(
    server: &str,
    id: &str,
    purge: Option<&str>,
    dry_run: bool,
    json_mode: bool,
) -> Res {
    let mut path = format!("/_sharing/{}?dry_run={dry_run}", url_escape(id));
    if let Some(p) = purge {
        path.push_str(&format!("&purge={p}"));
    }
    let (s, v) = call(reqwest::Method::DELETE, server, &path, None)?;
    print_or_fail(s, &v, json_mode)
}

/// `settee conflicts DB`: every document of DB with conflicting versions, its winner, the
/// losing versions and the top-level fields that differ (all pages of `GET /{db}/_conflicts`).
pub fn conflicts(server: &str, db: &str, as_json: bool) -> Res {
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/{}/_conflicts?limit=1000", url_escape(db));
        if let Some(a) = &after {
            path.push_str(&format!("&after={}", url_escape(a)));
        }
        let (status, v) = call(reqwest::Method::GET, server, &path, None)?;
        if !(200..300).contains(&status) {
            return print_or_fail(status, &v, as_json);
        }
        rows.extend(v["rows"].as_array().cloned().unwrap_or_default());
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    if as_json {
        json_line(&json!({"rows": rows}));
        return Ok(());
    }
    let width = rows
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::len))
        .max()
        .unwrap_or(2)
        .max(2);
    say!("{:width$}  WINNER / LOSERS  FIELDS THAT DIFFER", "ID");
    for r in &rows {
        let strings = |k: &str| -> Vec<&str> {
            r[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect()
        };
        let (losers, fields) = (strings("losers"), strings("fields"));
        say!(
            "{:width$}  {} / {}  {}",
            r["id"].as_str().unwrap_or_default(),
            r["winner"].as_str().unwrap_or_default(),
            losers.join(", "),
            fields.join(", ")
        );
    }
    if rows.is_empty() {
        say!("(no conflicts)");
    }
    Ok(())
}

/// Percent-encodes a query value.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::ServeArgs;
    use clap::Parser;

    #[test]
    fn serve_flags_size_the_store() {
        let parse = |args: &[&str]| {
            ServeArgs::try_parse_from([&["serve"], args].concat())
                .expect("flags parse")
                .config()
                .expect("a configuration")
        };
        let default = parse(&[]);
        assert_eq!(default.cache_bytes, 256 << 20);
        assert_eq!(default.disk_reserve, 64 << 20);
        let small = parse(&["--cache-mb", "16", "--disk-reserve", "0"]);
        assert_eq!(small.cache_bytes, 16 << 20);
        assert_eq!(small.disk_reserve, 0);
        assert!(ServeArgs::try_parse_from(["serve", "--cache-mb", "lots"]).is_err());
    }
}
