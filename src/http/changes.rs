//! `GET|POST /{db}/_changes`: normal, longpoll and continuous feeds.
//!
//! Sequences are opaque strings to clients (`"N"`); `since` accepts a number, such a string,
//! any `N-…` form, or `now`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::body::Body;
use super::db_api::seq_json;
use super::error::ApiError;
use super::request::{json_bytes_resp, obj, resp, write_json, Req, Resp};
use super::Ctx;
use crate::feed::FeedFilter;
use crate::store::{Change, Database, ReadOpts};

/// What a feed sends, parsed once.
struct Feed {
    since: u64,
    limit: Option<u64>,
    descending: bool,
    include_docs: bool,
    conflicts: bool,
    /// `attachments=true`: included documents carry their attachments' data inline.
    attachments: bool,
    /// `seq_interval=N`: only every Nth row carries its seq (the others `null`), as CouchDB.
    seq_interval: Option<u64>,
    filter: FeedFilter,
}

fn parse_seq(v: &str) -> Result<u64, ApiError> {
    crate::store::parse_seq(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Malformed sequence supplied in 'since' parameter: {v:?}"
        ))
    })
}

impl Feed {
    fn parse(req: &Req, db: &Database) -> Result<Feed, ApiError> {
        let body = if req.method == Method::POST {
            req.json()?
        } else {
            None
        };
        // A browser's EventSource reconnects with the id of the last event it saw, which
        // CouchDB lets override `since` (else a reconnect replays the whole feed).
        let last_event = (req.param("feed") == Some("eventsource"))
            .then(|| req.headers.get("last-event-id"))
            .flatten()
            .and_then(|v| v.to_str().ok());
        let since = match last_event.or(req.param("since")) {
            None => 0,
            Some("now") => db.update_seq(),
            Some(s) => parse_seq(s)?,
        };
        let mut doc_ids = None;
        let mut design_only = false;
        let mut selector = None;
        match req.param("filter") {
            None => {}
            Some("_doc_ids") => {
                let ids = match body.as_ref().and_then(|b| b.get("doc_ids")) {
                    Some(v) => Some(v.clone()),
                    None => req.json_param("doc_ids")?,
                };
                let ids = ids.and_then(|v| v.as_array().cloned()).ok_or_else(|| {
                    ApiError::bad_request("filter=_doc_ids needs a JSON array of `doc_ids`")
                })?;
                doc_ids = Some(
                    ids.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                );
            }
            Some("_design") => design_only = true,
            Some("_selector") => {
                let sel = body
                    .as_ref()
                    .and_then(|b| b.get("selector"))
                    .ok_or_else(|| {
                        ApiError::bad_request("Selector must be specified in POST payload")
                    })?;
                if !sel.is_object() {
                    return Err(ApiError::bad_request(
                        "Selector error: expected a JSON object",
                    ));
                }
                selector = Some(
                    crate::mango::Selector::parse(sel)
                        .map_err(|e| super::error::changes_selector_error(&e))?,
                );
            }
            // `ddoc/name` (and `_view` with `view=ddoc/name`): JavaScript settee does not
            // run. As CouchDB, a filter that is not there is 404; one that is, 501.
            Some(other) => {
                let (named, member) = match other {
                    "_view" => (req.param("view").unwrap_or_default(), "views"),
                    f => (f, "filters"),
                };
                let Some((ddoc, name)) = named.split_once('/') else {
                    return Err(ApiError::bad_request(format!(
                        "filter {other:?} is not a design document function: use ddoc/name, _selector, _doc_ids, _design or _view"
                    )));
                };
                let doc = db.get(&format!("_design/{ddoc}"), None, &ReadOpts::default())?;
                if doc[member].get(name).is_none() {
                    return Err(ApiError::not_found(format!(
                        "missing json key: {member}/{name} in _design/{ddoc}"
                    )));
                }
                return Err(ApiError::no_javascript(
                    member,
                    ddoc,
                    "use filter=_selector (a Mango selector), _doc_ids or _design",
                ));
            }
        }
        Ok(Feed {
            since,
            limit: req.uint("limit")?,
            descending: req.flag("descending")?,
            include_docs: req.flag("include_docs")?,
            conflicts: req.flag("conflicts")?,
            attachments: req.flag("attachments")?,
            seq_interval: req.uint("seq_interval")?.filter(|n| *n > 0),
            filter: FeedFilter {
                all_docs: req.param("style") == Some("all_docs"),
                doc_ids,
                design_only,
                selector,
            },
        })
    }

