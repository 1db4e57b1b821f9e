//! Test support: start a real settee server (in this process, or as a `settee serve` process)
//! on an ephemeral loopback port, and a small HTTP/1.1 client over std's TcpStream (enough for
//! JSON requests and chunked responses).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub struct Server {
    pub addr: String,
    pub dir: tempfile::TempDir,
    kind: Kind,
}

/// How a test server runs: inside the test's process (the default: no binary to start, and
/// nothing to leak if the test panics), or as a `settee serve` process for the tests that
/// kill it, signal it or read its log.
enum Kind {
    InProcess(InProcess),
    Process(Child),
}

/// A server run by [`settee::server::run`] on a runtime of its own, in a thread of its own.
/// [`Server::stop`] shuts it down in order (requests, job checkpoints, flush); dropping it
/// drops its runtime as a killed process would stop (a test's peers may be gone by then, and
/// a graceful shutdown would wait for them).
struct InProcess {
    /// Sends whether to shut down gracefully.
    stop: Option<std::sync::mpsc::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The address in `settee serve`'s first line (`settee listening on http://127.0.0.1:5984/ …`).
pub fn listening_addr(line: &str) -> Option<String> {
    let url = line.split_whitespace().nth(3)?;
    Some(
        url.trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned(),
    )
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// A server in this process, on a free loopback port, with `settee serve`'s flags.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        Server::start_in(dir, extra)
    }

    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Server::start_at(dir, "127.0.0.1:0", extra)
    }

    /// Starts in this process on a given address (to come back on the same port after a stop).
    pub fn start_at(dir: tempfile::TempDir, bind: &str, extra: &[&str]) -> Server {
        use clap::Parser;
        let mut args = vec!["serve", "--bind", bind, "--data"];
        let data = dir.path().to_str().unwrap().to_owned();
        args.push(&data);
        args.extend_from_slice(extra);
        let cfg = settee::cli::ServeArgs::try_parse_from(args)
            .unwrap()
            .config()
            .unwrap();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<bool>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let server = match rt.block_on(settee::server::run(cfg)) {
                Ok(s) => s,
                Err(e) => {
                    let _ = addr_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = addr_tx.send(Ok(server.addr));
            if stopped.recv().unwrap_or(false) {
                rt.block_on(server.shutdown()).unwrap();
            } else {
                drop(server);
                rt.shutdown_background();
            }
        });
        let addr = addr_rx
            .recv()
            .expect("the server thread")
            .expect("the server starts");
        Server {
            addr: addr.to_string(),
            dir,
            kind: Kind::InProcess(InProcess {
                stop: Some(stop),
                thread: Some(thread),
            }),
        }
    }

    /// A `settee serve` process (for tests that kill or signal it).
    pub fn process(extra: &[&str]) -> Server {
        Server::process_in(tempfile::tempdir().unwrap(), extra)
    }

    pub fn process_in(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        Server::spawn(dir, "127.0.0.1:0", extra, Stdio::inherit())
    }

    /// A `settee serve` process whose log (stderr) goes to `log`, for tests that read what
    /// it says.
    pub fn process_logging(log: &std::path::Path, extra: &[&str]) -> Server {
        Server::process_logging_with(log, extra, &[])
    }

    /// [`Server::process_logging`] with environment variables (`RUST_LOG`, say).
    pub fn process_logging_with(
        log: &std::path::Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Server {
        let file = std::fs::File::create(log).unwrap();
        Server::spawn_with(
            tempfile::tempdir().unwrap(),
            "127.0.0.1:0",
            extra,
            Stdio::from(file),
            envs,
        )
    }

    fn spawn(dir: tempfile::TempDir, bind: &str, extra: &[&str], stderr: Stdio) -> Server {
        Server::spawn_with(dir, bind, extra, stderr, &[])
    }

    fn spawn_with(
        dir: tempfile::TempDir,
        bind: &str,
        extra: &[&str],
        stderr: Stdio,
        envs: &[(&str, &str)],
    ) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_settee"))
            .args(["serve", "--bind", bind, "--data"])
            .arg(dir.path())
            .args(extra)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = listening_addr(&line).expect("listening line");
        Server {
            addr,
            dir,
            kind: Kind::Process(child),
        }
    }

    /// The process of a server started with [`Server::process`].
    pub fn child(&mut self) -> &mut Child {
        match &mut self.kind {
            Kind::Process(c) => c,
            Kind::InProcess(_) => {
                panic!("an in-process server has no process: start it with Server::process")
            }
        }
    }

    /// SIGKILLs a process server and waits for it: a crash, nothing flushed or checkpointed.
    pub fn kill(&mut self) {
        let c = self.child();
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Stops the server: an in-process one shuts down in order, a process is killed. Either
    /// way its data folder stays (for a restart with [`Server::start_at`]).
    pub fn stop(&mut self) {
        self.halt(true);
    }

    fn halt(&mut self, graceful: bool) {
        match &mut self.kind {
            Kind::Process(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Kind::InProcess(p) => p.stop(graceful),
        }
    }

    pub fn req(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, _, bytes) =
            self.raw(method, path, &[], body.map(|b| b.to_string().into_bytes()));
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }

    pub fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        raw(&self.addr, method, path, headers, body)
    }
}

