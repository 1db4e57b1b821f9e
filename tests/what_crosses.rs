//! What crosses a replication (settee's own options): field whitelists written as mapped
//! revisions, documents that stop matching (`unmatched`), and replication documents that
//! refuse what they would not honour. Every test runs real servers over loopback HTTP.

mod common;

use common::{
    admin_trees as trees, admin_url, all_content as everything, areq, delete_doc, edit_doc as edit,
    get_doc as get, put_doc as put, update_seq_of as update_seq, wait_for, Server,
};
use serde_json::{json, Value};

fn one_shot(s: &Server, body: Value) -> Value {
    let (st, v) = areq(s, "POST", "/_replicate", Some(&body));
    assert_eq!(st, 200, "{v}");
    v
}

#[test]
fn a_field_list_sends_only_its_fields_as_mapped_revisions() {
    let a = common::start_admin();
    let b = common::start_admin();
    areq(&a, "PUT", "/src", None);
    areq(&b, "PUT", "/dst", None);
    let r1 = put(
        &a,
        "src",
        json!({"_id": "e1", "title": "Flood", "witness_name": "W. Secret",
               "data": {"summary": "S", "notes": "private notes"}}),
    );
    let rep = json!({"source": "src", "target": admin_url(&b, "dst"),
        "fields": ["title", "data.summary"]});
    one_shot(&a, rep.clone());
    let (st, got) = get(&b, "dst", "e1");
    assert_eq!(st, 200);
    assert_eq!(got["title"], "Flood");
    assert_eq!(got["data"], json!({"summary": "S"}));
    let rev = got["_rev"].as_str().unwrap();
    assert!(
        rev.starts_with("1-") && rev != r1,
        "a mapped revision, never the source's: {rev}"
    );

    // An edit of a listed field arrives; an edit of unlisted fields alone writes nothing.
    edit(&a, "src", "e1", json!({"title": "Flood of 2026"}));
    one_shot(&a, rep.clone());
    let (_, got2) = get(&b, "dst", "e1");
    assert_eq!(got2["title"], "Flood of 2026");
    assert!(got2["_rev"].as_str().unwrap().starts_with("2-"));
    let seq = update_seq(&b, "dst");
    edit(&a, "src", "e1", json!({"witness_name": "Another Secret"}));
    put(&a, "src", json!({"_id": "sentinel", "title": "after"}));
    one_shot(&a, rep.clone());
    assert_eq!(get(&b, "dst", "sentinel").0, 200, "the sentinel arrived");
    assert_eq!(
        update_seq(&b, "dst"),
        seq + 1,
        "only the sentinel was written: the unlisted edit projected to the same content"
    );
    // A second run writes nothing at all.
    let seq = update_seq(&b, "dst");
    one_shot(&a, rep.clone());
    assert_eq!(update_seq(&b, "dst"), seq);

    // An edit made on the target becomes an ordinary conflict with the next projection.
    edit(
        &b,
        "dst",
        "e1",
        json!({"title": "edited on the public side"}),
    );
    edit(&a, "src", "e1", json!({"title": "edited at the source"}));
    one_shot(&a, rep);
    let (_, c) = areq(&b, "GET", "/dst/e1?conflicts=true", None);
    assert_eq!(c["_conflicts"].as_array().map(Vec::len), Some(1), "{c}");

    let all = everything(&b, "dst");
    assert!(
        !all.contains("Secret") && !all.contains("witness_name") && !all.contains("private notes"),
        "an unlisted field reached the target: {all}"
    );

    // A path removed from the list disappears from the target's current copy.
    put(
        &a,
        "src",
        json!({"_id": "e2", "title": "Fire", "data": {"summary": "S2"}}),
    );
    let narrower = json!({"source": "src", "target": admin_url(&b, "dst"), "fields": ["title"]});
    one_shot(&a, narrower.clone());
    let (_, e2) = get(&b, "dst", "e2");
    assert_eq!(e2["title"], "Fire");
    assert!(e2.get("data").is_none(), "{e2}");
    let (_, s1) = get(&b, "dst", "sentinel");
    assert_eq!(s1["title"], "after");
    let seq = update_seq(&b, "dst");
    one_shot(&a, narrower);
    assert_eq!(
        update_seq(&b, "dst"),
        seq,
        "and a second run writes nothing"
    );
}

