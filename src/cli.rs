//! Commands beyond `serve`: `replicate` (a foreground replication with a progress bar),
//! `status` (the scheduler as a table) and `doc check|apply` (replication documents).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::replicator::{self, Env, JobState, Spec};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

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
        body["selector"] =
            serde_json::from_str(s).map_err(|e| format!("--selector is not valid JSON: {e}"))?;
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
            serde_json::from_str(f).map_err(|e| format!("--fields is not valid JSON: {e}"))?
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
pub fn replicate(a: ReplicateArgs) -> Res {
    let spec = Spec::parse(&replicate_body(&a)?)?;
    let needs_store = matches!(spec.source, replicator::Endpoint::Local(_))
        || matches!(spec.target, replicator::Endpoint::Local(_));
    let store = match (&a.data, needs_store) {
        (Some(d), true) => Some(Arc::new(crate::store::Store::open(&crate::store::StoreConfig::new(d))?)),
        (None, true) => return Err("a local database endpoint needs --data DIR (the store of a stopped settee), or use a URL".into()),
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
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    rt.block_on(async move {
        let state = Arc::new(JobState::default());
        let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
        let bar = (!a.quiet).then(|| {
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
        println!(
            "{} {} -> {}: docs_read {} docs_written {} doc_write_failures {} revisions_checked {} missing_revisions_found {} source_last_seq {} seconds {:.3}",
            if out.cancelled { "stopped" } else { "completed" },
            spec.source,
            spec.target,
            c.docs_read,
            c.docs_written,
            c.doc_write_failures,
            c.revisions_checked,
            c.missing_revisions_found,
            out.report.get("source_last_seq").cloned().unwrap_or(Value::Null),
            started.elapsed().as_secs_f64(),
        );
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
    crate::store::rev::hex(&Md5::digest(who.as_bytes()))
}

/// `settee doc check FILE`: validates as the scheduler would; lists each problem and hint.
pub fn doc_check(path: &std::path::Path) -> Res<bool> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
    let mut problems = crate::scheduler::docs::problems(&doc);
    if doc.get("_rev").is_some() {
        problems.push("`_rev` is set: a new document must not carry one (CouchDB answers conflict); remove it".into());
    }
    let mut warnings = Vec::new();
    if let Some(sel) = doc.get("selector") {
        warnings.extend(selector_warnings(sel));
    }
    if doc.get("selector").is_none() && doc.get("doc_ids").is_none() {
        warnings.push(
            "no `selector` or `doc_ids`: every document of the source is replicated".to_owned(),
        );
    }
    for w in &warnings {
        println!("warning: {w}");
    }
    if problems.is_empty() {
        let spec = Spec::parse(&doc)?;
        println!(
            "ok: {} -> {}{}",
            spec.source,
            spec.target,
            if spec.continuous { " (continuous)" } else { "" }
        );
        Ok(true)
    } else {
        for p in &problems {
            println!("error: {p}");
        }
        Ok(false)
    }
}

/// Mistakes a valid selector can still hide: an operator object nested under a field name,
/// which CouchDB reads as a sub-field path (`{"type": {"$or": [...]}}` looks inside `type`).
pub fn selector_warnings(sel: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(o) = sel.as_object() {
        for (field, v) in o {
            if field.starts_with('$') {
                continue;
            }
            if let Some(inner) = v.as_object() {
                for op in ["$or", "$and", "$nor"] {
                    if let Some(list) = inner.get(op).and_then(Value::as_array) {
                        if list
                            .iter()
                            .any(|x| x.as_object().is_some_and(|m| m.keys().any(|k| k == field)))
                        {
                            out.push(format!(
                                "selector field `{field}` holds `{op}` whose conditions name `{field}` again: this matches `{field}.{field}`, probably not what you meant; put `{op}` at the top level"
                            ));
                        }
                    }
                }
            }
        }
    }
    negations_on_missing(sel, &mut out);
    out
}

/// `$ne` and `$nin` only match documents that have the field (CouchDB's semantics, unlike
/// PouchDB's), which surprises people filtering out a flag most documents lack. An `$or` that
/// also has `{field: {"$exists": false}}` already covers them.
fn negations_on_missing(sel: &Value, out: &mut Vec<String>) {
    walk_negations(sel, &[], out)
}

fn walk_negations(sel: &Value, covered: &[&str], out: &mut Vec<String>) {
    match sel {
        Value::Array(list) => list.iter().for_each(|v| walk_negations(v, covered, out)),
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$or" {
                    let mut more = covered.to_vec();
                    for alt in v.as_array().into_iter().flatten() {
                        for (f, c) in alt.as_object().into_iter().flatten() {
                            if c.get("$exists") == Some(&Value::Bool(false)) {
                                more.push(f);
                            }
                        }
                    }
                    walk_negations(v, &more, out);
                    continue;
                }
                if k.starts_with('$') {
                    walk_negations(v, covered, out);
                    continue;
                }
                if covered.contains(&k.as_str()) {
                    continue;
                }
                for op in ["$ne", "$nin"] {
                    if let Some(arg) = v.as_object().and_then(|o| o.get(op)) {
                        out.push(format!(
                            "`{k}: {{{op}: {arg}}}` does not match documents without `{k}` (nor does `$not`); to include them write `{{\"$or\": [{{\"{k}\": {{\"$exists\": false}}}}, {{\"{k}\": {{\"{op}\": {arg}}}}}]}}`"
                        ));
                    }
                }
            }
        }
        _ => {}
    }
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
        Ok((status, v))
    })
}

