//! Limits on what one request may ask of the server, each answered with a clear 4xx in
//! CouchDB's `{"error", "reason"}` shape before any work is done: the URL, the headers, the
//! body (`--max-body`), and changes feeds held open at once (`--max-feeds`). Selector depth
//! and regular expression size are limited where selectors are parsed (`mango`).
//!
//! hyper refuses still bigger requests itself, before settee sees them, with a bare status:
//! 414 past a 64 KiB URL, 431 past [`HYPER_MAX_BUF`] of headers.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use hyper::StatusCode;

use super::error::ApiError;
use crate::metrics::{FeedGuard, Metrics};

/// Longest URL (path and query) answered: PouchDB and CouchDB clients put long lists in POST
/// bodies well before this.
pub const MAX_URL: usize = 60 * 1024;

/// Most bytes of request headers (names and values) answered.
pub const MAX_HEADERS: usize = 64 * 1024;

/// Largest request body accepted by default (`--max-body`): CouchDB's `max_http_request_size`
/// is 4 GiB, but a body is held in memory whole here, so the default stays well below that.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

/// Changes feeds held open at once by default (`--max-feeds`): each holds a task and a socket,
/// so this bounds what idle clients can pin.
pub const DEFAULT_MAX_FEEDS: usize = 10_000;

/// hyper's read buffer per connection: a request head larger than this never reaches settee.
pub const HYPER_MAX_BUF: usize = 1024 * 1024;

fn uri_too_long(len: usize) -> ApiError {
    ApiError::new(
        StatusCode::URI_TOO_LONG,
        "uri_too_long",
        format!(
            "the URL is {len} bytes, more than the {MAX_URL} accepted: send long parameters (keys, doc_ids, revisions) in a POST body"
        ),
    )
}

fn headers_too_large(len: usize) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request_header_fields_too_large",
        format!("the request's headers are {len} bytes, more than the {MAX_HEADERS} accepted"),
    )
}

fn too_many_feeds(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        format!(
            "this server already holds {limit} open changes feeds (its --max-feeds): close some, retry later, or raise the limit"
        ),
    )
}

/// How much of a body past the limit is still read (and dropped) before answering 413: a
/// client still sending when the server closes gets a reset that can swallow the answer, so
/// the usual over-large request gets its reason; a huge one is cut off all the same.
const DRAIN_PAST_LIMIT: usize = 16 * 1024 * 1024;

/// Reads a request body of at most `limit` bytes; past it, 413 with a reason.
pub async fn read_body(
    mut body: hyper::body::Incoming,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    // One frame is kept as it came; more are copied into one buffer.
    let mut first: Option<bytes::Bytes> = None;
    let mut rest: Option<bytes::BytesMut> = None;
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::bad_request("could not read the request body"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > limit {
            if seen > limit.saturating_add(DRAIN_PAST_LIMIT) {
                break;
            }
            continue;
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut b = bytes::BytesMut::with_capacity(f.len() + data.len());
                b.extend_from_slice(f);
                b.extend_from_slice(&data);
                rest = Some(b);
            }
            (Some(_), Some(b)) => b.extend_from_slice(&data),
        }
    }
    if seen > limit {
        return Err(ApiError::too_large(limit));
    }
    Ok(match (first, rest) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => bytes::Bytes::new(),
    })
}

/// The length of a request's URL and headers, checked against the limits.
pub fn check_head(parts: &hyper::http::request::Parts) -> Result<(), ApiError> {
    let url = parts.uri.path().len() + parts.uri.query().map_or(0, |q| q.len() + 1);
    if url > MAX_URL {
        return Err(uri_too_long(url));
    }
    let headers: usize = parts
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers > MAX_HEADERS {
        return Err(headers_too_large(headers));
    }
    Ok(())
}

/// Changes feeds held open at once (longpoll, continuous, eventsource): each holds a
/// connection and a task, so past `--max-feeds` a new one is refused, not queued.
pub struct Feeds {
    slots: Arc<Semaphore>,
    limit: usize,
}

/// One open feed: its slot and its place in the metrics, both given back on drop.
pub struct OpenFeed {
    _slot: OwnedSemaphorePermit,
    _counted: FeedGuard,
}

impl Feeds {
    pub fn new(limit: usize) -> Feeds {
        let limit = limit.max(1);
        Feeds {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    pub fn open(&self, metrics: &Arc<Metrics>) -> Result<OpenFeed, ApiError> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| too_many_feeds(self.limit))?;
        Ok(OpenFeed {
            _slot: slot,
            _counted: metrics.feed_opened(),
        })
    }
}