    /// Appends the row for a change whose listed revisions are `revs` (winner first), the
    /// document spliced in from the stored bytes of the document the scan read.
    fn write_row(
        &self,
        db: &Database,
        c: &Change,
        revs: &[String],
        show_seq: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), ApiError> {
        let winner = c
            .doc
            .winner()
            .ok_or_else(|| ApiError::not_found("missing"))?;
        let revs: Vec<Value> = revs.iter().map(|r| json!({ "rev": r })).collect();
        let seq = if show_seq {
            seq_json(c.seq)
        } else {
            Value::Null
        };
        let mut row = obj([
            ("seq", seq),
            ("id", Value::String(c.id.clone())),
            ("changes", Value::Array(revs)),
        ]);
        if winner.deleted() {
            row["deleted"] = json!(true);
        }
        write_json(out, &row)?;
        if self.include_docs {
            out.pop(); // the row's closing brace: the doc goes inside
            out.extend_from_slice(b",\"doc\":");
            let opts = ReadOpts {
                conflicts: self.conflicts,
                attachments: if self.attachments {
                    crate::store::AttMode::All
                } else {
                    crate::store::AttMode::Stubs
                },
                ..Default::default()
            };
            db.write_doc(out, &c.id, &c.doc, winner, &opts)?;
            out.push(b'}');
        }
        Ok(())
    }

    /// One pass over the index: appends to `out` the rows after `since` (at most `limit`
    /// passing changes), framed for the feed; `sent` counts rows across passes (the first row
    /// of an array has no separator; `seq_interval` counts from it). Returns the last
    /// sequence looked at and whether the pass stopped at `limit`, so more may follow.
    fn fill(
        &self,
        db: &Database,
        since: u64,
        limit: Option<u64>,
        framing: Framing,
        sent: &mut u64,
        out: &mut Vec<u8>,
    ) -> Result<(u64, bool), ApiError> {
        // A database deleted under an open feed: sled may still read the dropped tree as
        // empty, so the feed would wait for changes that never come.
        if db.is_dropped() {
            return Err(crate::store::StoreError::DbNotFound.into());
        }
        let scan = self.filter.scan(db, since, limit, self.descending)?;
        let limited = limit.is_some_and(|l| scan.hits.len() as u64 >= l);
        for (c, revs) in &scan.hits {
            // CouchDB's rule (`fabric_view_changes`): a row carries its seq when the limit
            // still to go is a multiple of the interval (no limit counts as 2^28).
            let show_seq = self.seq_interval.is_none_or(|n| {
                let to_go = self.limit.unwrap_or(1 << 28).saturating_sub(*sent);
                to_go.is_multiple_of(n)
            });
            match framing {
                Framing::Array if *sent > 0 => out.extend_from_slice(b",\n"),
                Framing::EventSource => out.extend_from_slice(b"data: "),
                _ => {}
            }
            self.write_row(db, c, revs, show_seq, out)?;
            match framing {
                Framing::Array => {}
                Framing::Lines => out.push(b'\n'),
                Framing::EventSource => {
                    out.extend_from_slice(b"\nid: ");
                    if show_seq {
                        out.extend_from_slice(crate::store::seq_string(c.seq).as_bytes());
                    }
                    out.extend_from_slice(b"\n\n");
                }
            }
            *sent += 1;
        }
        Ok((scan.last, limited))
    }
}

/// How rows are laid out: in a `results` array (normal and longpoll), one JSON object per line
/// (continuous), or as server-sent events (eventsource).
#[derive(Clone, Copy)]
enum Framing {
    Array,
    Lines,
    EventSource,
}

/// A normal feed goes out in chunks of about this many bytes, so a large database streams in
/// bounded memory instead of being built whole first.
const CHUNK: usize = 64 * 1024;
/// Passing changes taken per pass of a normal feed: bounds the records held at once, and
/// keeps a pass's rows (with documents, ~1 KiB each) near one chunk, so the buffer is not
/// regrown past it (with 1,000 per pass, growing it was a tenth of the feed's time).
const PAGE: u64 = 64;

/// The end of a normal or longpoll response, after its rows.
fn tail(out: &mut Vec<u8>, last: u64, pending: u64) {
    let end = json!({"last_seq": seq_json(last), "pending": pending}).to_string();
    out.extend_from_slice(b"\n],\n");
    // `{"last_seq":…}` without its opening brace continues the top-level object.
    out.extend_from_slice(&end.as_bytes()[1..]);
    out.push(b'\n');
}

/// Answers a normal feed: the first pass before the status is sent (so its errors get a
/// proper error response), the rest streamed by a task owned by the response body, which
/// ends when the feed does or the client goes away.
fn normal(feed: Feed, db: Arc<Database>) -> Result<Resp, ApiError> {
    let mut out = Vec::with_capacity(2 * CHUNK);
    out.extend_from_slice(b"{\"results\":[\n");
    let mut sent = 0;
    let (descending, limit) = (feed.descending, feed.limit);
    let page = move |taken: u64| match (descending, limit) {
        // A descending feed ignores `since`, so it cannot resume: one pass.
        (true, l) => l,
        (false, Some(l)) => Some(l.saturating_sub(taken).min(PAGE)),
        (false, None) => Some(PAGE),
    };
    let first = page(0);
    let (mut last, mut more) =
        feed.fill(&db, feed.since, first, Framing::Array, &mut sent, &mut out)?;
    let mut taken = first.unwrap_or(0);
    more &= feed.limit.is_none_or(|l| taken < l);
    if !more {
        tail(&mut out, last, db.pending(last));
        return Ok(json_bytes_resp(StatusCode::OK, out));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        loop {
            if out.len() >= CHUNK {
                let chunk = Bytes::from(std::mem::replace(&mut out, Vec::with_capacity(2 * CHUNK)));
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
            if !more {
                break;
            }
            let p = page(taken);
            match feed.fill(&db, last, p, Framing::Array, &mut sent, &mut out) {
                Ok((l, m)) => (last, more) = (l, m),
                Err(e) => {
                    // The status line is gone: all that is left is to cut the response short.
                    tracing::warn!(error = %e.reason, "changes feed ended early");
                    return;
                }
            }
            taken += p.unwrap_or(0);
            more &= feed.limit.is_none_or(|l| taken < l);
        }
        tail(&mut out, last, db.pending(last));
        let _ = tx.send(Bytes::from(out)).await;
    });
    Ok(resp(StatusCode::OK, "application/json", Body::Stream(rx)))
}