/// A JSON request to a server at `addr` (usable from other threads than the server's owner).
pub fn req(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let (status, _, bytes) = raw(
        addr,
        method,
        path,
        &[],
        body.map(|b| b.to_string().into_bytes()),
    );
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// One HTTP/1.1 request with `Connection: close`; returns status, lowercased headers, body.
pub fn raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let raw = exchange(addr, method, path, headers, body).unwrap();
    parse_response(&raw)
}

/// The status of a `GET` to a server that may not be listening or answering yet: `None`
/// when the connection fails or closes before a whole response head arrived.
pub fn try_status(addr: &str, path: &str) -> Option<u16> {
    let raw = exchange(addr, "GET", path, &[], None).ok()?;
    raw.windows(4)
        .any(|w| w == b"\r\n\r\n")
        .then(|| parse_response(&raw).0)
}

fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        head.push_str("Content-Type: application/json\r\n");
    }
    // An empty value leaves the header out (a request with no content type at all).
    for (k, v) in headers.iter().filter(|(_, v)| !v.is_empty()) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(&body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(raw)
}

impl InProcess {
    fn stop(&mut self, graceful: bool) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(graceful);
        }
        if let Some(t) = self.thread.take() {
            // A panic in the server thread fails the test that owns it.
            if t.join().is_err() && !std::thread::panicking() {
                panic!("the in-process server panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt(false);
    }
}

/// Status, lowercased headers, body.
pub type Response = (u16, Vec<(String, String)>, Vec<u8>);

pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    (status, headers, body)
}

/// [`parse_response`] of an answer that may have been cut short: `None` unless its head and (for
/// a chunked body) its last chunk arrived.
pub fn parse_response_checked(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    head.split(' ').nth(1)?.parse::<u16>().ok()?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if chunked && !raw.ends_with(b"0\r\n\r\n") {
        return None;
    }
    Some(parse_response(raw))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let len =
            usize::from_str_radix(std::str::from_utf8(&b[..p]).unwrap().trim(), 16).unwrap_or(0);
        if len == 0 {
            break;
        }
        out.extend_from_slice(&b[p + 2..p + 2 + len]);
        b = &b[p + 2 + len + 2..];
    }
    out
}

pub fn node_dir() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        dir.join("node_modules").is_dir(),
        "tests/node/node_modules is missing: run `make node-deps` (npm ci) first"
    );
    dir
}

/// pouchdb-server 4.2.0 from the npm registry, in memory, on an ephemeral loopback port.
pub struct PouchServer(pub Child, pub String);

impl PouchServer {
    pub fn start(extra: &[&str]) -> PouchServer {
        let mut child = Command::new("node")
            .current_dir(node_dir())
            .arg("start-pouchdb-server.js")
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).expect("pouchdb-server url line");
        let url = v["url"].as_str().unwrap().to_owned();
        PouchServer(child, url)
    }

    pub fn addr(&self) -> &str {
        self.1.trim_start_matches("http://").trim_end_matches('/')
    }
}

impl Drop for PouchServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every document of a database (deleted ones included) with all its leaf revisions, each with
/// `_revisions`: what two replicas must agree on. Keys are ids; leaves sorted by rev.
pub fn trees(addr: &str, db: &str) -> std::collections::BTreeMap<String, Vec<Value>> {
    trees_with(addr, db, &[])
}

