//! A replication endpoint: a local database name or a CouchDB-compatible database URL with
//! optional headers and Basic credentials. Credentials never leave this type unredacted except
//! as the request header the HTTP peer sends.

use reqwest::Url;
use serde_json::{json, Map, Value};

use super::SpecError;

#[derive(Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A database of this server's store.
    Local(String),
    Remote(Remote),
}

#[derive(Clone, PartialEq, Eq)]
pub struct Remote {
    /// The database URL without userinfo, always ending in `/`.
    pub url: Url,
    /// Extra request headers, minus `Authorization` (kept in `basic` or `authorization`).
    pub headers: Vec<(String, String)>,
    pub basic: Option<(String, String)>,
    /// An `Authorization` header given verbatim that is not Basic (e.g. a bearer token).
    pub authorization: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn bad(which: &str, msg: impl std::fmt::Display) -> SpecError {
    SpecError(format!("`{which}`: {msg}"))
}

impl Endpoint {
    /// Parses `source`/`target` as CouchDB accepts them: a URL string, an object
    /// `{"url", "headers", "auth": {"basic": {"username", "password"}}}`, or (settee only) the
    /// name of a local database. Credential precedence as CouchDB: `auth.basic`, then URL
    /// userinfo, then an `Authorization: Basic` header.
    pub fn parse(v: &Value, which: &str) -> Result<Endpoint, SpecError> {
        let (url, headers, auth) = match v {
            Value::String(s) => (s.as_str(), None, None),
            Value::Object(o) => {
                let url = o.get("url").and_then(Value::as_str).ok_or_else(|| {
                    bad(which, "an endpoint object needs a non-empty string `url`")
                })?;
                (url, o.get("headers"), o.get("auth"))
            }
            Value::Null => {
                return Err(bad(
                    which,
                    "is missing; give a database URL or a local database name",
                ))
            }
            _ => return Err(bad(which, "must be a URL string or an object with a `url`")),
        };
        if url.is_empty() {
            return Err(bad(which, "the URL is empty"));
        }
        let lower = url.to_ascii_lowercase();
        if !lower.starts_with("http://") && !lower.starts_with("https://") {
            if lower.contains("://") {
                return Err(bad(
                    which,
                    format!(
                        "only http and https endpoints are supported, not {:?}",
                        redact_str(url)
                    ),
                ));
            }
            if headers.is_some() || auth.is_some() {
                return Err(bad(which, "a local database takes no `headers` or `auth`"));
            }
            crate::store::validate_db_name(url).map_err(|_| {
                bad(
                    which,
                    format!("{url:?} is neither an http(s) URL nor a valid database name"),
                )
            })?;
            return Ok(Endpoint::Local(url.to_owned()));
        }
        let mut parsed = Url::parse(url).map_err(|e| {
            bad(
                which,
                format!("endpoint has an invalid url ({e}): {}", redact_str(url)),
            )
        })?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad(which, "endpoint has an invalid url: no host"));
        }
        let mut basic = None;
        if !parsed.username().is_empty() {
            let user = pct_decode(parsed.username());
            let pass = pct_decode(parsed.password().unwrap_or(""));
            basic = Some((user, pass));
        }
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        if parsed.query().is_none() && !parsed.path().ends_with('/') {
            let p = format!("{}/", parsed.path());
            parsed.set_path(&p);
        }
        let mut hdrs = Vec::new();
        let mut authorization = None;
        match headers {
            None | Some(Value::Null) => {}
            Some(Value::Object(h)) => {
                for (k, v) in h {
                    let v = v
                        .as_str()
                        .ok_or_else(|| bad(which, format!("header {k:?} must be a string")))?;
                    if k.eq_ignore_ascii_case("authorization") {
                        match v.strip_prefix("Basic ").and_then(decode_basic) {
                            Some(b) if basic.is_none() => basic = Some(b),
                            Some(_) => {}
                            None => authorization = Some(v.to_owned()),
                        }
                    } else {
                        hdrs.push((k.clone(), v.to_owned()));
                    }
                }
            }
            Some(_) => return Err(bad(which, "`headers` must be an object of strings")),
        }
        match auth {
            None | Some(Value::Null) => {}
            Some(Value::Object(a)) => {
                if let Some(b) = a.get("basic") {
                    let user = b.get("username").and_then(Value::as_str);
                    let pass = b.get("password").and_then(Value::as_str);
                    match (user, pass) {
                        (Some(u), Some(p)) => basic = Some((u.to_owned(), p.to_owned())),
                        _ => {
                            return Err(bad(
                                which,
                                "`auth.basic` needs string `username` and `password`",
                            ))
                        }
                    }
                }
            }
            Some(_) => return Err(bad(
                which,
                "`auth` must be an object such as {\"basic\": {\"username\": …, \"password\": …}}",
            )),
        }
        Ok(Endpoint::Remote(Remote {
            url: parsed,
            headers: hdrs,
            basic,
            authorization,
        }))
    }

    /// How the endpoint appears in logs, errors and status: the URL with `user:*****@`.
    pub fn redacted(&self) -> String {
        match self {
            Endpoint::Local(db) => db.clone(),
            Endpoint::Remote(r) => {
                let mut u = r.url.clone();
                if let Some((user, _)) = &r.basic {
                    let _ = u.set_username(user);
                    let _ = u.set_password(Some("*****"));
                }
                u.to_string()
            }
        }
    }

    /// Whether both name the same database, whoever connects to it: local names, or the
    /// same host, port and path (credentials, headers and a trailing slash aside).
    pub fn same_database(&self, other: &Endpoint) -> bool {
        match (self, other) {
            (Endpoint::Local(a), Endpoint::Local(b)) => a == b,
            (Endpoint::Remote(a), Endpoint::Remote(b)) => {
                a.url.host_str() == b.url.host_str()
                    && a.url.port_or_known_default() == b.url.port_or_known_default()
                    && a.url.path().trim_end_matches('/') == b.url.path().trim_end_matches('/')
            }
            _ => false,
        }
    }

    /// The inputs of the replication id: user, host, port (default ports normalised away),
    /// path and extra headers; never the password.
    pub fn id_part(&self) -> Value {
        match self {
            Endpoint::Local(db) => json!({"local": db}),
            Endpoint::Remote(r) => {
                let port = r
                    .url
                    .port_or_known_default()
                    .filter(|p| ![80, 443, 5984].contains(p));
                let mut headers: Vec<&(String, String)> = r.headers.iter().collect();
                headers.sort();
                let headers: Map<String, Value> = headers
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), json!(v)))
                    .collect();
                json!({
                    "user": r.basic.as_ref().map(|b| &b.0),
                    "host": r.url.host_str(),
                    "port": port,
                    "path": r.url.path(),
                    "query": r.url.query(),
                    "headers": headers,
                })
            }
        }
    }
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or("zz"), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Redacts the password of any URL-looking string (for errors about unparsable URLs).
pub fn redact_str(s: &str) -> String {
    match (s.find("://"), s.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &s[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:*****{}", &s[..scheme + 3], user, &s[at..]),
                None => s.to_owned(),
            }
        }
        _ => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        let e = Endpoint::parse(&json!("http://bob:s3cr%40t@host:5984/db"), "source").unwrap();
        assert_eq!(e.redacted(), "http://bob:*****@host:5984/db/");
        let Endpoint::Remote(r) = &e else { panic!() };
        assert_eq!(r.basic, Some(("bob".into(), "s3cr@t".into())));
        assert!(!e.id_part().to_string().contains("s3cr"));
        let o = Endpoint::parse(
            &json!({"url": "https://h/db", "auth": {"basic": {"username": "u", "password": "pw"}}}),
            "target",
        )
        .unwrap();
        assert_eq!(o.redacted(), "https://u:*****@h/db/");
        assert_eq!(redact_str("http://a:b@c/"), "http://a:*****@c/");
    }

    #[test]
    fn local_and_bad_endpoints() {
        assert_eq!(
            Endpoint::parse(&json!("mydb"), "source").unwrap(),
            Endpoint::Local("mydb".into())
        );
        assert!(Endpoint::parse(&json!("Bad DB"), "source").is_err());
        assert!(Endpoint::parse(&json!("ftp://x/db"), "source").is_err());
        assert!(Endpoint::parse(&json!(12), "source").is_err());
        assert!(Endpoint::parse(&json!({"url": 1}), "source").is_err());
        // The same database with and without the password has the same id inputs.
        let a = Endpoint::parse(&json!("http://u:1@h:5984/db"), "s").unwrap();
        let b = Endpoint::parse(&json!("http://u:2@h/db/"), "s").unwrap();
        assert_eq!(a.id_part(), b.id_part());
    }
}
