//! The HTTP API over real loopback HTTP against a spawned `settee serve`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{req, Server};
use serde_json::{json, Value};

#[test]
fn welcome_up_uuids_and_database_lifecycle() {
    let s = Server::start(&[]);
    let (st, w) = s.req("GET", "/", None);
    assert_eq!(st, 200);
    assert_eq!(w["couchdb"], "Welcome");
    assert_eq!(w["uuid"].as_str().unwrap().len(), 32);
    assert_eq!(
        w["features"],
        json!(["scheduler"]),
        "only features settee has"
    );
    assert_eq!(s.req("GET", "/_up", None).1["status"], "ok");
    assert_eq!(
        s.req("GET", "/_uuids?count=3", None).1["uuids"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // System databases exist from the start.
    assert_eq!(
        s.req("GET", "/_all_dbs", None).1,
        json!(["_replicator", "_users"])
    );

    assert_eq!(s.req("PUT", "/db1", None), (201, json!({"ok": true})));
    let (st, e) = s.req("PUT", "/db1", None);
    assert_eq!((st, e["error"].as_str()), (412, Some("file_exists")));
    let (st, e) = s.req("PUT", "/Bad", None);
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("illegal_database_name"))
    );
    let (st, e) = s.req("GET", "/nope", None);
    assert_eq!(
        (st, e["error"].as_str(), e["reason"].as_str()),
        (404, Some("not_found"), Some("Database does not exist."))
    );
    // A name with a slash travels as %2F.
    assert_eq!(s.req("PUT", "/a%2Fb", None).0, 201);
    assert_eq!(s.req("GET", "/a%2Fb", None).1["db_name"], "a/b");
    let (st, info) = s.req("GET", "/db1", None);
    assert_eq!(
        (st, info["doc_count"].as_u64(), info["update_seq"].as_str()),
        (200, Some(0), Some("0-settee"))
    );
    let (st, _, body) = s.raw("HEAD", "/db1", &[], None);
    assert_eq!((st, body.len()), (200, 0));
    assert_eq!(s.req("DELETE", "/db1", None).0, 200);
    assert_eq!(s.req("GET", "/db1", None).0, 404);
}

#[test]
fn documents_conflicts_and_errors() {
    let s = Server::start(&[]);
    s.req("PUT", "/db", None);
    let (st, r) = s.req("PUT", "/db/doc1", Some(&json!({"v": 1})));
    assert_eq!(st, 201);
    let rev1 = r["rev"].as_str().unwrap().to_owned();
    let (st, e) = s.req("PUT", "/db/doc1", Some(&json!({"v": 2})));
    assert_eq!((st, e["error"].as_str()), (409, Some("conflict")));
    let (st, r) = s.req(
        "PUT",
        &format!("/db/doc1?rev={rev1}"),
        Some(&json!({"v": 2})),
    );
    assert_eq!(st, 201);
    let rev2 = r["rev"].as_str().unwrap().to_owned();
    let (st, hdrs, body) = s.raw("GET", "/db/doc1", &[], None);
    assert_eq!(st, 200);
    assert!(hdrs.iter().any(|(k, v)| k == "etag" && v.contains(&rev2)));
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc, json!({"_id": "doc1", "_rev": rev2, "v": 2}));
    let (_, d) = s.req("GET", "/db/doc1?revs=true&revs_info=true", None);
    assert_eq!(d["_revisions"]["start"], 2);
    // POST creates with a server id.
    let (st, r) = s.req("POST", "/db", Some(&json!({"x": 1})));
    assert_eq!((st, r["id"].as_str().unwrap().len()), (201, 32));
    // Delete, then a read says deleted.
    let (st, _) = s.req("DELETE", &format!("/db/doc1?rev={rev2}"), None);
    assert_eq!(st, 201);
    let (st, e) = s.req("GET", "/db/doc1", None);
    assert_eq!((st, e["reason"].as_str()), (404, Some("deleted")));
    // Bad input gets CouchDB errors and writes nothing.
    let (st, _, body) = s.raw("PUT", "/db/bad", &[], Some(b"{not json".to_vec()));
    let e: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((st, e["error"].as_str()), (400, Some("bad_request")));
    let (st, e) = s.req("PUT", "/db/x", Some(&json!([1, 2])));
    assert_eq!((st, e["error"].as_str()), (400, Some("bad_request")));
    let (st, e) = s.req("PUT", "/db/x", Some(&json!({"_foo": 1})));
    assert_eq!((st, e["error"].as_str()), (400, Some("doc_validation")));
    let (st, _) = s.req("GET", "/db/x?rev=garbage", None);
    assert_eq!(st, 400);
    let (st, _) = s.req("GET", "/db/_bad_thing", None);
    assert_eq!(st, 404);
    assert_eq!(s.req("GET", "/db/x", None).0, 404);
}

