//! `/_utils/`: the status and editing page, served from assets compiled into the binary (no
//! build step, no CDN). The page is plain HTML and JavaScript over the public API (it logs in
//! with `POST /_session`, reads `_scheduler/*`, writes `_replicator`), so it can do nothing a
//! user could not do with curl, and the server holds no page-specific state.
//!
//! `SETTEE_WEB_DIR`, when set, serves the files from that folder instead: for working on the
//! page without rebuilding. It is read per request and only names files this module lists.

use hyper::{Method, StatusCode};

use super::body::Body;
use super::error::ApiError;
use super::request::{resp, Req, Resp};

/// Every asset: URL name, content type, embedded bytes.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("web/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("web/app.css"),
    ),
];

/// `GET /_utils[/name]`. `/_utils` redirects to `/_utils/` (as CouchDB does) so the page's
/// relative asset URLs resolve.
pub fn page(rest: &[&str], req: &Req) -> Result<Resp, ApiError> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(ApiError::method_not_allowed("GET,HEAD"));
    }
    let name = match rest {
        [] if !req.trailing_slash => {
            let mut r = resp(StatusCode::MOVED_PERMANENTLY, "text/plain", Body::empty());
            r.headers_mut()
                .insert(hyper::header::LOCATION, "/_utils/".parse().expect("static"));
            return Ok(r);
        }
        [] | ["index.html"] => "index.html",
        [name] => name,
        _ => "",
    };
    let (_, ctype, embedded) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::not_found(format!("no file {name:?} in /_utils")))?;
    let bytes = match std::env::var_os("SETTEE_WEB_DIR") {
        Some(dir) => std::fs::read(std::path::Path::new(&dir).join(name))
            .map_err(|e| ApiError::not_found(format!("SETTEE_WEB_DIR/{name}: {e}")))?,
        None => embedded.as_bytes().to_vec(),
    };
    let mut r = resp(StatusCode::OK, ctype, Body::from_bytes(bytes));
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        "no-cache".parse().expect("static"),
    );
    Ok(r)
}