/// `settee doc apply FILE --server URL`: checks the document, then puts it into `_replicator`.
pub fn doc_apply(path: &std::path::Path, server: &str) -> Res {
    if !doc_check(path)? {
        return Err("the document has problems; nothing was written".into());
    }
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
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
        println!(
            "written as _replicator/{id} (rev {})",
            v["rev"].as_str().unwrap_or("?")
        );
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

/// `settee status --server URL`: every replication document and job as a table.
pub fn status(server: &str) -> Res {
    let (s1, docs) = call(reqwest::Method::GET, server, "/_scheduler/docs", None)?;
    let (s2, jobs) = call(reqwest::Method::GET, server, "/_scheduler/jobs", None)?;
    if s1 != 200 || s2 != 200 {
        return Err(format!(
            "the server answered {s1}/{s2}: {} {}",
            docs["reason"].as_str().unwrap_or(""),
            jobs["reason"].as_str().unwrap_or("")
        )
        .into());
    }
    let empty = vec![];
    let docs = docs["docs"].as_array().unwrap_or(&empty);
    let rows: Vec<(&str, &Value)> = docs
        .iter()
        .map(|d| (d["doc_id"].as_str().unwrap_or("-"), d))
        .chain(
            jobs["jobs"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter(|j| j["doc_id"].is_null())
                .map(|j| ("(_replicate)", j)),
        )
        .collect();
    // The first column fits the longest document id, so the others stay aligned.
    let w = rows
        .iter()
        .map(|(n, _)| n.chars().count())
        .fold(24, usize::max);
    println!(
        "{:<w$} {:<11} {:>8} {:>8} {:>7} {:>10}  SOURCE -> TARGET / INFO",
        "DOC", "STATE", "WRITTEN", "PENDING", "ERRORS", "CHECKPOINT"
    );
    for (name, v) in rows {
        print_row(name, v, w);
    }
    Ok(())
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
    println!("{line}");
}

fn print_or_fail(status: u16, v: &Value) -> Res {
    if (200..300).contains(&status) {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    } else {
        Err(format!(
            "{} ({status}): {}",
            v["error"].as_str().unwrap_or("error"),
            v["reason"].as_str().unwrap_or("")
        )
        .into())
    }
}

/// `settee share create`: one `POST /_sharing`.
pub fn share_create(
    server: &str,
    id: &str,
    local: &str,
    remote: &str,
    selector: &str,
    mode: &str,
    all: bool,
) -> Res {
    let selector: Value =
        serde_json::from_str(selector).map_err(|e| format!("--selector is not valid JSON: {e}"))?;
    let body = json!({"id": id, "local": local, "remote": remote, "selector": selector, "mode": mode, "all": all});
    let (s, v) = call(reqwest::Method::POST, server, "/_sharing", Some(&body))?;
    print_or_fail(s, &v)
}

/// `settee share list` / `settee share show ID`.
pub fn share_show(server: &str, id: Option<&str>) -> Res {
    let path = match id {
        Some(id) => format!("/_sharing/{id}"),
        None => "/_sharing".to_owned(),
    };
    let (s, v) = call(reqwest::Method::GET, server, &path, None)?;
    print_or_fail(s, &v)
}

/// `settee share stop ID [--purge [all]] [--dry-run]`.
pub fn share_stop(server: &str, id: &str, purge: Option<&str>, dry_run: bool) -> Res {
    let mut path = format!("/_sharing/{id}?dry_run={dry_run}");
    if let Some(p) = purge {
        path.push_str(&format!("&purge={p}"));
    }
    let (s, v) = call(reqwest::Method::DELETE, server, &path, None)?;
    print_or_fail(s, &v)
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
            return print_or_fail(status, &v);
        }
        rows.extend(v["rows"].as_array().cloned().unwrap_or_default());
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&json!({"rows": rows}))?);
        return Ok(());
    }
    let width = rows
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::len))
        .max()
        .unwrap_or(2)
        .max(2);
    println!("{:width$}  WINNER / LOSERS  FIELDS THAT DIFFER", "ID");
    for r in &rows {
        let losers: Vec<&str> = r["losers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let fields: Vec<&str> = r["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "{:width$}  {} / {}  {}",
            r["id"].as_str().unwrap_or_default(),
            r["winner"].as_str().unwrap_or_default(),
            losers.join(", "),
            fields.join(", ")
        );
    }
    if rows.is_empty() {
        println!("(no conflicts)");
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