#[test]
fn bulk_docs_bulk_get_revs_diff_and_open_revs() {
    let s = Server::start(&[]);
    s.req("PUT", "/db", None);
    let (st, res) = s.req(
        "POST",
        "/db/_bulk_docs",
        Some(&json!({"docs": [{"_id": "a", "v": 1}, {"_id": "b"}, {"_id": "_nope"}]})),
    );
    // As CouchDB: a document of the wrong shape refuses the request, and nothing is written.
    assert_eq!(
        (st, res["error"].as_str()),
        (400, Some("illegal_docid")),
        "{res}"
    );
    assert_eq!(s.req("GET", "/db", None).1["doc_count"], 0);
    let (st, e) = s.req(
        "POST",
        "/db/_bulk_docs",
        Some(&json!({"new_edits": false, "docs": [{"_id": "norev"}]})),
    );
    assert_eq!((st, e["error"].as_str()), (400, Some("bad_request")), "{e}");
    let (st, res) = s.req(
        "POST",
        "/db/_bulk_docs",
        Some(&json!({"docs": [{"_id": "a", "v": 1}, {"_id": "b"}]})),
    );
    assert_eq!(st, 201);
    assert_eq!(res[0]["ok"], true);
    // Replicated writes: a conflict branch; success answers with an empty list.
    let (st, res) = s.req(
        "POST",
        "/db/_bulk_docs",
        Some(&json!({"new_edits": false, "docs": [
            {"_id": "a", "_rev": "2-zzz", "_revisions": {"start": 2, "ids": ["zzz", "yyy"]}, "v": "other"}
        ]})),
    );
    assert_eq!((st, res), (201, json!([])));
    let (_, revs) = s.req("GET", "/db/a?open_revs=all&revs=true", None);
    assert_eq!(revs.as_array().unwrap().len(), 2);
    let (_, doc) = s.req("GET", "/db/a?conflicts=true", None);
    assert_eq!(doc["_rev"], "2-zzz");
    assert_eq!(doc["_conflicts"].as_array().unwrap().len(), 1);
    let (_, list) = s.req("GET", "/db/a?open_revs=%5B%222-zzz%22,%229-x%22%5D", None);
    assert_eq!(list[0]["ok"]["_rev"], "2-zzz");
    assert_eq!(list[1]["missing"], "9-x");

    let (_, diff) = s.req(
        "POST",
        "/db/_revs_diff",
        Some(&json!({"a": ["2-zzz", "3-new"], "b": ["1-q"], "c": ["1-c"]})),
    );
    assert!(diff.get("a").unwrap()["missing"] == json!(["3-new"]));
    assert!(diff["a"]["possible_ancestors"].as_array().unwrap().len() == 2);
    assert_eq!(diff["c"], json!({"missing": ["1-c"]}));

    let (st, got) = s.req(
        "POST",
        "/db/_bulk_get?revs=true",
        Some(&json!({"docs": [{"id": "a", "rev": "2-zzz"}, {"id": "missing"}]})),
    );
    assert_eq!(st, 200);
    let r = &got["results"];
    assert_eq!(
        r[0]["docs"][0]["ok"]["_revisions"]["ids"],
        json!(["zzz", "yyy"])
    );
    assert_eq!(r[1]["docs"][0]["error"]["error"], "not_found");
}

#[test]
fn all_docs_with_keys_ranges_and_docs() {
    let s = Server::start(&[]);
    s.req("PUT", "/db", None);
    let docs: Vec<Value> = ["c", "a", "b", "d"]
        .iter()
        .map(|id| json!({"_id": id, "n": id}))
        .collect();
    s.req("POST", "/db/_bulk_docs", Some(&json!({"docs": docs})));
    let (_, all) = s.req("GET", "/db/_all_docs", None);
    assert_eq!(all["total_rows"], 4);
    let ids: Vec<&str> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    let (_, r) = s.req(
        "GET",
        "/db/_all_docs?startkey=%22b%22&endkey=%22c%22&include_docs=true",
        None,
    );
    assert_eq!(r["rows"].as_array().unwrap().len(), 2);
    assert_eq!(r["rows"][0]["doc"]["n"], "b");
    let (_, r) = s.req("GET", "/db/_all_docs?descending=true&limit=2&skip=1", None);
    let ids: Vec<&str> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c", "b"]);
    let (_, r) = s.req("POST", "/db/_all_docs", Some(&json!({"keys": ["d", "zz"]})));
    assert_eq!(r["rows"][0]["id"], "d");
    assert_eq!(r["rows"][1]["error"], "not_found");
}