pub async fn handle(ctx: &Arc<Ctx>, db: &str, req: &Req) -> Result<Resp, ApiError> {
    if req.method != Method::GET && req.method != Method::POST && req.method != Method::HEAD {
        return Err(ApiError::method_not_allowed("GET,HEAD,POST"));
    }
    let db = ctx.store.db(db)?;
    let feed = Feed::parse(req, &db)?;
    let timeout = req.uint("timeout")?.map(Duration::from_millis);
    let heartbeat = match req.param("heartbeat") {
        Some("true") => Some(Duration::from_secs(60)),
        Some(_) => req
            .uint("heartbeat")?
            .map(|ms| Duration::from_millis(ms.max(100))),
        None => None,
    };
    match req.param("feed").unwrap_or("normal") {
        "normal" => normal(feed, db),
        "longpoll" => {
            let _open = ctx.feeds.open(&ctx.metrics)?;
            let mut rx = db.subscribe();
            let deadline = tokio::time::Instant::now() + timeout.unwrap_or(Duration::from_secs(60));
            loop {
                let mut out = b"{\"results\":[\n".to_vec();
                let mut sent = 0;
                let (last, _) = feed.fill(
                    &db,
                    feed.since,
                    feed.limit,
                    Framing::Array,
                    &mut sent,
                    &mut out,
                )?;
                if sent > 0 || feed.limit == Some(0) || tokio::time::Instant::now() >= deadline {
                    tail(&mut out, last, db.pending(last));
                    return Ok(json_bytes_resp(StatusCode::OK, out));
                }
                let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
            }
        }
        "continuous" | "eventsource" => {
            let eventsource = req.param("feed") == Some("eventsource");
            let (tx, rx) = mpsc::channel::<Bytes>(64);
            let mut shutdown = ctx.shutdown.clone();
            let open = ctx.feeds.open(&ctx.metrics)?;
            tokio::spawn(async move {
                let _open = open;
                // Owned by the response body: ends when the client goes away (hyper drops
                // the body, closing the channel, even while nothing is being sent), on
                // timeout, or on server shutdown. Waiting for the next change alone would keep
                // a dropped feed, and its slot under --max-feeds, until the 60 s timeout.
                let mut updates = db.subscribe();
                let mut since = feed.since;
                let mut sent = 0u64;
                // As CouchDB: without a heartbeat to keep it alive, a feed ends after 60 s
                // with its last_seq, and clients reconnect from there.
                let timeout = timeout.or(heartbeat.is_none().then_some(Duration::from_secs(60)));
                let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
                let framing = if eventsource {
                    Framing::EventSource
                } else {
                    Framing::Lines
                };
                loop {
                    let page = feed
                        .limit
                        .map_or(PAGE, |l| l.saturating_sub(sent).min(PAGE));
                    let mut out = Vec::new();
                    let (last, more) =
                        match feed.fill(&db, since, Some(page), framing, &mut sent, &mut out) {
                            Ok(r) => r,
                            Err(_) => break,
                        };
                    if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                        return;
                    }
                    since = last;
                    if feed.limit.is_some_and(|l| sent >= l) {
                        break;
                    }
                    if more {
                        continue;
                    }
                    let wait = heartbeat.unwrap_or(Duration::from_secs(3600));
                    tokio::select! {
                        r = updates.changed() => if r.is_err() { break },
                        _ = tokio::time::sleep(wait) => {
                            if heartbeat.is_some() && tx.send(Bytes::from_static(b"\n")).await.is_err() {
                                return;
                            }
                        }
                        _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
                        _ = super::stopped(&mut shutdown) => break,
                        _ = tx.closed() => return,
                    }
                }
                if !eventsource {
                    let _ = tx
                        .send(Bytes::from(format!(
                            "{}\n",
                            json!({"last_seq": seq_json(since), "pending": db.pending(since)})
                        )))
                        .await;
                }
            });
            let ct = if eventsource {
                "text/event-stream"
            } else {
                "application/json"
            };
            Ok(resp(StatusCode::OK, ct, Body::Stream(rx)))
        }
        other => Err(ApiError::bad_request(format!(
            "Invalid feed {other:?}: use normal, longpoll, continuous or eventsource"
        ))),
    }
}