#[test]
fn per_kind_rules_send_attachments_only_when_listed_and_skip_unlisted_kinds() {
    let a = common::start_admin();
    let b = common::start_admin();
    areq(&a, "PUT", "/src", None);
    put(
        &a,
        "src",
        json!({"_id": "c1", "template": "case", "title": "T", "victim": "V",
               "_attachments": {
                   "public.txt": {"content_type": "text/plain", "data": "cHVibGlj"},
                   "secret.txt": {"content_type": "text/plain", "data": "c2VjcmV0"}}}),
    );
    put(
        &a,
        "src",
        json!({"_id": "p1", "template": "person", "name": "N", "address": "A"}),
    );
    put(
        &a,
        "src",
        json!({"_id": "x1", "template": "internal", "memo": "M"}),
    );
    one_shot(
        &a,
        json!({"source": "src", "target": admin_url(&b, "dst"), "create_target": true,
        "fields": [
            {"selector": {"template": "case"}, "fields": ["template", "title", "_attachments.public.txt"]},
            {"selector": {"template": "person"}, "fields": ["template", "name"]}
        ]}),
    );
    let (_, c1) = areq(&b, "GET", "/dst/c1?attachments=true", None);
    assert_eq!(c1["title"], "T");
    assert!(c1.get("victim").is_none());
    let atts = c1["_attachments"].as_object().unwrap();
    assert_eq!(atts.keys().collect::<Vec<_>>(), vec!["public.txt"]);
    assert_eq!(atts["public.txt"]["data"], "cHVibGlj");
    let (_, p1) = get(&b, "dst", "p1");
    assert_eq!((p1["name"].clone(), p1.get("address")), (json!("N"), None));
    assert_eq!(
        get(&b, "dst", "x1").0,
        404,
        "a document no rule matches is not sent"
    );
    let all = everything(&b, "dst");
    assert!(!all.contains("c2VjcmV0") && !all.contains("secret.txt") && !all.contains("\"V\""));
}

#[test]
fn unmatched_delete_follows_unpublishing_plain_deletes_and_republishing() {
    let a = common::start_admin();
    let b = common::start_admin();
    areq(&a, "PUT", "/src", None);
    areq(&b, "PUT", "/dst", None);
    put(&a, "src", json!({"_id": "d1", "published": true, "t": 1}));
    put(&a, "src", json!({"_id": "d2", "published": true, "t": 2}));
    put(&a, "src", json!({"_id": "d3", "published": false, "t": 3}));
    // Another source's document with an id this source also uses.
    put(&b, "dst", json!({"_id": "d4", "from": "elsewhere"}));
    put(&a, "src", json!({"_id": "d4", "published": false}));
    let rep = json!({"source": "src", "target": admin_url(&b, "dst"),
        "selector": {"published": true}, "unmatched": "delete"});
    one_shot(&a, rep.clone());
    assert_eq!(get(&b, "dst", "d1").0, 200);
    assert_eq!(get(&b, "dst", "d3").0, 404, "never published, never sent");

    edit(&a, "src", "d1", json!({"published": false}));
    let (_, d2) = get(&a, "src", "d2");
    let (st, _) = areq(
        &a,
        "DELETE",
        &format!("/src/d2?rev={}", d2["_rev"].as_str().unwrap()),
        None,
    );
    assert!(st == 200 || st == 201, "{st}");
    one_shot(&a, rep.clone());
    let (st, v) = get(&b, "dst", "d1");
    assert_eq!(
        (st, v["reason"].clone()),
        (404, json!("deleted")),
        "unpublished: deleted there"
    );
    assert_eq!(
        get(&b, "dst", "d2").1["reason"],
        "deleted",
        "a plain DELETE crossed"
    );
    assert_eq!(
        trees(&a, "src")["d2"],
        trees(&b, "dst")["d2"],
        "the plain tombstone crossed as the source's own revision"
    );
    assert_eq!(
        get(&b, "dst", "d3").0,
        404,
        "no tombstone for a never-sent document"
    );
    assert!(!trees(&b, "dst").contains_key("d3"));
    let (_, d4) = get(&b, "dst", "d4");
    assert_eq!(d4["from"], "elsewhere", "another source's document stays");

    // Published again: it comes back and wins.
    edit(&a, "src", "d1", json!({"published": true, "t": 10}));
    one_shot(&a, rep.clone());
    let (st, v) = get(&b, "dst", "d1");
    assert_eq!((st, v["t"].clone()), (200, json!(10)));
    // Nothing more to do: a second run writes nothing.
    let seq = update_seq(&b, "dst");
    one_shot(&a, rep);
    assert_eq!(update_seq(&b, "dst"), seq);
}