#[test]
fn changes_normal_longpoll_and_continuous() {
    let s = Server::start(&[]);
    s.req("PUT", "/db", None);
    for id in ["a", "b", "_design/d"] {
        s.req("PUT", &format!("/db/{id}"), Some(&json!({})));
    }
    let (_, c) = s.req("GET", "/db/_changes?style=all_docs", None);
    assert_eq!(c["results"].as_array().unwrap().len(), 3);
    assert_eq!(c["last_seq"], "3-settee");
    assert_eq!(c["pending"], 0);
    let (_, c) = s.req("GET", "/db/_changes?since=1&limit=1", None);
    assert_eq!(c["results"][0]["id"], "b");
    assert_eq!(c["last_seq"], "2-settee");
    assert_eq!(c["pending"], 1);
    let (_, c) = s.req(
        "POST",
        "/db/_changes?filter=_doc_ids",
        Some(&json!({"doc_ids": ["b"]})),
    );
    assert_eq!(c["results"].as_array().unwrap().len(), 1);
    let (_, c) = s.req("GET", "/db/_changes?filter=_design", None);
    assert_eq!(c["results"][0]["id"], "_design/d");
    let (st, e) = s.req("GET", "/db/_changes?filter=app/by_type", None);
    assert_eq!((st, e["error"].as_str()), (404, Some("not_found")));
    let (_, c) = s.req("GET", "/db/_changes?include_docs=true&since=2", None);
    assert_eq!(c["results"][0]["doc"]["_id"], "_design/d");

    // Longpoll waits for the next write.
    let addr = s.addr.clone();
    let waiter = std::thread::spawn(move || {
        common::req(
            &addr,
            "GET",
            "/db/_changes?feed=longpoll&since=3&timeout=10000",
            None,
        )
    });
    common::until_feeds_open(&s.addr, &[], 1);
    s.req("PUT", "/db/late", Some(&json!({})));
    let (_, c) = waiter.join().unwrap();
    assert_eq!(c["results"][0]["id"], "late");

    // Continuous streams existing rows then new writes as they happen.
    let mut stream = TcpStream::connect(&s.addr).unwrap();
    write!(
        stream,
        "GET /db/_changes?feed=continuous&since=3&heartbeat=200 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut seen = String::new();
    let mut line = String::new();
    let mut wrote = false;
    while !seen.contains("\"id\":\"later\"") {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if seen.contains("\"id\":\"late\"") && !wrote {
            s.req("PUT", "/db/later", Some(&json!({})));
            wrote = true;
        }
    }
    assert!(seen.contains("\"id\":\"late\""), "{seen}");
    assert!(seen.contains("\"id\":\"later\""), "{seen}");
}

#[test]
fn local_docs_purge_limits_security_and_commit() {
    let s = Server::start(&[]);
    s.req("PUT", "/db", None);
    let (st, r) = s.req("PUT", "/db/_local/cp", Some(&json!({"seq": 1})));
    assert_eq!((st, r["rev"].as_str()), (201, Some("0-1")));
    assert_eq!(s.req("GET", "/db/_local/cp", None).1["seq"], 1);
    assert_eq!(
        s.req("PUT", "/db/_local/cp", Some(&json!({"seq": 2}))).0,
        409
    );
    assert_eq!(
        s.req(
            "PUT",
            "/db/_local/cp",
            Some(&json!({"_rev": "0-1", "seq": 2}))
        )
        .0,
        201
    );
    assert_eq!(s.req("GET", "/db/_changes", None).1["results"], json!([]));

    let (_, r) = s.req("PUT", "/db/p", Some(&json!({})));
    let rev = r["rev"].as_str().unwrap().to_owned();
    let (st, r) = s.req("POST", "/db/_purge", Some(&json!({"p": [rev]})));
    assert_eq!(st, 201);
    assert_eq!(r["purged"]["p"], json!([rev]));
    assert_eq!(s.req("GET", "/db/p", None).1["reason"], "missing");
    assert_eq!(s.req("GET", "/db/_changes", None).1["results"], json!([]));

    assert_eq!(s.req("GET", "/db/_revs_limit", None).1, json!(1000));
    assert_eq!(s.req("PUT", "/db/_revs_limit", Some(&json!(5))).0, 200);
    assert_eq!(s.req("GET", "/db/_revs_limit", None).1, json!(5));
    assert_eq!(s.req("PUT", "/db/_revs_limit", Some(&json!("x"))).0, 400);
    assert_eq!(s.req("GET", "/db/_purged_infos_limit", None).1, json!(1000));
    let sec =
        json!({"admins": {"names": [], "roles": []}, "members": {"names": ["bob"], "roles": []}});
    assert_eq!(s.req("PUT", "/db/_security", Some(&sec)).0, 200);
    assert_eq!(s.req("GET", "/db/_security", None).1, sec);
    let (st, r) = s.req("POST", "/db/_ensure_full_commit", None);
    assert_eq!((st, r["ok"].as_bool()), (201, Some(true)));
    assert_eq!(s.req("POST", "/db/_compact", None).0, 202);
}

#[test]
fn attachments_over_http() {
    let s = Server::start(&[]);
    s.req("PUT", "/db", None);
    let (st, _, body) = s.raw(
        "PUT",
        "/db/d/hello.txt",
        &[("Content-Type", "text/plain")],
        Some(b"hello".to_vec()),
    );
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    let r: Value = serde_json::from_slice(&body).unwrap();
    let (st, hdrs, data) = s.raw("GET", "/db/d/hello.txt", &[], None);
    assert_eq!((st, data.as_slice()), (200, &b"hello"[..]));
    assert!(hdrs
        .iter()
        .any(|(k, v)| k == "content-type" && v == "text/plain"));
    let (_, doc) = s.req("GET", "/db/d?attachments=true", None);
    assert_eq!(doc["_attachments"]["hello.txt"]["data"], "aGVsbG8=");
    let rev = r["rev"].as_str().unwrap();
    assert_eq!(
        s.req("DELETE", &format!("/db/d/hello.txt?rev={rev}"), None)
            .0,
        201
    );
    assert_eq!(s.raw("GET", "/db/d/hello.txt", &[], None).0, 404);
}

#[test]
fn admin_auth_body_limit_and_graceful_shutdown() {
    let mut s = Server::process(&["--admin", "adm:secret", "--max-body", "1000"]);
    assert_eq!(s.req("GET", "/", None).0, 200);
    let (st, e) = s.req("PUT", "/db", None);
    assert_eq!((st, e["error"].as_str()), (401, Some("unauthorized")));
    let wrong = [("Authorization", "Basic YWRtOm5vcGU=")]; // adm:nope
    assert_eq!(s.raw("PUT", "/db", &wrong, None).0, 401);
    let good = [("Authorization", "Basic YWRtOnNlY3JldA==")]; // adm:secret
    assert_eq!(s.raw("PUT", "/db", &good, None).0, 201);
    let big = json!({"pad": "x".repeat(2000)}).to_string().into_bytes();
    let (st, _, body) = s.raw("PUT", "/db/big", &good, Some(big));
    assert_eq!(st, 413, "{}", String::from_utf8_lossy(&body));
    assert_eq!(s.raw("GET", "/db/big", &good, None).0, 404);

    // SIGTERM: the process exits cleanly and the data is on disk.
    assert_eq!(s.raw("PUT", "/db/kept", &good, Some(b"{}".to_vec())).0, 201);
    unsafe_sigterm(s.child().id());
    let status = s.child().wait().unwrap();
    assert!(status.success(), "{status:?}");
    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s2 = Server::start_in(dir, &["--admin", "adm:secret"]);
    assert_eq!(s2.raw("GET", "/db/kept", &good, None).0, 200);
}

#[test]
fn refuses_public_bind_without_admin() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_settee"))
        .args(["serve", "--bind", "0.0.0.0:0", "--data"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to listen"));
}

fn unsafe_sigterm(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn changes_filtered_by_selector() {
    let s = Server::start(&[]);
    s.req("PUT", "/db", None);
    let docs = json!({"docs": [
        {"_id": "c1", "type": "collection"},
        {"_id": "i1", "type": "item", "data": {"collection_id": "c1"}},
        {"_id": "i2", "type": "item", "data": {"collection_id": "other"}},
        {"_id": "x", "type": "secret"}
    ]});
    let (_, res) = s.req("POST", "/db/_bulk_docs", Some(&docs));
    let sel = json!({"selector": {"$or": [
        {"type": "collection"},
        {"type": "item", "data.collection_id": {"$in": ["c1"]}}
    ]}});
    let (st, c) = s.req(
        "POST",
        "/db/_changes?filter=_selector&style=all_docs",
        Some(&sel),
    );
    assert_eq!(st, 200);
    let ids: Vec<&str> = c["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c1", "i1"]);
    // A plain tombstone has no `type`: CouchDB's selector filter does not send it.
    let rev = res[1]["rev"].as_str().unwrap();
    s.req("DELETE", &format!("/db/i1?rev={rev}"), None);
    let (_, c) = s.req("POST", "/db/_changes?filter=_selector", Some(&sel));
    let ids: Vec<&str> = c["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c1"]);
    // Errors: GET without a body, a non-object, an invalid operator.
    assert_eq!(s.req("GET", "/db/_changes?filter=_selector", None).0, 400);
    assert_eq!(
        s.req(
            "POST",
            "/db/_changes?filter=_selector",
            Some(&json!({"selector": 1}))
        )
        .0,
        400
    );
    let (st, e) = s.req(
        "POST",
        "/db/_changes?filter=_selector",
        Some(&json!({"selector": {"a": {"$nope": 1}}})),
    );
    assert_eq!(st, 400);
    assert!(
        e["reason"].as_str().unwrap().contains("invalid_operator"),
        "{e}"
    );
}

#[test]
fn find_explain_index_and_preview_agree_with_filtered_changes() {
    let s = Server::start(&[]);
    s.req("PUT", "/db", None);
    let mut docs = Vec::new();
    for i in 0..60 {
        let t = ["collection", "item", "image", "secret"][i % 4];
        docs.push(json!({"_id": format!("d{i:02}"), "type": t, "n": i,
                         "data": {"collection_id": if i % 3 == 0 { "c1" } else { "c2" }}}));
    }
    docs.push(json!({"_id": "_design/x", "type": "item", "data": {"collection_id": "c1"}}));
    s.req("POST", "/db/_bulk_docs", Some(&json!({"docs": docs})));
    let selector = json!({"$or": [{"type": "collection"}, {"type": "item", "data.collection_id": {"$in": ["c1"]}}]});

    let (st, r) = s.req(
        "POST",
        "/db/_find",
        Some(&json!({"selector": selector, "limit": 1000, "execution_stats": true})),
    );
    assert_eq!(st, 200);
    assert!(r["warning"].as_str().unwrap().contains("No matching index"));
    assert_eq!(r["execution_stats"]["total_docs_examined"], 60);
    let found: Vec<String> = r["docs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect();
    // The preview: what a selector-filtered replication would send, minus design docs.
    let (_, c) = s.req(
        "POST",
        "/db/_changes?filter=_selector&style=all_docs",
        Some(&json!({"selector": selector})),
    );
    let mut changed: Vec<String> = c["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .filter(|id| !id.starts_with("_design/"))
        .collect();
    changed.sort();
    assert_eq!(found, changed);
    assert_eq!(found.len(), 15 + 5);

    // sort, fields, skip, limit, bookmark. A sort needs an index that serves it, as in
    // CouchDB.
    let sorted = json!({"selector": {"type": "image"}, "sort": [{"n": "desc"}]});
    let (st, e) = s.req("POST", "/db/_find", Some(&sorted));
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("no_usable_index")),
        "{e}"
    );
    let by_n = json!({"index": {"fields": ["n"]}, "ddoc": "sorting", "name": "by-n"});
    assert_eq!(s.req("POST", "/db/_index", Some(&by_n)).0, 200);
    let (_, r) = s.req("POST", "/db/_find", Some(&json!({
        "selector": {"type": "image"}, "sort": [{"n": "desc"}], "fields": ["_id", "n"], "limit": 3})));
    assert_eq!(
        r["docs"],
        json!([{"_id": "d58", "n": 58}, {"_id": "d54", "n": 54}, {"_id": "d50", "n": 50}])
    );
    let (_, r2) = s.req("POST", "/db/_find", Some(&json!({
        "selector": {"type": "image"}, "sort": [{"n": "desc"}], "fields": ["n"], "limit": 2, "bookmark": r["bookmark"]})));
    assert_eq!(r2["docs"], json!([{"n": 46}, {"n": 42}]));
    let (st, _) = s.req("DELETE", "/db/_index/_design/sorting/json/by-n", None);
    assert_eq!(st, 200);
    let (_, r) = s.req(
        "POST",
        "/db/_find",
        Some(&json!({"selector": {"n": {"$lt": 3}}, "skip": 1})),
    );
    assert_eq!(r["docs"].as_array().unwrap().len(), 2);
    // An empty $or finds nothing in _find (CouchDB's noop range).
    let (_, r) = s.req("POST", "/db/_find", Some(&json!({"selector": {"$or": []}})));
    assert_eq!(r["docs"], json!([]));
    // Errors name the problem.
    let (st, e) = s.req("POST", "/db/_find", Some(&json!({"selector": [1]})));
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_selector_json"))
    );
    let (st, e) = s.req(
        "POST",
        "/db/_find",
        Some(&json!({"selector": {"a": {"$mod": [0, 1]}}})),
    );
    assert_eq!((st, e["error"].as_str()), (400, Some("bad_arg")));

    let (st, e) = s.req(
        "POST",
        "/db/_explain",
        Some(&json!({"selector": {"a": {"$gt": 1, "$lt": 5}}})),
    );
    assert_eq!(st, 200);
    assert_eq!(e["index"]["name"], "_all_docs");
    assert!(
        e["selector"]["a"]["$and"].is_array() || e["selector"]["$and"].is_array(),
        "{e}"
    );
    assert_eq!(
        (&e["mrargs"]["start_key"], &e["mrargs"]["end_key"]),
        (&json!(null), &json!("<MAX>"))
    );
    // `_id` conditions narrow `_all_docs`: reported as CouchDB does, and only that range read.
    let sel = json!({"_id": {"$beginsWith": "d1"}, "type": "item"});
    let (_, e) = s.req("POST", "/db/_explain", Some(&json!({ "selector": sel })));
    assert_eq!(
        (&e["mrargs"]["start_key"], &e["mrargs"]["end_key"]),
        (&json!("d1"), &json!("d1\u{ffff}"))
    );
    let (_, r) = s.req(
        "POST",
        "/db/_find",
        Some(&json!({"selector": sel, "execution_stats": true})),
    );
    assert_eq!(r["docs"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["execution_stats"]["total_docs_examined"], 10);
    let (_, e) = s.req(
        "POST",
        "/db/_explain",
        Some(&json!({"selector": {"_id": "d07"}})),
    );
    assert_eq!(e["mrargs"]["start_key"], "d07");
    assert_eq!(e["mrargs"]["end_key"], "d07");

    let (st, r) = s.req(
        "POST",
        "/db/_index",
        Some(&json!({"index": {"fields": ["type", {"n": "asc"}]}, "name": "by-type", "ddoc": "q"})),
    );
    assert_eq!(
        (st, r["result"].as_str(), r["id"].as_str()),
        (200, Some("created"), Some("_design/q"))
    );
    let (_, r) = s.req(
        "POST",
        "/db/_index",
        Some(&json!({"index": {"fields": ["type", {"n": "asc"}]}, "name": "by-type", "ddoc": "q"})),
    );
    assert_eq!(r["result"], "exists");
    let (_, list) = s.req("GET", "/db/_index", None);
    assert_eq!(list["total_rows"], 2);
    assert_eq!(
        list["indexes"][1]["def"]["fields"],
        json!([{"type": "asc"}, {"n": "asc"}])
    );
    // Index fields are a sort: one direction for all, as CouchDB requires.
    let (st, e) = s.req(
        "POST",
        "/db/_index",
        Some(&json!({"index": {"fields": ["type", {"n": "desc"}]}, "name": "mixed"})),
    );
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("unsupported_mixed_sort"))
    );
    // A usable index decides as in CouchDB: rows in its key order (type, then n), its range
    // in `_explain`, no "no index" warning; a descending sort reverses it.
    let sel = json!({"type": {"$gt": "image"}, "n": {"$gt": 40}});
    let (_, e) = s.req("POST", "/db/_explain", Some(&json!({ "selector": sel })));
    assert_eq!(
        (&e["index"]["name"], &e["index"]["type"]),
        (&json!("by-type"), &json!("json"))
    );
    assert_eq!(
        (&e["mrargs"]["start_key"], &e["mrargs"]["end_key"]),
        (&json!(["image", 40]), &json!(["<MAX>"]))
    );
    let ids = |r: &Value| -> Vec<String> {
        r["docs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, r) = s.req("POST", "/db/_find", Some(&json!({ "selector": sel })));
    assert!(r.get("warning").is_none(), "{r}");
    assert_eq!(
        ids(&r),
        ["d41", "d45", "d49", "d53", "d57", "d43", "d47", "d51", "d55", "d59"]
    );
    let (_, r) = s.req(
        "POST",
        "/db/_find",
        Some(&json!({"selector": sel, "sort": [{"type": "desc"}, {"n": "desc"}], "limit": 3})),
    );
    assert_eq!(ids(&r), ["d59", "d55", "d51"]);
    let (_, e) = s.req(
        "POST",
        "/db/_explain",
        Some(&json!({"selector": sel, "sort": [{"type": "desc"}]})),
    );
    assert_eq!(e["mrargs"]["direction"], "rev");
    // A selector the index cannot serve stays on _all_docs, in _id order.
    let (_, r) = s.req(
        "POST",
        "/db/_find",
        Some(&json!({"selector": {"n": {"$gt": 57}}})),
    );
    assert_eq!(ids(&r), ["d58", "d59"]);
    assert!(r["warning"].is_string());
    assert_eq!(
        s.req("DELETE", "/db/_index/_design/q/json/by-type", None).0,
        200
    );
    assert_eq!(s.req("GET", "/db/_index", None).1["total_rows"], 1);
    assert_eq!(
        s.req("POST", "/db/_index", Some(&json!({"index": {}}))).0,
        400
    );
}

#[test]
fn dbs_info_seq_interval_and_multipart_open_revs() {
    let s = Server::start(&[]);
    s.req("PUT", "/db", None);
    for id in ["a", "b", "c", "d"] {
        s.req("PUT", &format!("/db/{id}"), Some(&json!({"k": id})));
    }
    let (st, r) = s.req("POST", "/_dbs_info", Some(&json!({"keys": ["db", "nope"]})));
    assert_eq!(st, 200);
    assert_eq!(r[0]["info"]["doc_count"], 4);
    assert_eq!(r[1]["error"], "not_found");
    let (_, c) = s.req("GET", "/db/_changes?seq_interval=2", None);
    let seqs: Vec<&Value> = c["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["seq"])
        .collect();
    // CouchDB's rule: a seq where the limit still to go (2^28 without one) is a multiple.
    assert_eq!(
        seqs,
        [
            &json!("1-settee"),
            &Value::Null,
            &json!("3-settee"),
            &Value::Null
        ]
    );
    assert_eq!(c["last_seq"], "4-settee");
    let (_, c) = s.req("GET", "/db/_changes?seq_interval=2&limit=3", None);
    let seqs: Vec<&Value> = c["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["seq"])
        .collect();
    assert_eq!(seqs, [&Value::Null, &json!("2-settee"), &Value::Null]);
    let (st, hdrs, body) = s.raw(
        "GET",
        "/db/a?open_revs=all&revs=true",
        &[("Accept", "multipart/mixed")],
        None,
    );
    assert_eq!(st, 200);
    let ct = &hdrs.iter().find(|(k, _)| k == "content-type").unwrap().1;
    let boundary = ct
        .split("boundary=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches('"');
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with(&format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n"
    )));
    assert!(text.ends_with(&format!("--{boundary}--")));
    let json_part = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap()
        .split("\r\n--")
        .next()
        .unwrap();
    let doc: Value = serde_json::from_str(json_part).unwrap();
    assert_eq!(
        (doc["_id"].as_str(), doc["k"].as_str()),
        (Some("a"), Some("a"))
    );
}

/// CouchDB's replicator pushes a document with attachments as `multipart/related` with
/// `new_edits=false`, text attachments gzip-encoded as CouchDB stores them.
#[test]
fn multipart_related_upload_as_couchdb_replicator_sends_it() {
    use base64::Engine;
    use md5::Digest;
    use std::io::Write as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let s = Server::start(&[]);
    s.req("PUT", "/mp", None);
    let text = b"field report, many words, many words, many words".to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&text).unwrap();
    let gz = gz.finish().unwrap();
    let bin: Vec<u8> = (0u8..=255).chain(b"\r\n--xy\r\n".iter().copied()).collect();
    let doc = json!({
        "_id": "rep", "_rev": "2-bbb", "_revisions": {"start": 2, "ids": ["bbb", "aaa"]},
        "kind": "report",
        "_attachments": {
            "report.txt": {"content_type": "text/plain", "revpos": 2, "follows": true,
                           "length": text.len(), "encoding": "gzip", "encoded_length": gz.len()},
            "photo.bin": {"content_type": "image/x-test", "revpos": 1, "follows": true, "length": bin.len()}
        }
    });
    let mut body = b"--xyz\r\nContent-Type: application/json\r\n\r\n".to_vec();
    body.extend_from_slice(doc.to_string().as_bytes());
    body.extend_from_slice(b"\r\n--xyz\r\nContent-Disposition: attachment; filename=\"report.txt\"\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n\r\n");
    body.extend_from_slice(&gz);
    body.extend_from_slice(
        b"\r\n--xyz\r\nContent-Disposition: attachment; filename=\"photo.bin\"\r\n\r\n",
    );
    body.extend_from_slice(&bin);
    body.extend_from_slice(b"\r\n--xyz--");
    let ct = [("Content-Type", "multipart/related; boundary=\"xyz\"")];
    let (st, _, out) = s.raw("PUT", "/mp/rep?new_edits=false", &ct, Some(body.clone()));
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&out));
    let (st, got) = s.req("GET", "/mp/rep?attachments=true&revs=true", None);
    assert_eq!(st, 200);
    assert_eq!(got["_rev"], "2-bbb");
    assert_eq!(got["_revisions"]["ids"], json!(["bbb", "aaa"]));
    let atts = &got["_attachments"];
    assert_eq!(atts["report.txt"]["data"], b64(&text));
    assert_eq!(atts["photo.bin"]["data"], b64(&bin));
    assert_eq!(atts["photo.bin"]["revpos"], 1);
    let digest = format!("md5-{}", b64(&md5::Md5::digest(&text)));
    assert_eq!(atts["report.txt"]["digest"], digest);
    // A body whose parts do not match its `follows` attachments writes nothing.
    let truncated = body[..body.len() - bin.len() - 40].to_vec();
    let (st, _, out) = s.raw("PUT", "/mp/bad?new_edits=false", &ct, Some(truncated));
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&out));
    let e: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(e["error"], "bad_request");
    assert_eq!(s.req("GET", "/mp/bad", None).0, 404);
}

