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
use super::request::{json_resp, obj, Req, Resp};
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
    /// `seq_interval=N`: only every Nth row carries its seq (the others `null`), as CouchDB.
    seq_interval: Option<u64>,
    filter: FeedFilter,
}

fn parse_seq(v: &str) -> Result<u64, ApiError> {
    let head = v.trim_matches('"').split('-').next().unwrap_or("");
    head.parse().map_err(|_| {
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
        let since = match req.param("since") {
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
                let ids = ids
                    .and_then(|v| v.as_array().cloned())
                    .ok_or_else(|| ApiError::bad_request("filter=_doc_ids needs a JSON array of `doc_ids`"))?;
                doc_ids = Some(ids.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
            }
            Some("_design") => design_only = true,
            Some("_selector") => {
                let sel = body
                    .as_ref()
                    .and_then(|b| b.get("selector"))
                    .ok_or_else(|| ApiError::bad_request("Selector must be specified in POST payload"))?;
                if !sel.is_object() {
                    return Err(ApiError::bad_request("Selector error: expected a JSON object"));
                }
                selector = Some(
                    crate::mango::Selector::parse(sel)
                        .map_err(|e| ApiError::bad_request(format!("{}: {e}", e.error_tag())))?,
                );
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "filter {other:?} is not supported: settee runs no JavaScript; use _selector, _doc_ids or _design"
                )))
            }
        }
        Ok(Feed {
            since,
            limit: req.uint("limit")?,
            descending: req.flag("descending")?,
            include_docs: req.flag("include_docs")?,
            conflicts: req.flag("conflicts")?,
            seq_interval: req.uint("seq_interval")?.filter(|n| *n > 0),
            filter: FeedFilter {
                all_docs: req.param("style") == Some("all_docs"),
                doc_ids,
                design_only,
                selector,
            },
        })
    }

    /// The feed row for a change whose listed leaves are `revs` (winner first).
    fn row(&self, db: &Database, c: &Change, revs: &[usize]) -> Result<Value, ApiError> {
        let tree = &c.record.tree;
        let winner = tree
            .winner()
            .ok_or_else(|| ApiError::not_found("missing"))?;
        let revs: Vec<Value> = revs
            .iter()
            .map(|&i| json!({"rev": tree.node(i).rev.to_string()}))
            .collect();
        let mut row = obj([
            ("seq", seq_json(c.seq)),
            ("id", Value::String(c.id.clone())),
            ("changes", Value::Array(revs)),
        ]);
        if tree.node(winner).deleted {
            row["deleted"] = json!(true);
        }
        if self.include_docs {
            let opts = ReadOpts {
                conflicts: self.conflicts,
                ..Default::default()
            };
            row["doc"] = db.doc_json(&c.id, &c.record, winner, &opts)?;
        }
        Ok(row)
    }

    /// Rows after `since`, at most `limit`; returns them and the last sequence looked at.
    fn collect(
        &self,
        db: &Database,
        since: u64,
        limit: Option<u64>,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let scan = self.filter.scan(db, since, limit, self.descending)?;
        let mut rows = Vec::with_capacity(scan.hits.len());
        for (c, revs) in &scan.hits {
            let mut row = match self.row(db, c, revs) {
                Ok(r) => r,
                // Updated since the scan read it: it reappears at its new sequence.
                Err(ApiError { error: "raced", .. }) => continue,
                Err(e) => return Err(e),
            };
            if self
                .seq_interval
                .is_some_and(|n| !(rows.len() as u64 + 1).is_multiple_of(n))
            {
                row["seq"] = Value::Null;
            }
            rows.push(row);
        }
        Ok((rows, scan.last))
    }
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
        "normal" => {
            let (rows, last) = feed.collect(&db, feed.since, feed.limit)?;
            let pending = db.pending(last);
            Ok(json_resp(
                StatusCode::OK,
                &obj([
                    ("results", Value::Array(rows)),
                    ("last_seq", seq_json(last)),
                    ("pending", pending.into()),
                ]),
            ))
        }
        "longpoll" => {
            let mut rx = db.subscribe();
            let deadline = tokio::time::Instant::now() + timeout.unwrap_or(Duration::from_secs(60));
            loop {
                let (rows, last) = feed.collect(&db, feed.since, feed.limit)?;
                if !rows.is_empty() || tokio::time::Instant::now() >= deadline {
                    return Ok(json_resp(
                        StatusCode::OK,
                        &obj([
                            ("results", Value::Array(rows)),
                            ("last_seq", seq_json(last)),
                            ("pending", 0.into()),
                        ]),
                    ));
                }
                let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
            }
        }
        "continuous" | "eventsource" => {
            let eventsource = req.param("feed") == Some("eventsource");
            let (tx, rx) = mpsc::channel::<Bytes>(64);
            let mut shutdown = ctx.shutdown.clone();
            tokio::spawn(async move {
                // Owned by the response body: ends when the client goes away (send fails),
                // on timeout, or on server shutdown.
                let mut updates = db.subscribe();
                let mut since = feed.since;
                let mut sent = 0u64;
                let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
                loop {
                    let left = feed.limit.map(|l| l.saturating_sub(sent));
                    let (rows, last) = match feed.collect(&db, since, left) {
                        Ok(r) => r,
                        Err(_) => break,
                    };
                    for row in rows {
                        sent += 1;
                        let line = if eventsource {
                            format!("data: {row}\nid: {}\n\n", row["seq"].as_str().unwrap_or(""))
                        } else {
                            format!("{row}\n")
                        };
                        if tx.send(Bytes::from(line)).await.is_err() {
                            return;
                        }
                    }
                    since = last;
                    if feed.limit.is_some_and(|l| sent >= l) {
                        break;
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
                    }
                }
                if !eventsource {
                    let _ = tx
                        .send(Bytes::from(format!(
                            "{}\n",
                            json!({"last_seq": seq_json(since), "pending": 0})
                        )))
                        .await;
                }
            });
            let ct = if eventsource {
                "text/event-stream"
            } else {
                "application/json"
            };
            hyper::Response::builder()
                .status(StatusCode::OK)
                .header("content-type", ct)
                .header("cache-control", "must-revalidate")
                .body(Body::Stream(rx))
                .map_err(|_| ApiError::bad_request("could not start the feed"))
        }
        other => Err(ApiError::bad_request(format!(
            "Invalid feed {other:?}: use normal, longpoll, continuous or eventsource"
        ))),
    }
}
