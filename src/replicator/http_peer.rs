//! A CouchDB-compatible database over HTTP(S) (settee, Apache CouchDB 2.x/3.x, pouchdb-server):
//! pooled clients shared by every job with the same connection settings, timeouts, and
//! per-request retries with exponential backoff.
//! Errors name the endpoint with its password redacted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Map, Value};

use super::endpoint::Remote;
use super::peer::{ChangesPage, ChangesReq, DbMeta, Missing, PushFilter};
use super::stats::JobState;
use super::unmatched::Leaf;
use super::{Endpoint, ReplError, Spec, Tls};

pub struct HttpPeer {
    client: reqwest::Client,
    /// Sent with every request: `Accept`, the endpoint's `headers` and its credentials.
    headers: HeaderMap,
    /// The database URL, ending in `/`.
    base: Url,
    name: String,
    retries: u32,
    timeout: Duration,
    /// At most `http_connections` requests of this job to this endpoint at once (CouchDB's
    /// per-job connection cap; the pool itself is shared by every job).
    connections: tokio::sync::Semaphore,
    /// Cleared when the server turns out not to take `POST _changes?filter=_selector`.
    selector_ok: AtomicBool,
    /// Cleared when the server has no `_bulk_get`.
    bulk_get_ok: AtomicBool,
    /// Whether `_bulk_get` with ids only answers every leaf (CouchDB, settee) rather than
    /// the winner alone (PouchDB): learnt from the server's welcome once.
    bulk_get_all_leaves: tokio::sync::OnceCell<bool>,
    /// The job whose status shows requests being retried.
    report: Option<Arc<JobState>>,
}

/// A response read whole.
struct Reply {
    status: StatusCode,
    body: bytes::Bytes,
}

impl Reply {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
    /// The peer's own words, cut short: they end up in status output and job history.
    fn reason(&self) -> String {
        match self.json() {
            Some(v) => match (v.get("error"), v.get("reason")) {
                (Some(e), Some(r)) => truncate(&format!(
                    "{}: {}",
                    e.as_str().unwrap_or(""),
                    r.as_str().unwrap_or(&r.to_string())
                )),
                _ => truncate(&String::from_utf8_lossy(&self.body)),
            },
            None => truncate(&String::from_utf8_lossy(&self.body)),
        }
    }
}

/// The most a peer's answer may hold, read into memory: four times the request size a settee
/// accepts by default. A peer sending more (a 400 MB `_changes` line took the server to 2 GB)
/// fails the request instead.
const MAX_REPLY_BYTES: usize = 256 << 20;

enum ReadError {
    TooLarge,
    Transport(String),
}

/// Reads an answer whole, up to [`MAX_REPLY_BYTES`].
async fn read_capped(mut resp: reqwest::Response) -> Result<bytes::Bytes, ReadError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_REPLY_BYTES as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ReadError::Transport(describe(e)))?
    {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

/// A transport error with its causes ("error sending request: … : operation timed out"):
/// reqwest's own message alone hides whether a peer timed out, reset or redirected in a loop.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.ends_with(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    if text.contains("certificate") {
        text.push_str(
            " (the peer's TLS certificate is not trusted: name its CA in the replication document as \"tls\": {\"ca\": \"<PEM>\"}, or for a test peer \"tls\": {\"verify\": false})",
        );
    }
    text
}

fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// One client (connection pool, TLS configuration) per connect timeout, shared by all jobs: a
/// client costs a few hundred KiB, which for 1,000 idle jobs was most of their memory.
/// Credentials and headers travel per request, never in the shared client. Its idle pool is
/// not capped by any one job's `http_connections`: shared by a thousand jobs, a cap of 20 made
/// nearly every request open a new connection. A job's own concurrency is bounded by its
/// workers, and idle connections close after reqwest's 90 s.
///
/// One client per (connect timeout, TLS options): a job's `"tls"` choices are the client's.
fn shared_client(connect_timeout: Duration, tls: &Tls) -> Result<reqwest::Client, ReplError> {
    use std::sync::{Mutex, OnceLock};
    type Clients = HashMap<(Duration, Tls), reqwest::Client>;
    static CLIENTS: OnceLock<Mutex<Clients>> = OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let key = (connect_timeout, tls.clone());
    if let Some(c) = clients.get(&key) {
        return Ok(c.clone());
    }
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("settee-replicator/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    if let Some(pem) = &tls.ca_pem {
        // Checked when the document was read; a bundle may hold several certificates.
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| ReplError::Spec(super::SpecError(format!("`tls.ca`: {e}"))))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if !tls.verify {
        b = b.danger_accept_invalid_certs(true);
    }
    let c = b
        .build()
        .map_err(|e| ReplError::Internal(format!("http client: {e}")))?;
    clients.insert(key, c.clone());
    Ok(c)
}