/// Inputs a robustness probe found mishandled: each one either lost data, merged different
/// ids, or was accepted as something it is not.
#[test]
fn probed_bad_inputs_are_refused() {
    let s = Server::start(&[]);
    assert_eq!(s.req("PUT", "/p", None).0, 201);
    let (_, v) = s.req("PUT", "/p/keep", Some(&json!({"a": 1})));
    let rev = v["rev"].as_str().unwrap().to_owned();
    // `DELETE /db/?rev=` (an empty id variable) must not delete the database.
    let (st, v) = s.req("DELETE", &format!("/p/?rev={rev}"), None);
    assert_eq!((st, v["error"].as_str()), (400, Some("bad_request")), "{v}");
    assert_eq!(s.req("GET", "/p/keep", None).0, 200);
    // Percent-decoded ids must be UTF-8: two Latin-1 bytes would both become U+FFFD.
    let (st, v) = s.req("PUT", "/p/%E9", Some(&json!({})));
    assert_eq!(st, 400, "{v}");
    assert_eq!(s.req("PUT", "/p/%FE", Some(&json!({}))).0, 400);
    let (st, v) = s.req("PUT", "/p/%C3%A9", Some(&json!({})));
    assert_eq!((st, v["id"].as_str()), (201, Some("é")), "{v}");
    // `_deleted` is a boolean or nothing.
    let (st, v) = s.req("PUT", "/p/d", Some(&json!({"_deleted": "yes"})));
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("doc_validation")),
        "{v}"
    );
    // `_all_docs?key=` is a one-id range; a key that is not JSON is a bad request.
    let (st, v) = s.req("GET", "/p/_all_docs?key=%22keep%22", None);
    assert_eq!(st, 200);
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["rows"][0]["id"], "keep");
    assert_eq!(s.req("GET", "/p/_all_docs?key=keep", None).0, 400);
    assert_eq!(s.req("GET", "/p/_all_docs?skip=-1", None).0, 400);
    // A design or local id with its slash encoded is still that document.
    assert_eq!(s.req("PUT", "/p/_design/x", Some(&json!({}))).0, 201);
    let (st, v) = s.req("GET", "/p/_design%2Fx", None);
    assert_eq!((st, v["_id"].as_str()), (200, Some("_design/x")), "{v}");
    assert_eq!(s.req("PUT", "/p/_local%2Fl", Some(&json!({"n": 1}))).0, 201);
    assert_eq!(s.req("GET", "/p/_local/l", None).1["n"], 1);
    // Server endpoints answer only the methods they have.
    for (m, p) in [
        ("DELETE", "/_all_dbs"),
        ("POST", "/_up"),
        ("DELETE", "/"),
        ("DELETE", "/_uuids"),
        ("PUT", "/_active_tasks"),
    ] {
        let (st, v) = s.req(m, p, None);
        assert_eq!(
            (st, v["error"].as_str()),
            (405, Some("method_not_allowed")),
            "{m} {p}: {v}"
        );
    }
    // A POST naming another content type is 415 and writes nothing (`curl -d` sends a form).
    for (path, ct) in [
        ("/p", "text/plain"),
        ("/p/_bulk_docs", "application/x-www-form-urlencoded"),
    ] {
        let body = br#"{"_id":"form","docs":[{"_id":"form"}]}"#.to_vec();
        let (st, _, out) = s.raw("POST", path, &[("Content-Type", ct)], Some(body));
        let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        assert_eq!(
            (st, v["error"].as_str()),
            (415, Some("bad_content_type")),
            "{path}: {v}"
        );
    }
    let ok = [("Content-Type", "application/json; charset=utf-8")];
    let (st, _, _) = s.raw(
        "POST",
        "/p/_all_docs",
        &ok,
        Some(br#"{"keys":["keep"]}"#.to_vec()),
    );
    assert_eq!(st, 200);
    assert_eq!(
        s.req("GET", "/p", None).1["doc_count"],
        3,
        "keep, é and _design/x: nothing else was written"
    );
}