#[test]
fn unmatched_purge_removes_the_copy_and_needs_admin_on_the_target() {
    let a = common::start_admin();
    let b = common::start_admin();
    areq(&a, "PUT", "/src", None);
    areq(&b, "PUT", "/dst", None);
    put(&a, "src", json!({"_id": "p", "share": true}));
    put(&b, "dst", json!({"_id": "q", "local": true}));
    let rep = json!({"source": "src", "target": admin_url(&b, "dst"),
        "selector": {"share": true}, "unmatched": "purge"});
    one_shot(&a, rep.clone());
    assert_eq!(get(&b, "dst", "p").0, 200);
    edit(&a, "src", "p", json!({"share": false}));
    one_shot(&a, rep);
    assert!(!trees(&b, "dst").contains_key("p"), "purged, not deleted");
    assert_eq!(get(&b, "dst", "q").0, 200);

    // A member of the target database may write but not purge: refused at the start.
    common::add_user(&b, "w", "pw");
    common::set_members(&b, "dst", &["w"]);
    let body = json!({"source": "src", "target": format!("http://w:pw@{}/dst", b.addr),
        "selector": {"share": true}, "unmatched": "purge"});
    let (st, v) = areq(&a, "POST", "/_replicate", Some(&body));
    assert!(st >= 400, "{st} {v}");
    assert!(v["reason"].as_str().unwrap().contains("purge"), "{v}");
    assert!(
        !v.to_string().contains("w:pw"),
        "credentials stay hidden: {v}"
    );
}

#[test]
fn a_continuous_job_removes_what_stops_matching_and_says_what_it_kept() {
    let a = common::start_admin();
    let b = common::start_admin();
    areq(&a, "PUT", "/src", None);
    areq(&b, "PUT", "/dst", None);
    areq(&a, "PUT", "/_replicator", None);
    put(
        &a,
        "src",
        json!({"_id": "k", "published": true, "title": "t", "secret": "s"}),
    );
    put(&b, "dst", json!({"_id": "other", "from": "elsewhere"}));
    put(&a, "src", json!({"_id": "other", "published": true}));
    put(
        &a,
        "_replicator",
        json!({"_id": "pub", "source": "src", "target": admin_url(&b, "dst"), "continuous": true,
            "selector": {"published": true}, "fields": ["title", "published"], "unmatched": "delete",
            "meta": {"note": "the public site"}}),
    );
    wait_for(30, || (get(&b, "dst", "k").0 == 200).then_some(())).expect("k arrives");
    assert!(get(&b, "dst", "k").1.get("secret").is_none());
    edit(&a, "src", "k", json!({"published": false}));
    edit(&a, "src", "other", json!({"published": false}));
    wait_for(30, || {
        (get(&b, "dst", "k").1["reason"] == "deleted").then_some(())
    })
    .expect("k deleted on the target");
    let st = wait_for(30, || {
        let v = areq(&a, "GET", "/_scheduler/docs/_replicator/pub", None).1;
        v["info"]["kept"]
            .as_array()
            .is_some_and(|k| k.contains(&json!("other")))
            .then_some(v)
    })
    .expect("the kept document is named");
    assert_eq!(st["settee"]["unmatched"], "delete");
    assert_eq!(
        st["settee"]["fields"],
        json!([{"fields": ["published", "title"]}])
    );
    let (_, other) = get(&b, "dst", "other");
    assert!(other["from"] == "elsewhere", "{other}");
}