impl HttpPeer {
    pub fn new(
        r: &Remote,
        spec: &Spec,
        report: Option<Arc<JobState>>,
    ) -> Result<HttpPeer, ReplError> {
        let name = Endpoint::Remote(r.clone()).redacted();
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        for (k, v) in &r.headers {
            let (Ok(k), Ok(v)) = (
                HeaderName::try_from(k.as_str()),
                HeaderValue::try_from(v.as_str()),
            ) else {
                return Err(ReplError::Spec(super::SpecError(format!(
                    "{name}: header {k:?} is not a valid HTTP header"
                ))));
            };
            headers.insert(k, v);
        }
        let auth = match (&r.basic, &r.authorization) {
            (Some((u, p)), _) => {
                use base64::Engine;
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                ))
            }
            (None, Some(a)) => Some(a.clone()),
            _ => None,
        };
        if let Some(a) = auth {
            let mut v = HeaderValue::try_from(a).map_err(|_| {
                ReplError::Spec(super::SpecError(format!("{name}: invalid credentials")))
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let client = shared_client(spec.connection_timeout, &spec.tls)?;
        Ok(HttpPeer {
            client,
            headers,
            base: r.url.clone(),
            name,
            retries: spec.retries_per_request,
            timeout: spec.connection_timeout,
            connections: tokio::sync::Semaphore::new(spec.http_connections.max(1)),
            selector_ok: AtomicBool::new(true),
            bulk_get_ok: AtomicBool::new(spec.use_bulk_get),
            bulk_get_all_leaves: tokio::sync::OnceCell::new(),
            report,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn filters_selector(&self) -> bool {
        self.selector_ok.load(Relaxed)
    }

    fn url(&self, rel: &str) -> Result<Url, ReplError> {
        self.base
            .join(rel)
            .map_err(|e| ReplError::Internal(format!("url {rel}: {e}")))
    }

    /// The URL of a document, its id percent-encoded as one path segment (`_design/x` and
    /// `_local/x` keep their slash).
    fn doc_url(&self, id: &str) -> Result<Url, ReplError> {
        let mut u = self.base.clone();
        {
            let mut segs = u
                .path_segments_mut()
                .map_err(|_| ReplError::Internal("base url".into()))?;
            segs.pop_if_empty();
            match id.split_once('/') {
                Some((p @ ("_design" | "_local"), rest)) => {
                    segs.push(p).push(rest);
                }
                _ => {
                    segs.push(id);
                }
            }
        }
        Ok(u)
    }

    /// Sends a request, retrying connection failures, 5xx and 429 answers with exponential
    /// backoff (250 ms doubling, at most `retries_per_request` times).
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        extra_wait: Duration,
    ) -> Result<Reply, ReplError> {
        let _permit = self
            .connections
            .acquire()
            .await
            .map_err(|_| ReplError::Internal("connection limit closed".into()))?;
        let mut delay = Duration::from_millis(250);
        let what = format!("{method} {}", url.path());
        let mut attempt = 0;
        loop {
            let mut rb = self
                .client
                .request(method.clone(), url.clone())
                .headers(self.headers.clone())
                .timeout(self.timeout + extra_wait);
            if let Some(b) = &body {
                rb = rb.header(CONTENT_TYPE, "application/json").body(b.clone());
            }
            let mut hint = None;
            let res = match rb.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    hint = retry_after(resp.headers());
                    match read_capped(resp).await {
                        Ok(body) => Ok(Reply { status, body }),
                        Err(ReadError::Transport(e)) => Err(e),
                        Err(ReadError::TooLarge) => {
                            return Err(ReplError::NotCouch {
                                endpoint: self.name.clone(),
                                reason: format!(
                                    "its answer to {what} is larger than {} MiB",
                                    MAX_REPLY_BYTES >> 20
                                ),
                            })
                        }
                    }
                }
                Err(e) => Err(describe(e)),
            };
            let retry_reason = match res {
                Ok(r)
                    if !(r.status.is_server_error()
                        || r.status == StatusCode::TOO_MANY_REQUESTS) =>
                {
                    if let Some(st) = &self.report {
                        st.clear_trouble();
                    }
                    return Ok(r);
                }
                Ok(r) if attempt >= self.retries => {
                    return Err(ReplError::Http {
                        endpoint: self.name.clone(),
                        status: r.status.as_u16(),
                        request: what,
                        reason: r.reason(),
                    })
                }
                Err(e) if attempt >= self.retries => {
                    return Err(ReplError::Unreachable {
                        endpoint: self.name.clone(),
                        reason: e,
                    })
                }
                Ok(r) => format!("{} {}", r.status, r.reason()),
                Err(e) => e,
            };
            tracing::debug!(endpoint = %self.name, request = %what, reason = %retry_reason, "retrying");
            if let Some(st) = &self.report {
                st.note_retry(format!("{}: {what}: {retry_reason}", self.name));
            }
            attempt += 1;
            // A 429 or 503 may say when to come back (at most a minute is waited for).
            tokio::time::sleep(hint.map_or(delay, |h| h.min(Duration::from_secs(60)))).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    /// Maps a non-success answer to the error the job reports.
    fn fail(&self, r: &Reply, what: &str) -> ReplError {
        match r.status {
            StatusCode::UNAUTHORIZED => ReplError::Unauthorized {
                endpoint: self.name.clone(),
            },
            StatusCode::FORBIDDEN => ReplError::Forbidden {
                endpoint: self.name.clone(),
                what: what.to_owned(),
            },
            s => ReplError::Http {
                endpoint: self.name.clone(),
                status: s.as_u16(),
                request: what.to_owned(),
                reason: r.reason(),
            },
        }
    }

    fn json_of(&self, r: &Reply, what: &str) -> Result<Value, ReplError> {
        r.json().ok_or_else(|| ReplError::NotCouch {
            endpoint: self.name.clone(),
            reason: format!("{what} did not answer JSON"),
        })
    }

    /// `GET /` of the server (the database URL's parent): its `uuid`.
    pub async fn server_uuid(&self) -> Option<String> {
        self.welcome()
            .await?
            .get("uuid")?
            .as_str()
            .map(str::to_owned)
    }

    /// `GET /` of the server holding the database.
    async fn welcome(&self) -> Option<Value> {
        let root = self.base.join("../").ok()?;
        let r = self
            .send(Method::GET, root, None, Duration::ZERO)
            .await
            .ok()?;
        r.json()
    }

    pub async fn info(&self) -> Result<DbMeta, ReplError> {
        let r = self
            .send(Method::GET, self.base.clone(), None, Duration::ZERO)
            .await?;
        if r.status == StatusCode::NOT_FOUND {
            return Err(ReplError::DbNotFound {
                endpoint: self.name.clone(),
            });
        }
        if !r.status.is_success() {
            return Err(self.fail(&r, "read the database"));
        }
        let v = self.json_of(&r, "GET /db")?;
        let seq = v
            .get("update_seq")
            .cloned()
            .ok_or_else(|| ReplError::NotCouch {
                endpoint: self.name.clone(),
                reason: "the database information has no update_seq".into(),
            })?;
        // pouchdb-server (express-pouchdb) reports its storage adapter and cannot take a
        // selector by POST; filter on settee's side for it.
        if v.get("backend_adapter").is_some() || v.get("adapter").is_some() {
            self.selector_ok.store(false, Relaxed);
        }
        Ok(DbMeta {
            update_seq: seq,
            instance_start_time: v
                .get("instance_start_time")
                .map(|t| {
                    t.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| t.to_string())
                })
                .unwrap_or_default(),
        })
    }

    pub async fn create(&self, params: Option<&Map<String, Value>>) -> Result<(), ReplError> {
        let mut url = self.base.clone();
        if let Some(p) = params {
            let mut q = url.query_pairs_mut();
            for (k, v) in p {
                let v = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                q.append_pair(k, &v);
            }
        }
        let r = self.send(Method::PUT, url, None, Duration::ZERO).await?;
        if r.status.is_success() || r.status == StatusCode::PRECONDITION_FAILED {
            Ok(())
        } else {
            Err(self.fail(&r, "create the database"))
        }
    }

    pub async fn get_local(&self, id: &str) -> Result<Option<Value>, ReplError> {
        let r = self
            .send(
                Method::GET,
                self.doc_url(&format!("_local/{id}"))?,
                None,
                Duration::ZERO,
            )
            .await?;
        match r.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(self.json_of(&r, "GET _local")?)),
            _ => Err(self.fail(&r, "read checkpoints")),
        }
    }

    pub async fn put_local(&self, id: &str, mut body: Value) -> Result<(), ReplError> {
        let url = self.doc_url(&format!("_local/{id}"))?;
        for _ in 0..3 {
            if let Some(cur) = self.get_local(id).await? {
                if let Some(rev) = cur.get("_rev") {
                    body["_rev"] = rev.clone();
                }
            }
            let bytes = to_body(&body)?;
            let r = self
                .send(Method::PUT, url.clone(), Some(bytes), Duration::ZERO)
                .await?;
            if r.status.is_success() {
                return Ok(());
            }
            if r.status != StatusCode::CONFLICT {
                return Err(self.fail(&r, "write checkpoints"));
            }
        }
        Err(ReplError::Http {
            endpoint: self.name.clone(),
            status: 409,
            request: "PUT _local checkpoint".into(),
            reason: "conflict after 3 attempts".into(),
        })
    }

    pub async fn ensure_full_commit(&self) -> Result<String, ReplError> {
        let r = self
            .send(
                Method::POST,
                self.url("_ensure_full_commit")?,
                Some(b"{}".to_vec()),
                Duration::ZERO,
            )
            .await?;
        if !r.status.is_success() {
            return Err(self.fail(&r, "commit"));
        }
        let v = r.json().unwrap_or(Value::Null);
        Ok(v.get("instance_start_time")
            .map(|t| {
                t.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| t.to_string())
            })
            .unwrap_or_default())
    }

    pub async fn changes(&self, req: &ChangesReq<'_>) -> Result<ChangesPage, ReplError> {
        let mut url = self.url("_changes")?;
        let since = match req.since {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        let wait = req.wait.unwrap_or(Duration::ZERO);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair(
                "style",
                if req.winning_only {
                    "main_only"
                } else {
                    "all_docs"
                },
            );
            q.append_pair("since", &since);
            q.append_pair("limit", &req.limit.to_string());
            if req.wait.is_some() {
                q.append_pair("feed", "longpoll");
                q.append_pair("timeout", &wait.as_millis().to_string());
            }
            if req.include_docs {
                q.append_pair("include_docs", "true");
            }
            match req.filter {
                PushFilter::None => {}
                PushFilter::DocIds(_) => {
                    q.append_pair("filter", "_doc_ids");
                }
                PushFilter::Selector(_) => {
                    q.append_pair("filter", "_selector");
                }
            }
        }
        let body = match req.filter {
            PushFilter::None => None,
            PushFilter::DocIds(ids) => Some(json!({"doc_ids": ids})),
            PushFilter::Selector(s) => Some(json!({"selector": s.normalized()})),
        };
        let (method, body) = match body {
            Some(b) => (Method::POST, Some(to_body(&b)?)),
            None => (Method::GET, None),
        };
        let r = self.send(method, url, body, wait).await?;
        if r.status == StatusCode::NOT_FOUND {
            return Err(ReplError::DbNotFound {
                endpoint: self.name.clone(),
            });
        }
        if !r.status.is_success() {
            if matches!(req.filter, PushFilter::Selector(_)) && r.status.is_client_error() {
                // A server that does not understand the selector filter: filter on our side.
                self.selector_ok.store(false, Relaxed);
            }
            return Err(self.fail(&r, "read changes"));
        }
        let v = self.json_of(&r, "_changes")?;
        super::answers::changes_page(&v, req.since).map_err(|reason| ReplError::NotCouch {
            endpoint: self.name.clone(),
            reason: reason.into(),
        })
    }

    pub async fn revs_diff(
        &self,
        req: Vec<(String, Vec<String>)>,
    ) -> Result<Vec<Missing>, ReplError> {
        let body: Map<String, Value> = req
            .into_iter()
            .map(|(id, revs)| (id, json!(revs)))
            .collect();
        let r = self
            .send(
                Method::POST,
                self.url("_revs_diff")?,
                Some(to_body(&body)?),
                Duration::ZERO,
            )
            .await?;
        if !r.status.is_success() {
            return Err(self.fail(&r, "compare revisions (_revs_diff)"));
        }
        let v = self.json_of(&r, "_revs_diff")?;
        let strs = |x: Option<&Value>| -> Vec<String> {
            x.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(id, d)| Missing {
                        id: id.clone(),
                        missing: strs(d.get("missing")),
                        possible_ancestors: strs(d.get("possible_ancestors")),
                    })
                    .filter(|m| !m.missing.is_empty())
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn fetch(&self, missing: &[Missing]) -> Result<(Vec<Value>, u64), ReplError> {
        if self.bulk_get_ok.load(Relaxed) {
            match self.bulk_get(missing).await {
                Ok(r) => return Ok(r),
                Err(None) => self.bulk_get_ok.store(false, Relaxed),
                Err(Some(e)) => return Err(e),
            }
        }
        let mut docs = Vec::new();
        let mut not_found = 0;
        for m in missing {
            let (mut d, n) = self.open_revs(m).await?;
            docs.append(&mut d);
            not_found += n;
        }
        Ok((docs, not_found))
    }

    /// `Err(None)`: this server has no usable `_bulk_get`.
    async fn bulk_get(&self, missing: &[Missing]) -> Result<(Vec<Value>, u64), Option<ReplError>> {
        let mut reqs = Vec::new();
        for m in missing {
            for rev in &m.missing {
                let mut d = json!({"id": m.id, "rev": rev});
                if !m.possible_ancestors.is_empty() {
                    d["atts_since"] = json!(m.possible_ancestors);
                }
                reqs.push(d);
            }
        }
        let body = to_body(&json!({"docs": reqs}))?;
        let url = self
            .url("_bulk_get?revs=true&latest=true&attachments=true")
            .map_err(Some)?;
        let r = self
            .send(Method::POST, url, Some(body), Duration::ZERO)
            .await
            .map_err(Some)?;
        if matches!(r.status.as_u16(), 400 | 404 | 405 | 501) {
            return Err(None);
        }
        if !r.status.is_success() {
            return Err(Some(self.fail(&r, "read documents (_bulk_get)")));
        }
        let v = r.json().ok_or(None)?;
        super::answers::bulk_get_docs(&v).ok_or(None)
    }

    /// The fallback without `_bulk_get`: `GET /db/doc?open_revs=[…]&revs=true&latest=true`.
    async fn open_revs(&self, m: &Missing) -> Result<(Vec<Value>, u64), ReplError> {
        let mut url = self.doc_url(&m.id)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("revs", "true");
            q.append_pair("latest", "true");
            q.append_pair("attachments", "true");
            q.append_pair("open_revs", &json!(m.missing).to_string());
            if !m.possible_ancestors.is_empty() {
                q.append_pair("atts_since", &json!(m.possible_ancestors).to_string());
            }
        }
        let r = self.send(Method::GET, url, None, Duration::ZERO).await?;
        if r.status == StatusCode::NOT_FOUND {
            return Ok((Vec::new(), m.missing.len() as u64));
        }
        if !r.status.is_success() {
            return Err(self.fail(&r, "read documents (open_revs)"));
        }
        let v = self.json_of(&r, "open_revs")?;
        Ok(super::answers::open_revs_docs(&v))
    }

    /// `_bulk_get` with ids only (CouchDB answers every leaf, as `open_revs=all`); for what it
    /// cannot settle, `_all_docs` finds the documents held (deleted ones too) and
    /// `open_revs=all` reads them.
    pub async fn leaves(&self, ids: Vec<String>) -> Result<HashMap<String, Vec<Leaf>>, ReplError> {
        let mut out: HashMap<String, Vec<Leaf>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let add = |out: &mut HashMap<String, Vec<Leaf>>, d: &Value| {
            if let (Some(id), Some(l)) = (d.get("_id").and_then(Value::as_str), Leaf::from_doc(d)) {
                out.entry(id.to_owned()).or_default().push(l);
            }
        };
        // Ids `_bulk_get` could not settle (an empty object where CouchDB answers a tombstone
        // or `not_found`), or all of them on a server whose `_bulk_get` gives winners only.
        let mut unsure = ids.clone();
        let all_leaves = *self
            .bulk_get_all_leaves
            .get_or_init(|| async {
                self.welcome().await.is_some_and(|w| {
                    w.get("couchdb").is_some() && w.get("express-pouchdb").is_none()
                })
            })
            .await;
        if all_leaves && self.bulk_get_ok.load(Relaxed) {
            let reqs: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
            let body = serde_json::to_vec(&json!({"docs": reqs}))
                .map_err(|e| ReplError::Internal(e.to_string()))?;
            let r = self
                .send(
                    Method::POST,
                    self.url("_bulk_get?revs=true")?,
                    Some(body),
                    Duration::ZERO,
                )
                .await?;
            if r.status.is_success() {
                let v = self.json_of(&r, "_bulk_get")?;
                unsure.clear();
                let results = v.get("results").and_then(Value::as_array);
                for res in results.into_iter().flatten() {
                    let docs = res.get("docs").and_then(Value::as_array);
                    let mut settled = false;
                    for d in docs.into_iter().flatten() {
                        if let Some(doc) = d.get("ok") {
                            add(&mut out, doc);
                            settled = true;
                        } else if d["error"]["error"] == "not_found"
                            && d["error"]["reason"] != "deleted"
                        {
                            settled = true;
                        }
                    }
                    if let (false, Some(id)) = (settled, res.get("id").and_then(Value::as_str)) {
                        unsure.push(id.to_owned());
                    }
                }
                if unsure.is_empty() {
                    return Ok(out);
                }
            } else if !matches!(r.status.as_u16(), 400 | 404 | 405 | 501) {
                return Err(self.fail(&r, "read leaves (_bulk_get)"));
            }
        }
        let ids = unsure;
        let body = serde_json::to_vec(&json!({"keys": ids}))
            .map_err(|e| ReplError::Internal(e.to_string()))?;
        let r = self
            .send(
                Method::POST,
                self.url("_all_docs")?,
                Some(body),
                Duration::ZERO,
            )
            .await?;
        if !r.status.is_success() {
            return Err(self.fail(&r, "look documents up (_all_docs)"));
        }
        let v = self.json_of(&r, "_all_docs")?;
        let held: Vec<String> = v
            .get("rows")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|row| row.get("value").is_some())
            .filter_map(|row| row.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        for id in held {
            for doc in self.all_leaves(&id).await? {
                add(&mut out, &doc);
            }
        }
        Ok(out)
    }

    /// `GET /db/id?open_revs=all&revs=true`: every leaf, deleted ones too.
    async fn all_leaves(&self, id: &str) -> Result<Vec<Value>, ReplError> {
        let mut url = self.doc_url(id)?;
        url.query_pairs_mut()
            .append_pair("revs", "true")
            .append_pair("open_revs", "all");
        let r = self.send(Method::GET, url, None, Duration::ZERO).await?;
        if r.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !r.status.is_success() {
            return Err(self.fail(&r, "read leaves (open_revs=all)"));
        }
        let v = self.json_of(&r, "open_revs")?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.get("ok").cloned())
            .collect())
    }

    /// `POST _purge`; an empty request only checks this user may purge (server admins).
    pub async fn purge(&self, req: Vec<(String, Vec<String>)>) -> Result<(), ReplError> {
        let body: Map<String, Value> = req.into_iter().map(|(id, r)| (id, json!(r))).collect();
        let body = serde_json::to_vec(&body).map_err(|e| ReplError::Internal(e.to_string()))?;
        let r = self
            .send(
                Method::POST,
                self.url("_purge")?,
                Some(body),
                Duration::ZERO,
            )
            .await?;
        let what = "purge documents (_purge; `unmatched: \"purge\"` needs server admin credentials on the target)";
        // CouchDB 3.5 (and settee) answer 401 "You are not a server admin." to a user whose
        // credentials every other request accepted: not a wrong password, a missing right.
        if r.status == StatusCode::UNAUTHORIZED && r.reason().contains("not a server admin") {
            return Err(ReplError::Forbidden {
                endpoint: self.name.clone(),
                what: what.to_owned(),
            });
        }
        if !r.status.is_success() {
            return Err(self.fail(&r, what));
        }
        Ok(())
    }

    pub async fn write(&self, docs: Vec<Value>) -> Result<Vec<Value>, ReplError> {
        let mut errors = Vec::new();
        let mut stack = vec![docs];
        while let Some(batch) = stack.pop() {
            if batch.is_empty() {
                continue;
            }
            let body = serde_json::to_vec(&BulkDocs {
                new_edits: false,
                docs: &batch,
            })
            .unwrap_or_default();
            let r = self
                .send(
                    Method::POST,
                    self.url("_bulk_docs")?,
                    Some(body),
                    Duration::ZERO,
                )
                .await?;
            if r.status == StatusCode::PAYLOAD_TOO_LARGE {
                // Split in halves until each fits; a single document too large is a failure.
                if batch.len() == 1 {
                    let id = batch[0].get("_id").cloned().unwrap_or(Value::Null);
                    errors.push(json!({"id": id, "error": "too_large", "reason": "document too large for the target"}));
                    continue;
                }
                let mut batch = batch;
                let right = batch.split_off(batch.len() / 2);
                stack.push(right);
                stack.push(batch);
                continue;
            }
            if !r.status.is_success() && r.status != StatusCode::EXPECTATION_FAILED {
                return Err(self.fail(&r, "write documents (_bulk_docs)"));
            }
            let v = self.json_of(&r, "_bulk_docs")?;
            errors.extend(
                v.as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .filter(|e| e.get("error").is_some())
                    .cloned(),
            );
        }
        Ok(errors)
    }
}

/// A `_bulk_docs` body serialized straight from the batch (`json!` would copy every document
/// into a new value first).
#[derive(serde::Serialize)]
struct BulkDocs<'a> {
    new_edits: bool,
    docs: &'a [Value],
}

/// `Retry-After` in seconds (the HTTP-date form is not used by CouchDB-compatible servers).
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let secs: u64 = h
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// A request body's JSON bytes; a value that does not serialize is a bug, never an empty body.
fn to_body(v: &impl serde::Serialize) -> Result<Vec<u8>, ReplError> {
    serde_json::to_vec(v)
        .map_err(|e| ReplError::Internal(format!("a request body does not serialize: {e}")))
}