/// Feed and purge details a probe found: inline attachments in `_changes`, `Last-Event-ID`,
/// `pending` on the streaming feeds, `_purge`'s answer and `_purged_infos`.
#[test]
fn feed_and_purge_details_follow_couchdb() {
    let s = Server::start(&[]);
    assert_eq!(s.req("PUT", "/f", None).0, 201);
    let att =
        json!({"_attachments": {"a.txt": {"content_type": "text/plain", "data": "aGVsbG8="}}});
    assert_eq!(s.req("PUT", "/f/one", Some(&att)).0, 201);
    for id in ["two", "three"] {
        assert_eq!(s.req("PUT", &format!("/f/{id}"), Some(&json!({}))).0, 201);
    }
    let (_, v) = s.req(
        "GET",
        "/f/_changes?include_docs=true&attachments=true",
        None,
    );
    assert_eq!(
        v["results"][0]["doc"]["_attachments"]["a.txt"]["data"], "aGVsbG8=",
        "{v}"
    );
    let (_, v) = s.req("GET", "/f/_changes?include_docs=true", None);
    assert_eq!(
        v["results"][0]["doc"]["_attachments"]["a.txt"]["stub"], true,
        "{v}"
    );
    // An EventSource reconnecting after seq 2 gets only what came later.
    let (st, _, body) = s.raw(
        "GET",
        "/f/_changes?feed=eventsource&timeout=200",
        &[("Last-Event-ID", "2")],
        None,
    );
    let text = String::from_utf8_lossy(&body);
    assert_eq!(st, 200);
    assert!(
        text.contains("\"three\"") && !text.contains("\"two\""),
        "{text}"
    );
    // `pending` counts what a limited streaming feed left out.
    let (_, _, body) = s.raw("GET", "/f/_changes?feed=continuous&limit=1", &[], None);
    let text = String::from_utf8_lossy(&body);
    let end: Value = serde_json::from_str(text.trim().lines().last().unwrap()).unwrap();
    assert_eq!(end["pending"], 2, "{text}");
    let (_, v) = s.req(
        "GET",
        "/f/_changes?feed=longpoll&limit=0&timeout=60000",
        None,
    );
    assert_eq!(v["pending"], 3, "{v}");
    // `_purge` answers `purge_seq: null` as CouchDB 3; `_purged_infos` lists what went.
    let rev = s.req("GET", "/f/two", None).1["_rev"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, v) = s.req("POST", "/f/_purge", Some(&json!({"two": [rev]})));
    assert_eq!((st, &v["purge_seq"]), (201, &Value::Null), "{v}");
    let (_, v) = s.req("GET", "/f/_purged_infos", None);
    assert_eq!(
        v["purged_infos"],
        json!([{"id": "two", "revs": [rev]}]),
        "{v}"
    );
}