/// [`trees`] with extra request headers (credentials).
pub fn trees_with(
    addr: &str,
    db: &str,
    extra: &[(&str, &str)],
) -> std::collections::BTreeMap<String, Vec<Value>> {
    let (s, _, body) = raw(
        addr,
        "GET",
        &format!("/{db}/_changes?style=all_docs"),
        extra,
        None,
    );
    let ch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    assert_eq!(s, 200, "changes of {db}: {ch}");
    let mut out = std::collections::BTreeMap::new();
    for row in ch["results"].as_array().unwrap() {
        let id = row["id"].as_str().unwrap().to_owned();
        let (s, _, body) = raw(
            addr,
            "GET",
            &format!("/{db}/{id}?open_revs=all&revs=true"),
            &[extra, &[("Accept", "application/json")][..]].concat(),
            None,
        );
        assert_eq!(s, 200, "open_revs of {id}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        let mut leaves: Vec<Value> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                let mut d = x["ok"].clone();
                if let Some(atts) = d.get_mut("_attachments").and_then(Value::as_object_mut) {
                    for a in atts.values_mut() {
                        // Keep what identifies the content; servers differ in stub extras.
                        *a = serde_json::json!({"digest": a["digest"], "length": a["length"], "content_type": a["content_type"]});
                    }
                }
                d
            })
            .collect();
        leaves.sort_by(|a, b| a["_rev"].as_str().cmp(&b["_rev"].as_str()));
        out.insert(id, leaves);
    }
    out
}

/// Polls `f` until it returns `Some` or `secs` pass.
pub fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > end {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The server admin the replication, scheduler and sharing tests run with.
pub const ADMIN: &str = "adm:pw";

/// A server with [`ADMIN`] configured.
pub fn start_admin() -> Server {
    Server::start(&["--admin", ADMIN])
}

/// The `Authorization` header value for [`ADMIN`].
pub fn admin_basic() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(ADMIN)
    )
}

/// The one JSON client of the tests: a server's address and the credentials to send (none,
/// [`ADMIN`], or any Basic pair).
#[derive(Clone, Debug)]
pub struct Client {
    pub addr: String,
    auth: Option<String>,
}

impl Client {
    pub fn anonymous(addr: &str) -> Client {
        Client {
            addr: addr.to_owned(),
            auth: None,
        }
    }

    /// As [`ADMIN`].
    pub fn admin(addr: &str) -> Client {
        Client {
            addr: addr.to_owned(),
            auth: Some(admin_basic()),
        }
    }

    /// As `user:password`.
    pub fn basic(addr: &str, user_pw: &str) -> Client {
        use base64::Engine;
        Client {
            addr: addr.to_owned(),
            auth: Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(user_pw)
            )),
        }
    }

    /// With a given `Authorization` value, or none.
    pub fn with_authorization(addr: &str, auth: Option<String>) -> Client {
        Client {
            addr: addr.to_owned(),
            auth,
        }
    }

    /// The headers this client sends besides the request's own.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        self.auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default()
    }

    /// [`Client::req`] to a server that may go away: `None` when the connection fails or
    /// closes before a whole answer arrived.
    pub fn try_req(&self, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
        let raw = exchange(
            &self.addr,
            method,
            path,
            &self.headers(),
            body.map(|b| b.to_string().into_bytes()),
        )
        .ok()?;
        let (st, headers, b) = parse_response_checked(&raw)?;
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok());
        if len.is_some_and(|n| b.len() < n) {
            return None;
        }
        Some((st, serde_json::from_slice(&b).ok()?))
    }

    /// A JSON request; the body of the answer as JSON (`Null` when it is not JSON).
    pub fn req(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (st, _, b) = raw(
            &self.addr,
            method,
            path,
            &self.headers(),
            body.map(|b| b.to_string().into_bytes()),
        );
        (st, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }
}

/// A JSON request as [`ADMIN`].
pub fn areq(s: &Server, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    areq_at(&s.addr, method, path, body)
}

/// A JSON request as [`ADMIN`] to a server known by its address.
pub fn areq_at(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    Client::admin(addr).req(method, path, body)
}

/// The URL of database `db` on `s`, with [`ADMIN`]'s credentials in it.
pub fn admin_url(s: &Server, db: &str) -> String {
    format!("http://{ADMIN}@{}/{db}", s.addr)
}

/// Writes a document as [`ADMIN`] (`PUT /{db}/{_id}`); returns its new revision.
pub fn put_doc(s: &Server, db: &str, doc: Value) -> String {
    let id = doc["_id"].as_str().unwrap().to_owned();
    let (st, v) = areq(s, "PUT", &format!("/{db}/{id}"), Some(&doc));
    assert_eq!(st, 201, "{v}");
    v["rev"].as_str().unwrap().to_owned()
}

/// `GET /{db}/{id}` as [`ADMIN`].
pub fn get_doc(s: &Server, db: &str, id: &str) -> (u16, Value) {
    areq(s, "GET", &format!("/{db}/{id}"), None)
}

/// Edits a document as [`ADMIN`]: its current body with `changes` merged in.
pub fn edit_doc(s: &Server, db: &str, id: &str, changes: Value) -> String {
    let (_, mut doc) = get_doc(s, db, id);
    for (k, v) in changes.as_object().unwrap() {
        doc[k] = v.clone();
    }
    put_doc(s, db, doc)
}

