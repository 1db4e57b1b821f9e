//! A request as handlers see it: decoded path segments, query parameters, headers, whole body.

use bytes::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::Value;

use super::body::Body;
use super::error::ApiError;

pub struct Req {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether the path ended in `/` (only `/_utils` cares: its relative URLs need it).
    pub trailing_slash: bool,
    /// Who is asking (filled in by the router after authentication).
    pub user: super::auth::UserCtx,
}

pub type Resp = hyper::Response<Body>;

impl Req {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.param(name) {
            None => Ok(false),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "query_parse_error",
                format!("Invalid boolean parameter {name}={v:?}: use true or false"),
            )),
        }
    }

    pub fn uint(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.param(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "query_parse_error",
                        format!("Invalid value for {name}: {v:?} is not a non-negative integer"),
                    )
                })
            })
            .transpose()
    }

    /// A query parameter holding JSON (`startkey`, `open_revs`, `atts_since`, …).
    pub fn json_param(&self, name: &str) -> Result<Option<Value>, ApiError> {
        self.param(name)
            .map(|v| {
                serde_json::from_str(v).map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "query_parse_error",
                        format!("Invalid JSON in parameter {name}: {v:?}"),
                    )
                })
            })
            .transpose()
    }

    /// The body as JSON; an empty body is `None`. A POST must say `Content-Type:
    /// application/json`, as CouchDB's `validate_ctype` demands (415 otherwise): besides
    /// compatibility, a web page can send a cross-site POST without a preflight only with a
    /// form or text content type (or none), so this keeps pages a user visits from starting
    /// replications on a loopback server. PUT is not checked, as in CouchDB, where
    /// `curl -X PUT db/doc -d '{…}'` works.
    pub fn json(&self) -> Result<Option<Value>, ApiError> {
        if self.method == hyper::Method::POST {
            let ctype = self
                .headers
                .get(hyper::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or_default());
            let media = ctype
                .map(|ct| ct.split(';').next().unwrap_or_default().trim())
                .unwrap_or_default();
            if !media.eq_ignore_ascii_case("application/json") {
                let given = match ctype {
                    None => "none was given".to_owned(),
                    Some(_) => format!("not {media:?}"),
                };
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "bad_content_type",
                    format!("Content-Type must be application/json ({given}): add -H 'Content-Type: application/json'"),
                ));
            }
        }
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&self.body)?))
    }

    pub fn json_object(&self) -> Result<serde_json::Map<String, Value>, ApiError> {
        match self.json()? {
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(ApiError::bad_request("Request body must be a JSON object")),
            None => Err(ApiError::bad_request(
                "Request body must be a JSON object, not empty",
            )),
        }
    }

    pub fn accepts(&self, mime: &str) -> bool {
        self.headers
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(mime))
    }
}

/// Percent-decoding of one path segment or query component (`+` is a space in queries only).
/// `None` when the decoded bytes are not UTF-8: replacing them would make different ids equal.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `None` when a name or value is not UTF-8 once decoded.
pub fn parse_query(q: Option<&str>) -> Option<Vec<(String, String)>> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

/// A JSON object from owned members. `json!` serializes every interpolated value into a
/// fresh copy; this moves them, which matters where the members are documents (`_bulk_get`,
/// `_all_docs`, `_changes` with `include_docs`).
pub fn obj<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

pub fn json_resp(status: StatusCode, v: &Value) -> Resp {
    let mut bytes = Vec::with_capacity(128);
    if let Err(e) = write_json(&mut bytes, v) {
        // A `Value` always serializes; were it ever not to, the client gets the bug's 500
        // rather than an empty 200.
        return error_resp(&e);
    }
    bytes.push(b'\n');
    json_bytes_resp(status, bytes)
}

/// A JSON answer already serialized (responses that splice stored document bytes).
pub fn json_bytes_resp(status: StatusCode, bytes: Vec<u8>) -> Resp {
    resp(status, "application/json", Body::from_bytes(bytes))
}

/// An answer with CouchDB's usual headers: its content type and `must-revalidate`.
pub fn resp(status: StatusCode, content_type: &str, body: Body) -> Resp {
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "must-revalidate")
        .body(body)
        .unwrap_or_else(|_| hyper::Response::new(Body::empty()))
}

/// Appends a value's JSON to a response being written as bytes.
pub fn write_json(out: &mut Vec<u8>, v: &Value) -> Result<(), ApiError> {
    // Writing a `Value` into a `Vec` cannot fail; the error is mapped, not unwrapped.
    serde_json::to_writer(out, v).map_err(|e| {
        ApiError::from(crate::store::StoreError::Bug(format!(
            "a response does not serialize: {e}"
        )))
    })
}

pub fn error_resp(e: &ApiError) -> Resp {
    json_resp(
        e.status,
        &serde_json::json!({"error": e.error, "reason": e.reason}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_paths_and_queries() {
        let d = |s, plus| percent_decode(s, plus).unwrap();
        assert_eq!(d("a%2Fb", false), "a/b");
        assert_eq!(d("a+b", false), "a+b");
        assert_eq!(d("a+b", true), "a b");
        assert_eq!(d("100%", false), "100%");
        assert_eq!(d("%zz", false), "%zz");
        assert_eq!(d("%C3%A9", false), "é");
        assert_eq!(percent_decode("%E9", false), None, "Latin-1, not UTF-8");
        assert_eq!(parse_query(Some("a=%FF")), None);
        let q = parse_query(Some("a=1&b=%22x%22&c")).unwrap();
        assert_eq!(q[1], ("b".into(), "\"x\"".into()));
        assert_eq!(q[2], ("c".into(), "".into()));
    }
}