#[test]
fn a_longpoll_on_a_database_deleted_meanwhile_answers_at_once() {
    let s = Server::start(&[]);
    assert_eq!(s.req("PUT", "/gone", None).0, 201);
    let addr = s.addr.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = req(
            &addr,
            "GET",
            "/gone/_changes?feed=longpoll&since=now&timeout=600000",
            None,
        );
        let _ = tx.send(r);
    });
    // The feed is open (its request is in) before the database goes.
    common::until_feeds_open(&s.addr, &[], 1);
    assert_eq!(s.req("DELETE", "/gone", None).0, 200);
    let (status, body) = rx.recv_timeout(std::time::Duration::from_secs(20)).expect(
        "the longpoll answers once its database is deleted, not after its 10-minute timeout",
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "not_found");
}

#[test]
fn a_post_without_a_json_content_type_is_refused_as_couchdb_does() {
    let s = Server::start(&[]);
    assert_eq!(s.req("PUT", "/db", None).0, 201);
    for ctype in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let headers: Vec<(&str, &str)> = match ctype {
            Some(c) => vec![("Content-Type", c)],
            None => vec![("Content-Type", "")],
        };
        for path in ["/db", "/db/_bulk_docs", "/_replicate"] {
            let (status, _, body) = s.raw("POST", path, &headers, Some(br#"{"docs":[]}"#.to_vec()));
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(status, 415, "{path} with {ctype:?}: {v}");
            assert_eq!(v["error"], "bad_content_type");
            assert!(
                v["reason"].as_str().unwrap().contains("application/json"),
                "{v}"
            );
        }
    }
    let (status, _) = s.req("POST", "/db", Some(&serde_json::json!({"_id": "x"})));
    assert_eq!(status, 201, "with the JSON content type it is written");
}

#[test]
fn all_docs_reads_included_documents_as_a_single_read_would() {
    let s = Server::start(&[]);
    assert_eq!(s.req("PUT", "/db", None).0, 201);
    let docs = json!({"new_edits": false, "docs": [
        {"_id": "c", "_rev": "1-aaaa", "v": 1},
        {"_id": "c", "_rev": "1-bbbb", "v": 2},
        {"_id": "d", "_rev": "1-cccc", "_attachments": {"a.txt": {"content_type": "text/plain", "data": "aGk="}}},
    ]});
    assert_eq!(s.req("POST", "/db/_bulk_docs", Some(&docs)).0, 201);
    let (_, v) = s.req(
        "GET",
        "/db/_all_docs?include_docs=true&conflicts=true&attachments=true&update_seq=true",
        None,
    );
    assert_eq!(
        v["update_seq"],
        s.req("GET", "/db", None).1["update_seq"],
        "{v}"
    );
    assert_eq!(v["rows"][0]["doc"]["_conflicts"], json!(["1-aaaa"]), "{v}");
    assert_eq!(
        v["rows"][1]["doc"]["_attachments"]["a.txt"]["data"], "aGk=",
        "{v}"
    );
    let (_, plain) = s.req("GET", "/db/_all_docs?include_docs=true", None);
    assert!(
        plain["rows"][0]["doc"].get("_conflicts").is_none(),
        "{plain}"
    );
    assert_eq!(
        plain["rows"][1]["doc"]["_attachments"]["a.txt"]["stub"],
        true
    );
    assert!(plain.get("update_seq").is_none());
    // `keys` with a range is refused, as CouchDB does.
    let body = json!({"keys": ["c"]});
    for q in ["key=%22c%22", "startkey=%22a%22", "endkey=%22z%22"] {
        let (st, e) = s.req("POST", &format!("/db/_all_docs?{q}"), Some(&body));
        assert_eq!(st, 400, "{q}: {e}");
        assert_eq!(e["error"], "query_parse_error");
    }
}

#[test]
fn javascript_design_functions_fail_as_missing_features_not_as_attachments() {
    let s = Server::start(&[]);
    assert_eq!(s.req("PUT", "/db", None).0, 201);
    let ddoc = json!({"views": {"v": {"map": "function(d){emit(d._id)}"}},
        "filters": {"f": "function(d){return true}"}, "shows": {"s": "function(){}"}});
    assert_eq!(s.req("PUT", "/db/_design/app", Some(&ddoc)).0, 201);
    // (path, status, error)
    let table = [
        ("/db/_design/app/_view/v", 501, "not_implemented"),
        ("/db/_design/app/_view/nope", 404, "not_found"),
        ("/db/_design/none/_view/v", 404, "not_found"),
        ("/db/_design/app/_show/s", 501, "not_implemented"),
        ("/db/_changes?filter=app/f", 501, "not_implemented"),
        ("/db/_changes?filter=app/nope", 404, "not_found"),
        ("/db/_changes?filter=none/f", 404, "not_found"),
        (
            "/db/_changes?filter=_view&view=app/v",
            501,
            "not_implemented",
        ),
    ];
    for (path, status, error) in table {
        let (st, v) = s.req("GET", path, None);
        assert_eq!(
            (st, v["error"].as_str().unwrap_or_default()),
            (status, error),
            "{path}: {v}"
        );
        assert!(!v.to_string().contains("attachment"), "{path}: {v}");
    }
    assert_eq!(
        s.req("GET", "/db/_design/app/_view/nope", None).1["reason"],
        "missing_named_view"
    );
}

#[test]
fn a_validate_doc_update_is_stored_and_the_log_says_it_is_not_run() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("log");
    let mut server = Server::process_logging(&log, &[]);
    let addr = server.addr.clone();
    assert_eq!(req(&addr, "PUT", "/db", None).0, 201);
    let vdu = json!({"validate_doc_update": "function(n){ if (!n.ok) throw({forbidden: 'no'}); }"});
    for i in 0..2 {
        assert_eq!(
            req(&addr, "PUT", &format!("/db/_design/v{i}"), Some(&vdu)).0,
            201
        );
    }
    // Not enforced: a document the function would refuse is written.
    assert_eq!(
        req(
            &addr,
            "PUT",
            "/db/refused-by-couchdb",
            Some(&json!({"ok": false}))
        )
        .0,
        201
    );
    server.kill();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("validate_doc_update").count(),
        1,
        "once per database: {text}"
    );
    assert!(text.contains("does not run it"), "{text}");
}