#[test]
fn replication_documents_refuse_what_they_would_not_honour() {
    let s = common::start_admin();
    areq(&s, "PUT", "/_replicator", None);
    let (st, v) = areq(
        &s,
        "PUT",
        "/_replicator/typo",
        Some(&json!({"source": "a", "target": "b", "selectr": {"type": "item"}})),
    );
    assert_eq!(st, 403);
    assert_eq!(v["error"], "forbidden");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("did you mean `selector`"),
        "{v}"
    );
    let (st, v) = areq(
        &s,
        "POST",
        "/_replicate",
        Some(&json!({"source": "a", "target": "b", "continous": true})),
    );
    assert_eq!(st, 400);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("did you mean `continuous`"),
        "{v}"
    );

    // A document stored before the rule (replicated in, which skips validation) fails at
    // start-up with the reason instead of replicating the whole database.
    areq(&s, "PUT", "/a", None);
    let (st, v) = areq(
        &s,
        "POST",
        "/_replicator/_bulk_docs",
        Some(
            &json!({"new_edits": false, "docs": [{"_id": "old", "_rev": "1-abc",
            "source": "a", "target": "b", "selectr": {"type": "item"}}]}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    let state = wait_for(30, || {
        let v = areq(&s, "GET", "/_scheduler/docs/_replicator/old", None).1;
        (v["state"] == "failed").then_some(v)
    })
    .expect("failed");
    assert!(
        state["info"]["error"]
            .as_str()
            .unwrap()
            .contains("`selectr`"),
        "{state}"
    );
    assert_eq!(get(&s, "b", "").0, 404, "nothing was replicated");
}

#[test]
fn doc_check_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("r.json");
    std::fs::write(
        &f,
        json!({"source": "a", "selectr": {}, "continuous": "yes", "unmatched": "drop"}).to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_settee"))
        .args(["doc", "check"])
        .arg(&f)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 4, "{text}");
}

#[test]
fn a_field_list_in_both_directions_is_refused_on_one_server() {
    let s = common::start_admin();
    areq(&s, "PUT", "/_replicator", None);
    put(
        &s,
        "_replicator",
        json!({"_id": "out", "source": "col", "target": "http://peer.example/col", "fields": ["a"]}),
    );
    let (st, v) = areq(
        &s,
        "PUT",
        "/_replicator/back",
        Some(&json!({"source": "http://u:p@peer.example/col", "target": "col"})),
    );
    assert_eq!(st, 403, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("`out`"), "{v}");
    // The same pair without a field list is CouchDB's two-way sync: allowed.
    put(
        &s,
        "_replicator",
        json!({"_id": "out2", "source": "col2", "target": "http://peer.example/col2"}),
    );
    put(
        &s,
        "_replicator",
        json!({"_id": "back2", "source": "http://peer.example/col2", "target": "col2"}),
    );
}

#[test]
fn a_field_list_survives_sigkill_with_the_same_result() {
    let a = Server::process(&["--admin", common::ADMIN]);
    let b = common::start_admin();
    let c = common::start_admin();
    areq(&a, "PUT", "/src", None);
    for chunk in 0..5 {
        let docs: Vec<Value> = (0..1000)
            .map(
                |i| json!({"_id": format!("d{:05}", chunk * 1000 + i), "t": i, "secret": "S3cret"}),
            )
            .collect();
        let (st, v) = areq(&a, "POST", "/src/_bulk_docs", Some(&json!({"docs": docs})));
        assert_eq!(st, 201, "{v}");
    }
    areq(&a, "PUT", "/_replicator", None);
    put(
        &a,
        "_replicator",
        json!({"_id": "pub", "source": "src", "target": admin_url(&b, "dst"), "create_target": true,
            "continuous": true, "fields": ["t"], "worker_batch_size": 100, "checkpoint_interval": 200}),
    );
    let count = |s: &Server, db: &str| {
        areq(s, "GET", &format!("/{db}"), None).1["doc_count"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(wait_for(60, || (count(&b, "dst") >= 1000).then_some(())).is_some());
    let mut a = a;
    a.kill();
    let dir = std::mem::replace(&mut a.dir, tempfile::tempdir().unwrap());
    let a = Server::start_in(dir, &["--admin", common::ADMIN]);
    assert!(
        wait_for(120, || (count(&b, "dst") == 5000).then_some(())).is_some(),
        "resumed after SIGKILL: {}",
        areq(&a, "GET", "/_scheduler/docs/_replicator/pub", None).1
    );
    assert_eq!(update_seq(&b, "dst"), 5000, "nothing written twice");
    assert!(!everything(&b, "dst").contains("S3cret"));
    // The same replication run in one go elsewhere gives the same trees, revision for revision.
    one_shot(
        &a,
        json!({"source": "src", "target": admin_url(&c, "dst"), "create_target": true, "fields": ["t"]}),
    );
    assert_eq!(trees(&b, "dst"), trees(&c, "dst"));
}

#[test]
fn settee_replicate_takes_fields_and_unmatched() {
    let a = common::start_admin();
    let b = common::start_admin();
    areq(&a, "PUT", "/src", None);
    put(
        &a,
        "src",
        json!({"_id": "x", "pub": true, "title": "T", "secret": "S3cret"}),
    );
    put(
        &a,
        "src",
        json!({"_id": "y", "pub": true, "title": "U", "secret": "S3cret"}),
    );
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_settee"))
            .args([
                "replicate",
                "--quiet",
                "--create-target",
                "--selector",
                r#"{"pub": true}"#,
            ])
            .args(["--fields", "title", "--unmatched", "delete"])
            .arg(admin_url(&a, "src"))
            .arg(admin_url(&b, "dst"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run();
    assert_eq!(get(&b, "dst", "x").1["title"], "T");
    delete_doc(&a, "src", "y");
    run();
    assert_eq!(get(&b, "dst", "y").1["reason"], "deleted");
    assert!(!everything(&b, "dst").contains("S3cret"));
}