/// Deletes a document plainly (`DELETE ?rev=`), as an application would.
pub fn delete_doc(s: &Server, db: &str, id: &str) {
    let (_, d) = get_doc(s, db, id);
    let rev = d["_rev"].as_str().unwrap();
    let (st, v) = areq(s, "DELETE", &format!("/{db}/{id}?rev={rev}"), None);
    assert!(st == 200 || st == 201, "{v}");
}

/// A database's `update_seq` as a number.
pub fn update_seq_of(s: &Server, db: &str) -> u64 {
    seq_number(&areq(s, "GET", &format!("/{db}"), None).1["update_seq"])
}

/// [`trees`] of an admin-only database.
pub fn admin_trees(s: &Server, db: &str) -> std::collections::BTreeMap<String, Vec<Value>> {
    trees_with(&s.addr, db, &[("Authorization", &admin_basic())])
}

/// Everything a database holds as one string, to search for leaked content: every leaf of
/// every document with its history, and `_changes` with bodies.
pub fn all_content(s: &Server, db: &str) -> String {
    let (_, ch) = areq(
        s,
        "GET",
        &format!("/{db}/_changes?include_docs=true&style=all_docs&conflicts=true"),
        None,
    );
    format!("{:?}{ch}", admin_trees(s, db))
}

/// Creates a `_users` account `name` with password `pw` (as [`ADMIN`]).
pub fn add_user(s: &Server, name: &str, pw: &str) {
    let (st, v) = areq(
        s,
        "PUT",
        &format!("/_users/org.couchdb.user:{name}"),
        Some(&serde_json::json!({"name": name, "password": pw, "roles": [], "type": "user"})),
    );
    assert!(st == 201 || st == 202, "{v}");
}

/// Makes `names` the only members of `db` (its `_security`).
pub fn set_members(s: &Server, db: &str, names: &[&str]) {
    let (st, v) = areq(
        s,
        "PUT",
        &format!("/{db}/_security"),
        Some(&serde_json::json!({"members": {"names": names}})),
    );
    assert_eq!(st, 200, "{v}");
}
pub mod couchdb;
pub mod fault_proxy;

/// The number of a sequence as settee writes it (`"4-settee"`), or a bare number.
pub fn seq_number(v: &Value) -> u64 {
    match v {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(s) => s.split('-').next().unwrap().parse().unwrap(),
        other => panic!("not a sequence: {other}"),
    }
}

/// How many `_changes` feeds (longpoll, continuous, eventsource) `addr` is holding open, from
/// its metrics: the sentinel that a feed request is in before the test acts on it.
pub fn open_feeds(addr: &str, headers: &[(&str, &str)]) -> u64 {
    let (st, _, body) = raw(addr, "GET", "/_node/_local/_prometheus", headers, None);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("settee_http_open_feeds "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Waits until `addr` holds at least `n` open feeds.
pub fn until_feeds_open(addr: &str, headers: &[(&str, &str)], n: u64) {
    assert!(
        wait_for(30, || (open_feeds(addr, headers) >= n).then_some(())).is_some(),
        "no feed opened on {addr}"
    );
}

/// Proves that a converged two-way pair on `db` between `a` and `b` is idle (no ping-pong)
/// without waiting for nothing to happen: a sentinel written on each side (`body`, which both
/// directions must carry) crosses once, and by the time both have crossed each side has
/// written exactly two documents, its own sentinel and the other's. A pair that kept writing
/// would show more.
pub fn assert_pair_idles(a: &Client, b: &Client, db: &str, body: &Value) {
    let seq = |c: &Client| seq_number(&c.req("GET", &format!("/{db}"), None).1["update_seq"]);
    let exists = |c: &Client, id: &str| c.req("GET", &format!("/{db}/{id}"), None).0 == 200;
    let before = (seq(a), seq(b));
    for (on, to, id) in [(a, b, "sentinel-from-a"), (b, a, "sentinel-from-b")] {
        let (st, v) = on.req("PUT", &format!("/{db}/{id}"), Some(body));
        assert_eq!(st, 201, "{v}");
        assert!(
            wait_for(60, || exists(to, id).then_some(())).is_some(),
            "{id} crosses"
        );
    }
    assert_eq!(
        (seq(a), seq(b)),
        (before.0 + 2, before.1 + 2),
        "an idle pair writes only the two sentinels on each side"
    );
}

/// A webhook receiver on a free loopback port: every POSTed JSON body arrives on the channel.
pub fn webhook() -> (String, std::sync::mpsc::Receiver<Value>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.to_ascii_lowercase();
                if let Some(v) = l.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    (url, rx)
}