#[test]
fn indexes_keep_to_their_own_design_documents_as_in_couchdb() {
    let s = Server::start(&[]);
    assert_eq!(s.req("PUT", "/db", None).0, 201);
    assert_eq!(
        s.req("PUT", "/db/_design/js", Some(&json!({"views": {}})))
            .0,
        201
    );
    let (st, e) = s.req(
        "POST",
        "/db/_index",
        Some(&json!({"index": {"fields": ["foo"]}, "ddoc": "js", "name": "x"})),
    );
    assert_eq!(
        (st, e["error"].as_str()),
        (400, Some("invalid_ddoc_lang")),
        "{e}"
    );
    assert_eq!(
        s.req("GET", "/db/_design/js", None).1["views"],
        json!({}),
        "untouched"
    );
    // Same fields, different names: different design documents.
    let mk = |name: &str| {
        s.req(
            "POST",
            "/db/_index",
            Some(&json!({"index": {"fields": ["foo"]}, "name": name})),
        )
        .1
    };
    let (a, b) = (mk("one"), mk("two"));
    assert_eq!(
        (a["result"].as_str(), b["result"].as_str()),
        (Some("created"), Some("created"))
    );
    assert_ne!(a["id"], b["id"]);
    // A partial filter is part of the view's map, normalised.
    let (_, r) = s.req(
        "POST",
        "/db/_index",
        Some(&json!({"index": {"fields": ["hello"], "partial_filter_selector": {"type": "x"}}, "ddoc": "p", "name": "p"})),
    );
    assert_eq!(r["result"], "created");
    let (_, d) = s.req("GET", "/db/_design/p", None);
    assert_eq!(
        d["views"]["p"]["map"]["partial_filter_selector"],
        json!({"type": {"$eq": "x"}}),
        "{d}"
    );
}

