//! `multipart/related` document uploads: how CouchDB's replicator pushes a document with
//! attachments (`PUT /db/doc?new_edits=false`, the JSON first, then one part per attachment
//! marked `"follows": true`). The parts are folded back into one JSON document with inline
//! data, so the store has a single write path.
//!
//! CouchDB sends attachments it stores compressed (`"encoding": "gzip"`) as they are on disk;
//! their digest is over the identity bytes, so they are decompressed here.

use std::io::Read;

use base64::Engine;
use serde_json::{Map, Value};

use super::error::ApiError;

/// `Some(boundary)` when the content type is `multipart/related`.
pub fn related_boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    if !parts
        .next()?
        .trim()
        .eq_ignore_ascii_case("multipart/related")
    {
        return None;
    }
    parts.find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

struct Part<'a> {
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn bad(reason: impl Into<String>) -> ApiError {
    ApiError::bad_request(format!("multipart/related body: {}", reason.into()))
}

fn split<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, ApiError> {
    if boundary.is_empty() {
        return Err(bad("the content type has no boundary"));
    }
    let open = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    // The first delimiter may open the body directly (no preamble, no CRLF before it).
    let mut pos = if body.starts_with(open.as_bytes()) {
        open.len()
    } else {
        find(body, delim.as_bytes(), 0).ok_or_else(|| bad("no part starts with the boundary"))?
            + delim.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding, then the line break ending the delimiter line.
        let line_end =
            find(body, b"\r\n", pos).ok_or_else(|| bad("a delimiter line does not end"))?;
        let head_start = line_end + 2;
        let (headers, content_start) = if body[head_start..].starts_with(b"\r\n") {
            (Vec::new(), head_start + 2)
        } else {
            let head_end = find(body, b"\r\n\r\n", head_start)
                .ok_or_else(|| bad("a part's headers do not end"))?;
            let text = std::str::from_utf8(&body[head_start..head_end])
                .map_err(|_| bad("a part's headers are not UTF-8"))?;
            let headers = text
                .split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            (headers, head_end + 4)
        };
        let end = find(body, delim.as_bytes(), content_start)
            .ok_or_else(|| bad("the closing boundary is missing"))?;
        parts.push(Part {
            headers,
            body: &body[content_start..end],
        });
        pos = end + delim.len();
    }
}

fn header<'a>(part: &'a Part, name: &str) -> Option<&'a str> {
    part.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The attachment a part carries, when its `Content-Disposition` names it.
fn filename(part: &Part) -> Option<String> {
    let d = header(part, "content-disposition")?;
    d.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == "filename").then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The document of a `multipart/related` upload, with every `follows` attachment inlined.
pub fn related_to_json(body: &[u8], boundary: &str) -> Result<Map<String, Value>, ApiError> {
    let parts = split(body, boundary)?;
    let (first, rest) = parts
        .split_first()
        .ok_or_else(|| bad("there is no document part"))?;
    let mut doc: Map<String, Value> = match serde_json::from_slice(first.body)? {
        Value::Object(m) => m,
        _ => return Err(bad("the first part must be a JSON object")),
    };
    let atts = match doc.get_mut("_attachments") {
        Some(Value::Object(a)) => a,
        Some(_) => return Err(bad("_attachments must be an object")),
        None if rest.is_empty() => return Ok(doc),
        None => return Err(bad("parts follow but the document has no _attachments")),
    };
    let following: Vec<String> = atts
        .iter()
        .filter(|(_, a)| a.get("follows") == Some(&Value::Bool(true)))
        .map(|(k, _)| k.clone())
        .collect();
    if following.len() != rest.len() {
        return Err(bad(format!(
            "{} attachments say they follow but {} parts do",
            following.len(),
            rest.len()
        )));
    }
    for (i, part) in rest.iter().enumerate() {
        let name = filename(part).unwrap_or_else(|| following[i].clone());
        let Some(Value::Object(att)) = atts.get_mut(&name) else {
            return Err(bad(format!(
                "a part is named {name:?}, which is not in _attachments"
            )));
        };
        let data = match att.get("encoding").and_then(Value::as_str) {
            None | Some("identity") => part.body.to_vec(),
            Some("gzip") => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(part.body)
                    .read_to_end(&mut out)
                    .map_err(|e| bad(format!("attachment {name:?} is not valid gzip: {e}")))?;
                out
            }
            Some(other) => {
                return Err(bad(format!(
                    "attachment {name:?} has encoding {other:?}; only gzip is understood"
                )))
            }
        };
        if let Some(len) = att.get("length").and_then(Value::as_u64) {
            if len != data.len() as u64 {
                return Err(bad(format!(
                    "attachment {name:?} says length {len} but has {} bytes",
                    data.len()
                )));
            }
        }
        for k in ["follows", "length", "encoding", "encoded_length", "stub"] {
            att.remove(k);
        }
        att.insert(
            "data".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(&data)),
        );
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn body(parts: &[(&str, &[u8])], boundary: &str) -> Vec<u8> {
        let mut b = Vec::new();
        for (headers, data) in parts {
            b.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n").as_bytes());
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(format!("--{boundary}--").as_bytes());
        b
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(
            related_boundary("multipart/related; boundary=\"abc\"").as_deref(),
            Some("abc")
        );
        assert_eq!(related_boundary("application/json"), None);
    }

    #[test]
    fn inlines_following_parts_by_name_and_order() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello text").unwrap();
        let gz = gz.finish().unwrap();
        let json = br#"{"_id":"d","_attachments":{"a.bin":{"content_type":"application/octet-stream","follows":true,"length":5,"revpos":2},"t.txt":{"content_type":"text/plain","follows":true,"length":10,"encoding":"gzip","encoded_length":30},"old":{"stub":true,"digest":"md5-x","revpos":1}}}"#;
        let b = body(
            &[
                ("Content-Type: application/json\r\n", json),
                ("", b"\r\n--x"),
                (
                    "Content-Disposition: attachment; filename=\"t.txt\"\r\nContent-Encoding: gzip\r\n",
                    &gz,
                ),
            ],
            "bnd",
        );
        let doc = related_to_json(&b, "bnd").unwrap();
        let atts = &doc["_attachments"];
        assert_eq!(atts["a.bin"]["data"], "DQotLXg=");
        assert_eq!(atts["a.bin"]["revpos"], 2);
        assert!(atts["a.bin"].get("follows").is_none());
        assert_eq!(atts["t.txt"]["data"], "aGVsbG8gdGV4dA==");
        assert!(atts["t.txt"].get("encoding").is_none());
        assert_eq!(atts["old"]["stub"], true);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let json: &[u8] = br#"{"_attachments":{"a":{"follows":true,"length":3}}}"#;
        for b in [
            b"garbage".to_vec(),
            body(&[("", json)], "b"),
            body(&[("", json), ("", b"abcd")], "b"),
            body(&[("", b"[1]")], "b"),
            format!("--b\r\n\r\n{}", String::from_utf8_lossy(json)).into_bytes(),
        ] {
            assert!(
                related_to_json(&b, "b").is_err(),
                "{:?}",
                String::from_utf8_lossy(&b)
            );
        }
    }
}
