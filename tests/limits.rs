//! Every limit answers with a clear 4xx, in CouchDB's `{"error", "reason"}` shape where settee
//! decides it, never a dropped connection: body size, URL length, header size, selector depth,
//! regular expression size, and changes feeds held open at once. The server keeps serving.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{open_feeds, Server};
use serde_json::{json, Value};

fn error_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        panic!(
            "not a JSON error: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })
}

/// The status answered to a request head so big the server may stop reading it: the write may
/// fail half-way, the answer must still arrive.
fn status_of_oversized(addr: &str, head: &str) -> Option<u16> {
    use std::io::Read;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(head.as_bytes());
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Opens a continuous feed on a raw connection and returns it with its status.
fn open_feed(addr: &str, query: &str) -> (u16, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /db/_changes?{query} HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, r)
}

#[test]
fn each_limit_is_a_clear_4xx_and_the_server_keeps_serving() {
    let s = Server::start(&["--max-body", "100000", "--max-feeds", "2"]);
    assert_eq!(s.req("PUT", "/db", None).0, 201);

    // Body.
    let big = json!({"pad": "x".repeat(300_000)}).to_string().into_bytes();
    let (st, _, body) = s.raw("PUT", "/db/big", &[], Some(big));
    assert_eq!(st, 413);
    assert_eq!(error_of(&body)["error"], "too_large");

    // URL: settee's limit answers in JSON; past hyper's own (64 KiB) a bare 414, but an answer.
    let long = "k".repeat(62 * 1024);
    let (st, _, body) = s.raw("GET", &format!("/db/_all_docs?start_key={long}"), &[], None);
    assert_eq!(st, 414);
    let e = error_of(&body);
    assert_eq!(e["error"], "uri_too_long");
    assert!(e["reason"].as_str().unwrap().contains("POST"), "{e}");
    assert_eq!(
        status_of_oversized(
            &s.addr,
            &format!("GET /db/{} HTTP/1.1\r\n\r\n", "x".repeat(70 * 1024))
        ),
        Some(414)
    );

    // Headers: settee's limit in JSON; past hyper's buffer a bare 431, but an answer.
    let pad = "p".repeat(70 * 1024);
    let (st, _, body) = s.raw("GET", "/db", &[("X-Pad", &pad)], None);
    assert_eq!(st, 431);
    assert_eq!(error_of(&body)["error"], "request_header_fields_too_large");
    let huge = "p".repeat(2 * 1024 * 1024);
    assert_eq!(
        status_of_oversized(
            &s.addr,
            &format!("GET /db HTTP/1.1\r\nX-Pad: {huge}\r\n\r\n")
        ),
        Some(431)
    );

    // Selector depth (settee's limit of 64 operators, then the JSON parser's of 128 levels)
    // and regular expression size.
    let not_chain = |n: usize| {
        let mut v = json!({"$eq": 1});
        for _ in 0..n {
            v = json!({ "$not": v });
        }
        json!({ "a": v })
    };
    let and_chain = |n: usize| {
        let mut v = json!({"a": 1});
        for _ in 0..n {
            v = json!({ "$and": [v] });
        }
        v
    };
    for deep in [not_chain(80), and_chain(100)] {
        let (st, e) = s.req("POST", "/db/_find", Some(&json!({ "selector": deep })));
        assert_eq!(st, 400, "{e}");
        assert!(
            e["reason"].as_str().unwrap().contains("deeper than"),
            "the reason says what is wrong: {e}"
        );
    }
    let huge_re = format!("^({})+$", "(a|b|c|d)x{1000}".repeat(300));
    let (st, e) = s.req(
        "POST",
        "/db/_find",
        Some(&json!({"selector": {"f": {"$regex": huge_re}}})),
    );
    assert_eq!(st, 400, "{e}");
    assert!(e["reason"].is_string(), "{e}");

    // Feeds: two held open, the third refused with 429 and a reason, one closed makes room.
    // The one closed has no heartbeat and nothing to send: its slot must come back when the
    // client goes, not at the feed's 60 s timeout (the wait below gives up at 30 s).
    let (st1, f1) = open_feed(&s.addr, "feed=continuous&since=now");
    let (st2, _f2) = open_feed(&s.addr, "feed=continuous&heartbeat=1000");
    assert_eq!((st1, st2), (200, 200));
    let (st, _, body) = s.raw("GET", "/db/_changes?feed=longpoll&since=now", &[], None);
    assert_eq!(st, 429);
    let e = error_of(&body);
    assert_eq!(e["error"], "too_many_requests");
    assert!(e["reason"].as_str().unwrap().contains("--max-feeds"), "{e}");
    drop(f1);
    assert!(
        common::wait_for(30, || (open_feeds(&s.addr, &[]) < 2).then_some(())).is_some(),
        "a closed feed gives its slot back"
    );
    let (st3, _f3) = open_feed(&s.addr, "feed=continuous&heartbeat=1000");
    assert_eq!(st3, 200);

    // Still serving.
    assert_eq!(s.req("GET", "/", None).0, 200);
    assert_eq!(s.req("PUT", "/db/ok", Some(&json!({}))).0, 201);
}