#[test]
fn query_strings_with_raw_quotes_and_braces_are_read_as_typed() {
    let s = Server::start(&[]);
    assert_eq!(s.req("PUT", "/db", None).0, 201);
    for id in ["j", "k", "l"] {
        assert_eq!(s.req("PUT", &format!("/db/{id}"), Some(&json!({}))).0, 201);
    }
    // As curl users type them: CouchDB answers these, hyper alone refused them.
    let (st, v) = s.req("GET", "/db/_all_docs?key=\"k\"", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["rows"][0]["id"], "k");
    let (st, v) = s.req("GET", "/db/_all_docs?startkey=\"k\"&endkey=\"l\"", None);
    assert_eq!(
        (st, v["rows"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{v}"
    );
    let (st, v) = s.req("GET", "/db/_all_docs?keys=[\"j\",\"l\"]", None);
    assert_eq!(
        (st, v["rows"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{v}"
    );
    // A body after such a request on the same connection is read untouched.
    let (st, _) = s.req(
        "POST",
        "/db/_bulk_docs?x=\"1\"",
        Some(&json!({"docs": [{"_id": "q\"{}"}]})),
    );
    assert_eq!(st, 201);
    assert_eq!(s.req("GET", "/db/q%22%7B%7D", None).0, 200);
}
