//! The store's rules, exercised through its public API on a real sled directory.

use serde_json::{json, Value};
use settee::store::{
    AttMode, Database, DocError, DocOutcome, ReadOpts, Rev, Store, StoreConfig, StoreError,
};
use std::sync::Arc;

/// Opens the store in `path`. A store reopened in the same process may find the folder's
/// lock still held for a moment by the earlier instance's sled threads, which release it as
/// they end: wait for that rather than fail.
fn open_store(path: &std::path::Path) -> Store {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(&StoreConfig::new(path)) {
            Err(StoreError::InUse(_)) if std::time::Instant::now() < end => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => return r.unwrap(),
        }
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    (dir, store)
}

fn put(db: &Database, doc: Value) -> Result<String, DocError> {
    let out = db.bulk_docs(vec![doc], true).unwrap();
    out.into_iter().next().unwrap().result
}

fn replicate(db: &Database, doc: Value) -> Result<String, DocError> {
    let out = db.bulk_docs(vec![doc], false).unwrap();
    out.into_iter().next().unwrap().result
}

fn leaves(db: &Database, id: &str) -> Vec<String> {
    db.open_revs(id, None, false, &ReadOpts::default())
        .unwrap()
        .into_iter()
        .map(|d| d.unwrap()["_rev"].as_str().unwrap().to_owned())
        .collect()
}

fn all_doc_ids(db: &Database) -> Vec<String> {
    db.docs_from("", false)
        .map(|r| r.unwrap())
        .filter(|(_, rec)| !rec.is_deleted())
        .map(|(id, _)| id)
        .collect()
}

/// Writes new documents in one batch; their revisions, in order (every write must succeed).
fn write_all(db: &Database, docs: Vec<Value>) -> Vec<String> {
    db.bulk_docs(docs, true)
        .unwrap()
        .into_iter()
        .map(|o| o.result.unwrap())
        .collect()
}

fn change_ids(db: &Database, since: u64) -> Vec<(u64, String)> {
    db.changes(since, false)
        .map(|c| c.unwrap())
        .map(|c| (c.seq, c.id))
        .collect()
}

#[test]
fn create_update_and_conflict() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    let r1 = put(&db, json!({"_id": "a", "v": 1})).unwrap();
    assert!(r1.starts_with("1-"));
    // A second create without _rev is a conflict.
    assert_eq!(
        put(&db, json!({"_id": "a", "v": 2})),
        Err(DocError::Conflict)
    );
    let r2 = put(&db, json!({"_id": "a", "_rev": r1, "v": 2})).unwrap();
    assert!(r2.starts_with("2-"));
    // Editing a revision that is no longer a leaf is a conflict.
    assert_eq!(
        put(&db, json!({"_id": "a", "_rev": r1, "v": 3})),
        Err(DocError::Conflict)
    );
    let doc = db.get("a", None, &ReadOpts::default()).unwrap();
    assert_eq!(doc, json!({"_id": "a", "_rev": r2, "v": 2}));
    let info = db.info().unwrap();
    assert_eq!((info.doc_count, info.update_seq), (1, 2));
}

#[test]
fn replicated_conflict_picks_couchdb_winner_and_delete_promotes_other_branch() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    let r1 = put(&db, json!({"_id": "a", "v": 1})).unwrap();
    let h1 = r1.split_once('-').unwrap().1.to_owned();
    // Two branches at depth 2: "2-bbb" and "2-fff"; the greater id wins.
    for (h, v) in [("bbb", "b"), ("fff", "f")] {
        replicate(
            &db,
            json!({"_id":"a","_rev":format!("2-{h}"),"_revisions":{"start":2,"ids":[h,h1]},"v":v}),
        )
        .unwrap();
    }
    assert_eq!(leaves(&db, "a"), ["2-fff", "2-bbb"]);
    let opts = ReadOpts {
        conflicts: true,
        ..Default::default()
    };
    let doc = db.get("a", None, &opts).unwrap();
    assert_eq!(doc["_rev"], "2-fff");
    assert_eq!(doc["_conflicts"], json!(["2-bbb"]));
    // Deleting the winner promotes the other branch.
    let del = put(&db, json!({"_id":"a","_rev":"2-fff","_deleted":true})).unwrap();
    assert!(del.starts_with("3-"));
    let doc = db.get("a", None, &opts).unwrap();
    assert_eq!(doc["_rev"], "2-bbb");
    assert!(doc.get("_conflicts").is_none());
    let dc = db
        .get(
            "a",
            None,
            &ReadOpts {
                deleted_conflicts: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(dc["_deleted_conflicts"], json!([del]));
    assert_eq!(db.info().unwrap().doc_count, 1);
    // Deleting the last live branch deletes the doc.
    put(&db, json!({"_id":"a","_rev":"2-bbb","_deleted":true})).unwrap();
    assert!(matches!(
        db.get("a", None, &ReadOpts::default()),
        Err(StoreError::NotFound("deleted"))
    ));
    let info = db.info().unwrap();
    assert_eq!((info.doc_count, info.doc_del_count), (0, 1));
}

#[test]
fn replicated_write_of_present_revision_is_a_no_op() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    let doc = json!({"_id":"x","_rev":"2-b","_revisions":{"start":2,"ids":["b","a"]},"k":1});
    replicate(&db, doc.clone()).unwrap();
    let seq = db.info().unwrap().update_seq;
    assert_eq!(replicate(&db, doc).unwrap(), "2-b");
    // Also an ancestor alone.
    replicate(&db, json!({"_id":"x","_rev":"1-a"})).unwrap();
    assert_eq!(db.info().unwrap().update_seq, seq);
    assert_eq!(change_ids(&db, 0).len(), 1);
}

#[test]
fn changes_list_each_doc_once_in_seq_order() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    let ra = put(&db, json!({"_id":"a"})).unwrap();
    put(&db, json!({"_id":"b"})).unwrap();
    put(&db, json!({"_id":"c"})).unwrap();
    put(&db, json!({"_id":"a","_rev":ra,"n":2})).unwrap();
    let ids: Vec<String> = change_ids(&db, 0).into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, ["b", "c", "a"]);
    let seqs: Vec<u64> = change_ids(&db, 0).into_iter().map(|(s, _)| s).collect();
    assert_eq!(seqs, [2, 3, 4]);
    assert_eq!(change_ids(&db, 3), [(4, "a".to_owned())]);
    let desc: Vec<String> = db.changes(0, true).map(|c| c.unwrap().id).collect();
    assert_eq!(desc, ["a", "c", "b"]);
}

#[test]
fn new_doc_after_delete_extends_the_tombstone() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    let r1 = put(&db, json!({"_id":"a"})).unwrap();
    let r2 = put(&db, json!({"_id":"a","_rev":r1,"_deleted":true})).unwrap();
    let r3 = put(&db, json!({"_id":"a","again":true})).unwrap();
    assert!(r2.starts_with("2-") && r3.starts_with("3-"));
    let doc = db
        .get(
            "a",
            None,
            &ReadOpts {
                revs: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_revisions"]["start"], 3);
    assert_eq!(doc["_revisions"]["ids"].as_array().unwrap().len(), 3);
}

#[test]
fn same_edit_twice_gets_same_rev_id() {
    let (_d, s) = store();
    let a = s.create_db("a").unwrap();
    let b = s.create_db("b").unwrap();
    let ra = put(&a, json!({"_id":"x","k":[1,2],"o":{"p":1,"q":2}})).unwrap();
    let rb = put(&b, json!({"_id":"x","o":{"q":2,"p":1},"k":[1,2]})).unwrap();
    assert_eq!(ra, rb);
}

#[test]
fn purge_removes_leaf_and_doc_without_a_deletion() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    let ra = put(&db, json!({"_id":"a","v":1})).unwrap();
    put(&db, json!({"_id":"b","v":1})).unwrap();
    replicate(&db, json!({"_id":"b","_rev":"1-zzz","v":2})).unwrap();
    let seq_before = db.info().unwrap().update_seq;

    let (purge_seq, purged) = db
        .purge(vec![
            ("a".into(), vec![Rev::parse(&ra).unwrap()]),
            (
                "b".into(),
                vec![Rev::parse("1-zzz").unwrap(), Rev::parse("9-nope").unwrap()],
            ),
        ])
        .unwrap();
    assert_eq!(purge_seq, 2);
    assert_eq!(purged[0].1, vec![Rev::parse(&ra).unwrap()]);
    assert_eq!(purged[1].1, vec![Rev::parse("1-zzz").unwrap()]);

    assert_eq!(all_doc_ids(&db), ["b"]);
    assert!(db.doc("a").unwrap().is_none());
    // `a` vanished from the feed (no deletion row); `b` moved to a new seq with one leaf.
    let changes = change_ids(&db, 0);
    assert_eq!(
        changes.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert!(change_ids(&db, seq_before).iter().all(|(_, id)| id != "a"));
    assert_eq!(leaves(&db, "b").len(), 1);
    let info = db.info().unwrap();
    assert_eq!(
        (info.doc_count, info.doc_del_count, info.purge_seq),
        (1, 0, 2)
    );
    assert!(info.update_seq > seq_before);
    assert_eq!(db.purged_infos(0).unwrap().len(), 2);
    // The purged revision is missing again: a replicator would send it back.
    let diff = db
        .revs_diff(vec![("a".into(), vec![Rev::parse(&ra).unwrap()])])
        .unwrap();
    assert_eq!(diff.len(), 1);
}

#[test]
fn purged_infos_are_capped() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    db.set_purged_infos_limit(3).unwrap();
    for i in 0..6 {
        let r = put(&db, json!({"_id": format!("d{i}")})).unwrap();
        db.purge(vec![(format!("d{i}"), vec![Rev::parse(&r).unwrap()])])
            .unwrap();
    }
    let infos = db.purged_infos(0).unwrap();
    assert_eq!(infos.iter().map(|i| i.0).collect::<Vec<_>>(), [4, 5, 6]);
}

#[test]
fn revs_diff_reports_missing_and_possible_ancestors() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    replicate(
        &db,
        json!({"_id":"a","_rev":"2-b","_revisions":{"start":2,"ids":["b","a"]}}),
    )
    .unwrap();
    let diff = db
        .revs_diff(vec![
            (
                "a".into(),
                vec![Rev::parse("1-a").unwrap(), Rev::parse("3-c").unwrap()],
            ),
            ("new".into(), vec![Rev::parse("1-x").unwrap()]),
            ("a2".into(), vec![]),
        ])
        .unwrap();
    assert_eq!(diff.len(), 2);
    assert_eq!(diff[0].missing, vec![Rev::parse("3-c").unwrap()]);
    assert_eq!(diff[0].possible_ancestors, vec![Rev::parse("2-b").unwrap()]);
    assert_eq!(diff[1].id, "new");
    assert!(diff[1].possible_ancestors.is_empty());
}

#[test]
fn open_revs_with_latest_and_missing() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    replicate(
        &db,
        json!({"_id":"a","_rev":"3-c","_revisions":{"start":3,"ids":["c","b","a"]}}),
    )
    .unwrap();
    let opts = ReadOpts {
        revs: true,
        ..Default::default()
    };
    let r = db
        .open_revs(
            "a",
            Some(&[Rev::parse("2-b").unwrap(), Rev::parse("9-z").unwrap()]),
            true,
            &opts,
        )
        .unwrap();
    assert_eq!(r[0].as_ref().unwrap()["_rev"], "3-c");
    assert_eq!(
        r[0].as_ref().unwrap()["_revisions"],
        json!({"start":3,"ids":["c","b","a"]})
    );
    assert_eq!(r[1], Err("9-z".to_owned()));
    let r = db
        .open_revs("a", Some(&[Rev::parse("2-b").unwrap()]), false, &opts)
        .unwrap();
    assert_eq!(r[0], Err("2-b".to_owned()));
    assert!(matches!(
        db.open_revs("nope", None, false, &opts),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn revs_info_marks_available_and_missing() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    let r1 = put(&db, json!({"_id":"a"})).unwrap();
    let r2 = put(&db, json!({"_id":"a","_rev":r1,"x":1})).unwrap();
    let doc = db
        .get(
            "a",
            None,
            &ReadOpts {
                revs_info: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        doc["_revs_info"],
        json!([{"rev": r2, "status": "available"}, {"rev": r1, "status": "missing"}])
    );
}

#[test]
fn attachments_are_stored_once_and_shared_by_revisions() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    // "hello world" in base64.
    let r1 = put(
        &db,
        json!({"_id":"a","_attachments":{"t.txt":{"content_type":"text/plain","data":"aGVsbG8gd29ybGQ="}}}),
    )
    .unwrap();
    let stub = db.get("a", None, &ReadOpts::default()).unwrap();
    let att = &stub["_attachments"]["t.txt"];
    assert_eq!(att["stub"], true);
    assert_eq!(att["length"], 11);
    assert_eq!(att["revpos"], 1);
    assert_eq!(att["digest"], "md5-XrY7u+Ae7tCTyyK7j1rNww==");
    let size_one = db.info().unwrap().external_size;
    // A new revision carrying the stub shares the data.
    let r2 = put(
        &db,
        json!({"_id":"a","_rev":r1,"v":2,"_attachments":{"t.txt":{"stub":true}}}),
    )
    .unwrap();
    let full = db
        .get(
            "a",
            None,
            &ReadOpts {
                attachments: AttMode::All,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(full["_attachments"]["t.txt"]["data"], "aGVsbG8gd29ybGQ=");
    assert_eq!(full["_attachments"]["t.txt"]["revpos"], 1);
    let since = db
        .get(
            "a",
            None,
            &ReadOpts {
                attachments: AttMode::Since(vec![Rev::parse(&r1).unwrap()]),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(since["_attachments"]["t.txt"]["stub"], true);
    assert!(
        db.info().unwrap().external_size < size_one + 11,
        "data not copied"
    );
    let (meta, data) = db.attachment("a", None, "t.txt").unwrap();
    assert_eq!(
        (meta.content_type.as_str(), &data[..]),
        ("text/plain", &b"hello world"[..])
    );
    // A stub the previous revision does not have is refused.
    assert!(matches!(
        put(
            &db,
            json!({"_id":"a","_rev":r2,"_attachments":{"nope":{"stub":true}}})
        ),
        Err(DocError::MissingStub(_))
    ));
    // Dropping the attachment leaves data that compaction reclaims.
    put(&db, json!({"_id":"a","_rev":r2})).unwrap();
    assert_eq!(db.compact().unwrap(), 1);
}

#[test]
fn replicated_attachment_stub_resolves_against_existing_leaf() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    replicate(
        &db,
        json!({"_id":"a","_rev":"1-a","_attachments":{"f":{"content_type":"text/plain","data":"aGk=","revpos":1}}}),
    )
    .unwrap();
    let digest =
        db.get("a", None, &ReadOpts::default()).unwrap()["_attachments"]["f"]["digest"].clone();
    replicate(
        &db,
        json!({"_id":"a","_rev":"2-b","_revisions":{"start":2,"ids":["b","a"]},
               "_attachments":{"f":{"stub":true,"digest":digest,"revpos":1}}}),
    )
    .unwrap();
    let (_, data) = db.attachment("a", None, "f").unwrap();
    assert_eq!(&data[..], b"hi");
    assert!(matches!(
        replicate(
            &db,
            json!({"_id":"z","_rev":"1-z","_attachments":{"f":{"stub":true,"digest":"md5-x"}}})
        ),
        Err(DocError::MissingStub(_))
    ));
}

#[test]
fn revs_limit_stems_old_ancestors() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    db.set_revs_limit(3).unwrap();
    let mut rev = put(&db, json!({"_id":"a","n":0})).unwrap();
    for n in 1..6 {
        rev = put(&db, json!({"_id":"a","_rev":rev,"n":n})).unwrap();
    }
    let doc = db
        .get(
            "a",
            None,
            &ReadOpts {
                revs: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_revisions"]["start"], 6);
    assert_eq!(doc["_revisions"]["ids"].as_array().unwrap().len(), 3);
}

#[test]
fn local_docs_are_versioned_by_counter_and_never_in_changes() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    assert_eq!(put(&db, json!({"_id":"_local/cp","seq":1})).unwrap(), "0-1");
    assert_eq!(
        put(&db, json!({"_id":"_local/cp","seq":2})),
        Err(DocError::Conflict)
    );
    assert_eq!(
        put(&db, json!({"_id":"_local/cp","_rev":"0-1","seq":2})).unwrap(),
        "0-2"
    );
    assert_eq!(db.get_local("_local/cp").unwrap().unwrap()["seq"], 2);
    assert!(change_ids(&db, 0).is_empty());
    assert_eq!(db.info().unwrap().update_seq, 0);
    put(&db, json!({"_id":"_local/cp","_rev":"0-2","_deleted":true})).unwrap();
    assert!(db.get_local("_local/cp").unwrap().is_none());
}

#[test]
fn bad_documents_fail_alone_and_write_nothing() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    let out = db
        .bulk_docs(
            vec![
                json!({"_id":"ok"}),
                json!("not an object"),
                json!({"_id":"_bad"}),
                json!({"_id":"r","_rev":"garbage"}),
                json!({"_id":"v","_weird":1}),
                json!({"_id":"m","_rev":"2-x","_revisions":{"start":2,"ids":["y","z"]}}),
            ],
            true,
        )
        .unwrap();
    assert!(out[0].result.is_ok());
    let tags: Vec<&str> = out[1..]
        .iter()
        .map(|o| o.result.as_ref().unwrap_err().error_tag())
        .collect();
    assert_eq!(
        tags,
        [
            "bad_request",
            "illegal_docid",
            "bad_request",
            "doc_validation",
            // `_revisions` wins over `_rev` (as in CouchDB): an edit of 2-y, which `m`
            // does not have.
            "conflict"
        ]
    );
    assert_eq!(all_doc_ids(&db), ["ok"]);
    assert_eq!(db.info().unwrap().update_seq, 1);
}

#[test]
fn server_generates_ids_for_docs_without_one() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    let out = db
        .bulk_docs(vec![json!({"a":1}), json!({"a":2})], true)
        .unwrap();
    assert_eq!(out[0].id.len(), 32);
    assert_ne!(out[0].id, out[1].id);
}

#[test]
fn databases_are_isolated_recreated_fresh_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let uuid;
    {
        let s = open_store(dir.path());
        uuid = s.uuid().to_owned();
        let a = s.create_db("a").unwrap();
        put(&a, json!({"_id":"x"})).unwrap();
        assert!(matches!(s.create_db("a"), Err(StoreError::DbExists)));
        assert!(matches!(
            s.create_db("Bad"),
            Err(StoreError::IllegalDbName(_))
        ));
        let b = s.create_db("b").unwrap();
        put(&b, json!({"_id":"y"})).unwrap();
        s.delete_db("b").unwrap();
        assert!(matches!(s.db("b"), Err(StoreError::DbNotFound)));
        // Writes through a handle of a deleted database fail instead of resurrecting it.
        assert!(b.bulk_docs(vec![json!({"_id":"z"})], true).is_err());
        let b2 = s.create_db("b").unwrap();
        assert_eq!(b2.info().unwrap().doc_count, 0);
        assert_ne!(b2.instance_start_time(), "");
    }
    let s = open_store(dir.path());
    assert_eq!(s.uuid(), uuid);
    assert_eq!(s.all_dbs().unwrap(), ["a", "b"]);
    let a = s.db("a").unwrap();
    assert_eq!(a.info().unwrap().doc_count, 1);
    assert_eq!(a.info().unwrap().update_seq, 1);
}

#[test]
fn all_docs_order_and_ranges() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    for id in ["b", "a", "c", "B"] {
        put(&db, json!({"_id": id})).unwrap();
    }
    assert_eq!(all_doc_ids(&db), ["B", "a", "b", "c"]);
    let from_b: Vec<String> = db.docs_from("b", false).map(|r| r.unwrap().0).collect();
    assert_eq!(from_b, ["b", "c"]);
    let desc_b: Vec<String> = db.docs_from("b", true).map(|r| r.unwrap().0).collect();
    assert_eq!(desc_b, ["b", "a", "B"]);
    let desc_all: Vec<String> = db.docs_from("", true).map(|r| r.unwrap().0).collect();
    assert_eq!(desc_all, ["c", "b", "a", "B"]);
}

#[test]
fn concurrent_writers_all_land_and_share_flushes() {
    let (_d, s) = store();
    let db: Arc<Database> = s.create_db("db").unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    db.bulk_docs(vec![json!({"_id": format!("{t}-{i}")})], true)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let info = db.info().unwrap();
    assert_eq!((info.doc_count, info.update_seq), (200, 200));
    assert_eq!(change_ids(&db, 0).len(), 200);
}

/// `pending` is exact for small remainders and an upper bound (updates since) beyond.
#[test]
fn pending_exact_when_small_bounded_when_large() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let db = store.create_db("p").unwrap();
    let n = settee::store::PENDING_EXACT as u64 + 500;
    let docs: Vec<_> = (0..n).map(|i| json!({"_id": format!("d{i:05}")})).collect();
    db.bulk_docs(docs, true).unwrap();
    assert_eq!(db.pending(0), n);
    assert_eq!(db.pending(n - 10), 10);
    // Updating one document twice moves it: exact counting sees one entry.
    let rev = db.get("d00000", None, &ReadOpts::default()).unwrap()["_rev"].clone();
    let r2 = db
        .bulk_docs(vec![json!({"_id": "d00000", "_rev": rev})], true)
        .unwrap();
    assert!(r2[0].result.is_ok());
    assert_eq!(db.pending(n - 10), 11);
    assert_eq!(db.pending(n), 1);
}

/// Responses splice stored body bytes (`write_doc`, `open_revs_bytes`, `get_bytes`) instead of
/// rebuilding each document: they must say exactly what `doc_json` says, for every option.
#[test]
fn spliced_documents_equal_built_ones_for_every_option() {
    let (_d, store) = store();
    let db = store.create_db("splice").unwrap();
    let r1 = put(
        &db,
        json!({"_id": "plain", "a": 1, "s": "t\u{e9}\"x\\", "n": {"k": [1, 2.5, null]}}),
    )
    .unwrap();
    put(&db, json!({"_id": "plain", "_rev": r1, "a": 2})).unwrap();
    put(&db, json!({"_id": "empty"})).unwrap();
    let del = put(&db, json!({"_id": "gone", "a": 1})).unwrap();
    put(&db, json!({"_id": "gone", "_rev": del, "_deleted": true})).unwrap();
    let a1 = put(
        &db,
        json!({"_id": "att", "x": 1,
        "_attachments": {"f.txt": {"content_type": "text/plain", "data": "aGVsbG8="}}}),
    )
    .unwrap();
    put(&db, json!({"_id": "att", "_rev": a1, "x": 2,
        "_attachments": {"f.txt": {"stub": true}, "g.bin": {"content_type": "application/octet-stream", "data": "AAEC"}}})).unwrap();
    replicate(&db, json!({"_id": "conflicted", "_rev": "1-aaa", "v": "a"})).unwrap();
    replicate(&db, json!({"_id": "conflicted", "_rev": "1-bbb", "v": "b"})).unwrap();
    replicate(
        &db,
        json!({"_id": "conflicted", "_rev": "2-ccc", "_deleted": true,
        "_revisions": {"start": 2, "ids": ["ccc", "aaa"]}}),
    )
    .unwrap();
    replicate(&db, json!({"_id": "conflicted", "_rev": "1-ddd", "v": "d"})).unwrap();

    let mut option_sets = vec![ReadOpts::default()];
    for i in 0..32u32 {
        option_sets.push(ReadOpts {
            revs: i & 1 != 0,
            revs_info: i & 2 != 0,
            conflicts: i & 4 != 0,
            deleted_conflicts: i & 8 != 0,
            local_seq: i & 16 != 0,
            attachments: match i % 3 {
                0 => AttMode::Stubs,
                1 => AttMode::All,
                _ => AttMode::Since(vec![Rev::parse(&a1).unwrap()]),
            },
        });
    }
    let mut checked = 0;
    for c in db.changes(0, false) {
        let c = c.unwrap();
        for leaf in c.doc.leaves() {
            for opts in &option_sets {
                let built = db.doc_json(&c.id, &c.doc, leaf, opts).unwrap();
                let mut bytes = b"[".to_vec();
                db.write_doc(&mut bytes, &c.id, &c.doc, leaf, opts).unwrap();
                bytes.push(b']');
                let spliced: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(
                    spliced,
                    json!([built]),
                    "{} leaf {} {opts:?}",
                    c.id,
                    leaf.rev()
                );
                checked += 1;
            }
        }
        let opts = &option_sets[1];
        let by_value = db.open_revs(&c.id, None, false, opts).unwrap();
        let by_bytes: Vec<Value> = db
            .open_revs_bytes(&c.id, None, false, opts)
            .unwrap()
            .into_iter()
            .map(|d| serde_json::from_slice(&d.unwrap()).unwrap())
            .collect();
        assert_eq!(
            by_bytes,
            by_value.into_iter().map(Result::unwrap).collect::<Vec<_>>()
        );
        match db.get(&c.id, None, opts) {
            Ok(v) => {
                let b = db.get_bytes(&c.id, None, opts).unwrap();
                assert_eq!(serde_json::from_slice::<Value>(&b).unwrap(), v);
            }
            Err(e) => assert_eq!(
                db.get_bytes(&c.id, None, opts).unwrap_err().to_string(),
                e.to_string()
            ),
        }
    }
    // 5 docs; `conflicted` has 3 leaves: 7 leaves, 33 option sets each.
    assert_eq!(checked, 7 * 33);
}

/// sled's background threads can hold a closed store's file lock for a moment.
fn until_unlocked<T>(open: impl Fn() -> Option<T>) -> T {
    for _ in 0..50 {
        if let Some(t) = open() {
            return t;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the store stayed locked for 5 s")
}

/// A store written in format 1 (bodies under `b` keys, an `e` key per locally edited document)
/// opens with every document, body, conflict and edited mark intact, and no old key is left.
#[test]
fn format_1_store_is_migrated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let tree_name = "db/old/1-abc";
    {
        let sled = sled::open(dir.path()).unwrap();
        let catalog = sled.open_tree("catalog").unwrap();
        catalog
            .insert(
                "old",
                json!({"tree": tree_name, "instance_start_time": "1"})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
        let t = sled.open_tree(tree_name).unwrap();
        // Format 1 record: seq u64, node count u32, per node pos u64, deleted u8, parent u32,
        // hash length u16, hash — all little-endian, nothing after the nodes.
        let record = |seq: u64, nodes: &[(u64, bool, u32, &str)]| {
            let mut v = seq.to_le_bytes().to_vec();
            v.extend_from_slice(&(nodes.len() as u32).to_le_bytes());
            for (pos, deleted, parent, hash) in nodes {
                v.extend_from_slice(&pos.to_le_bytes());
                v.push(*deleted as u8);
                v.extend_from_slice(&parent.to_le_bytes());
                v.extend_from_slice(&(hash.len() as u16).to_le_bytes());
                v.extend_from_slice(hash.as_bytes());
            }
            v
        };
        let body_key = |id: &str, rev: &str| {
            let mut k = vec![b'b'];
            k.extend_from_slice(&(id.len() as u32).to_be_bytes());
            k.extend_from_slice(id.as_bytes());
            k.extend_from_slice(rev.as_bytes());
            k
        };
        let root = u32::MAX;
        t.insert(
            b"dmine",
            record(1, &[(1, false, root, "aa"), (2, false, 0, "bb")]),
        )
        .unwrap();
        t.insert(body_key("mine", "2-bb"), &br#"{"v":"mine"}"#[..])
            .unwrap();
        t.insert(b"emine", &b""[..]).unwrap();
        t.insert(
            b"dtheirs",
            record(2, &[(1, false, root, "cc"), (1, false, root, "dd")]),
        )
        .unwrap();
        t.insert(body_key("theirs", "1-cc"), &br#"{"v":"c"}"#[..])
            .unwrap();
        t.insert(body_key("theirs", "1-dd"), &br#"{"v":"d"}"#[..])
            .unwrap();
        let mut s1 = vec![b's'];
        s1.extend_from_slice(&1u64.to_be_bytes());
        t.insert(s1, &b"mine"[..]).unwrap();
        let mut s2 = vec![b's'];
        s2.extend_from_slice(&2u64.to_be_bytes());
        t.insert(s2, &b"theirs"[..]).unwrap();
        let meta = json!({"update_seq": 2, "purge_seq": 0, "doc_count": 2, "del_count": 0,
            "revs_limit": 1000, "purged_infos_limit": 1000, "external": 31});
        t.insert(b"mmeta", meta.to_string().as_bytes()).unwrap();
        sled.flush().unwrap();
    }
    {
        let store = open_store(dir.path());
        let db = store.db("old").unwrap();
        let mine = db.get("mine", None, &ReadOpts::default()).unwrap();
        assert_eq!(mine, json!({"_id": "mine", "_rev": "2-bb", "v": "mine"}));
        assert!(db.doc("mine").unwrap().unwrap().edited_locally());
        assert!(!db.doc("theirs").unwrap().unwrap().edited_locally());
        let opts = ReadOpts {
            conflicts: true,
            ..Default::default()
        };
        let theirs = db.get("theirs", None, &opts).unwrap();
        assert_eq!(
            theirs,
            json!({"_id": "theirs", "_rev": "1-dd", "v": "d", "_conflicts": ["1-cc"]})
        );
        assert_eq!(
            change_ids(&db, 0),
            vec![(1, "mine".into()), (2, "theirs".into())]
        );
        // Still writable, and a second open finds nothing to do. The update retires the
        // format-2 by-sequence entry it replaces.
        put(&db, json!({"_id": "mine", "_rev": "2-bb", "v": 3})).unwrap();
        assert_eq!(
            change_ids(&db, 0),
            vec![(2, "theirs".into()), (3, "mine".into())]
        );
    }
    let store = until_unlocked(|| Store::open(&StoreConfig::new(dir.path())).ok());
    let db = store.db("old").unwrap();
    assert_eq!(db.get("mine", None, &ReadOpts::default()).unwrap()["v"], 3);
    assert_eq!(
        db.get("theirs", None, &ReadOpts::default()).unwrap()["v"],
        "d"
    );
    drop((db, store));
    let sled = until_unlocked(|| sled::open(dir.path()).ok());
    let t = sled.open_tree(tree_name).unwrap();
    assert_eq!(t.scan_prefix(b"b").count(), 0, "format-1 body keys remain");
    assert_eq!(
        t.scan_prefix(b"e").count(),
        0,
        "format-1 edited keys remain"
    );
}

/// A big interactive batch hashes revisions on a second thread (see `Database::write`); it
/// must end exactly as the same edits written one at a time: same results, same trees, same
/// bodies. The batch mixes new documents, updates, stale and missing revisions, a recreation
/// on top of a tombstone, deletions, attachments, `_local` documents and an id written twice.
#[test]
fn big_interactive_batch_equals_the_same_edits_one_by_one() {
    let (_d1, s1) = store();
    let (_d2, s2) = store();
    let (one, big) = (s1.create_db("one").unwrap(), s2.create_db("big").unwrap());
    let mut setup = vec![json!({"_id": "gone", "v": 0})];
    for i in 0..20 {
        setup.push(json!({"_id": format!("u{i:02}"), "v": i}));
    }
    for db in [&one, &big] {
        let out = db.bulk_docs(setup.clone(), true).unwrap();
        let gone = out[0].result.clone().unwrap();
        put(db, json!({"_id": "gone", "_rev": gone, "_deleted": true})).unwrap();
    }
    let rev_of =
        |db: &Database, id: &str| db.get(id, None, &ReadOpts::default()).unwrap()["_rev"].clone();
    let mut batch = Vec::new();
    for i in 0..20 {
        let id = format!("u{i:02}");
        let rev = rev_of(&one, &id);
        batch.push(match i % 4 {
            0 => json!({"_id": id, "_rev": rev, "v": i * 10, "nested": {"b": 1, "a": [1, 2]}}),
            1 => json!({"_id": id, "_rev": "1-0000", "v": -1}),
            2 => json!({"_id": id, "_rev": rev, "_deleted": true}),
            _ => json!({"_id": id, "v": "no rev"}),
        });
    }
    for i in 0..60 {
        batch.push(json!({"_id": format!("n{i:02}"), "i": i, "pad": "x".repeat(i * 7)}));
    }
    batch.push(json!({"_id": "gone", "back": true}));
    batch.push(json!({"_id": "n00", "again": true}));
    batch.push(json!({"_id": "att", "_attachments": {"a.txt": {"content_type": "text/plain", "data": "aGk="}}}));
    batch.push(json!({"_id": "_local/x", "k": 1}));
    batch.push(json!({"_id": "missing", "_rev": "3-abc", "v": 1}));
    assert!(batch.len() >= 64);

    let singles: Vec<_> = batch
        .iter()
        .map(|d| one.bulk_docs(vec![d.clone()], true).unwrap().remove(0))
        .collect();
    let together = big.bulk_docs(batch.clone(), true).unwrap();
    assert_eq!(singles.len(), together.len());
    for (a, b) in singles.iter().zip(&together) {
        assert_eq!((&a.id, &a.result), (&b.id, &b.result));
    }
    assert!(together.iter().filter(|o| o.result.is_err()).count() >= 11);
    let ids: Vec<String> = batch
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_owned())
        .collect();
    for id in ids.iter().filter(|id| !id.starts_with("_local/")) {
        let all = |db: &Database| {
            db.open_revs(
                id,
                None,
                false,
                &ReadOpts {
                    revs: true,
                    ..Default::default()
                },
            )
            .ok()
        };
        assert_eq!(all(&one), all(&big), "{id}");
    }
    let local = one.get_local("_local/x").unwrap();
    assert!(local.is_some());
    assert_eq!(local, big.get_local("_local/x").unwrap());
}

/// A big interactive write goes to sled in chunks applied on another thread. Edits that reach
/// back to documents an earlier chunk wrote (updates, a deletion, a conflict), updates of
/// older documents spread over every chunk (each retiring a sequence from an older run),
/// attachment data repeated across chunks and a `_local` document end exactly as the same
/// edits made one at a time: same results, trees and counters, and a changes feed listing
/// each document once, at its latest sequence.
#[test]
fn chunked_write_equals_the_same_edits_one_by_one() {
    let (_d1, s1) = store();
    let (_d2, s2) = store();
    let (_d3, s3) = store();
    let one = s1.create_db("one").unwrap();
    let old: Vec<Value> = (0..300)
        .map(|i| json!({"_id": format!("old{i:03}"), "v": i}))
        .collect();
    let old_revs = write_all(&one, old.clone());
    // Revision ids depend only on the edit, so a scratch database tells what the big write's
    // new documents will get, and later documents of the same write can name them.
    let scratch = s3.create_db("scratch").unwrap();
    // ~2 KiB each, so that sled takes a while over every chunk.
    let fresh =
        |i: usize| json!({"_id": format!("new{i:03}"), "i": i, "pad": "y".repeat(2000 + i)});
    let rev_new = |i: usize| put(&scratch, fresh(i)).unwrap();
    let att = json!({"a.txt": {"content_type": "text/plain", "data": "c2FtZQ=="}});
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.push(fresh(i));
        if i % 7 == 3 {
            let o = i % 300;
            batch.push(json!({"_id": format!("old{o:03}"), "_rev": old_revs[o], "v": -(o as i64)}));
        }
        // Edits of documents the previous chunk wrote, most likely while sled still applies it.
        if i >= 100 && i % 4 == 0 && i != 200 {
            let j = i - 95;
            batch.push(json!({"_id": format!("new{j:03}"), "_rev": rev_new(j), "again": i}));
        }
        match i {
            200 => batch.push(json!({"_id": "new070", "_rev": rev_new(70), "_deleted": true})),
            260 => batch.push(json!({"_id": "new021", "_rev": "1-0000", "stale": true})),
            50 => batch.push(json!({"_id": "_local/chk", "n": 1})),
            _ if i % 40 == 0 => {
                batch.push(json!({"_id": format!("att{i}"), "_attachments": att.clone()}))
            }
            _ => {}
        }
    }
    assert!(batch.len() > 4 * 128, "several chunks");

    let singles: Vec<_> = batch
        .iter()
        .map(|d| one.bulk_docs(vec![d.clone()], true).unwrap().remove(0))
        .collect();
    // Whether the applier is still busy with a chunk when the next one needs it is a matter of
    // timing: a few rounds make a missed wait show.
    for round in 0..4 {
        let big = s2.create_db(&format!("big{round}")).unwrap();
        big.bulk_docs(old.clone(), true).unwrap();
        check_chunked(&one, &big, &batch, &singles);
    }
}

fn check_chunked(one: &Database, big: &Database, batch: &[Value], singles: &[DocOutcome]) {
    let together = big.bulk_docs(batch.to_vec(), true).unwrap();
    for (a, b) in singles.iter().zip(&together) {
        assert_eq!((&a.id, &a.result), (&b.id, &b.result));
    }
    assert_eq!(together.iter().filter(|o| o.result.is_err()).count(), 1);
    let (a, b) = (one.info().unwrap(), big.info().unwrap());
    assert_eq!(
        (a.doc_count, a.doc_del_count, a.external_size),
        (b.doc_count, b.doc_del_count, b.external_size)
    );
    assert_eq!(b.doc_count, 300 + 500 + 12 - 1);
    let mut ids: Vec<&str> = batch.iter().filter_map(|d| d["_id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids.iter().filter(|id| !id.starts_with("_local/")) {
        let all = |db: &Database| {
            let opts = ReadOpts {
                revs: true,
                ..Default::default()
            };
            db.open_revs(id, None, false, &opts).ok()
        };
        assert_eq!(all(one), all(big), "{id}");
    }
    assert_eq!(
        one.get_local("_local/chk").unwrap(),
        big.get_local("_local/chk").unwrap()
    );
    // The feed: every document once (an edit that missed retiring a sequence an earlier
    // chunk wrote would list its document twice), in sequence order, up to the update sequence.
    // (Within one chunk a document keeps the position of its first edit, as in any one batch,
    // so the order itself may differ from one-by-one writes.)
    let ids_of = |db: &Database| {
        let mut ids: Vec<String> = change_ids(db, 0).into_iter().map(|(_, id)| id).collect();
        ids.sort_unstable();
        ids
    };
    let fb = change_ids(big, 0);
    assert_eq!(fb.len(), 300 + 500 + 12);
    assert!(fb.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(fb.last().unwrap().0, b.update_seq);
    assert_eq!(ids_of(one), ids_of(big));
    for since in [0, 300, 301, 450, 700, b.update_seq] {
        assert_eq!(big.pending(since), change_ids(big, since).len() as u64);
    }
}

/// The by-sequence index holds runs of up to 64 changes per entry: updates, deletions and
/// purges take a document's old sequence out of whichever run holds it, so every feed lists
/// each document once, at its latest sequence, from any starting point and in both directions,
/// and `pending` stays exact.
#[test]
fn changes_stay_exact_across_runs() {
    let (_d, store) = store();
    let db = store.create_db("runs").unwrap();
    let docs: Vec<Value> = (0..150)
        .map(|i| json!({"_id": format!("d{i:03}"), "n": i}))
        .collect();
    let revs = write_all(&db, docs);
    // Updates from the first, middle and last runs, one of them alone, the rest together.
    put(&db, json!({"_id": "d070", "_rev": revs[70], "n": -70})).unwrap();
    let batch: Vec<Value> = [0usize, 1, 63, 64, 149]
        .iter()
        .map(|&i| json!({"_id": format!("d{i:03}"), "_rev": revs[i], "n": -(i as i64)}))
        .collect();
    db.bulk_docs(batch, true).unwrap();
    put(
        &db,
        json!({"_id": "d100", "_rev": revs[100], "_deleted": true}),
    )
    .unwrap();
    let r5 = db.get("d005", None, &ReadOpts::default()).unwrap()["_rev"]
        .as_str()
        .unwrap()
        .to_owned();
    db.purge(vec![("d005".to_owned(), vec![Rev::parse(&r5).unwrap()])])
        .unwrap();

    let all = change_ids(&db, 0);
    let mut ids: Vec<&str> = all.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(
        all.len(),
        149,
        "each live or deleted doc once; the purged one gone"
    );
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in sequence order");
    assert_eq!(
        &ids[ids.len() - 7..],
        ["d070", "d000", "d001", "d063", "d064", "d149", "d100"]
    );
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 149);
    // From any sequence (listed, retired, purged, inside emptied runs, past the end), exactly
    // the changes after it, and `pending` agrees.
    let top = db.info().unwrap().update_seq;
    for since in 0..=top + 1 {
        let rest = change_ids(&db, since);
        let want: Vec<(u64, String)> = all.iter().filter(|(s, _)| *s > since).cloned().collect();
        assert_eq!(rest, want, "since {since}");
        assert_eq!(db.pending(since), rest.len() as u64);
    }
    let down: Vec<(u64, String)> = db
        .changes(0, true)
        .map(|c| c.map(|c| (c.seq, c.id)).unwrap())
        .collect();
    assert_eq!(down, all.iter().rev().cloned().collect::<Vec<_>>());
}

/// Format 3 (by-sequence runs) reads format 2's entries unchanged, so a format-2 store opens
/// and is marked 3; a store marked newer than this settee is refused rather than misread (an
/// older settee would take a run for one document id).
#[test]
fn store_format_is_checked_and_raised() {
    let dir = tempfile::tempdir().unwrap();
    let set_format = |f: u64| {
        let sled = sled::open(dir.path()).unwrap();
        sled.open_tree("server")
            .unwrap()
            .insert("format", &f.to_le_bytes())
            .unwrap();
        sled.flush().unwrap();
    };
    let format = || {
        let sled = sled::open(dir.path()).unwrap();
        let v = sled
            .open_tree("server")
            .unwrap()
            .get("format")
            .unwrap()
            .unwrap();
        u64::from_le_bytes(v.as_ref().try_into().unwrap())
    };
    {
        let store = open_store(dir.path());
        let db = store.create_db("db").unwrap();
        put(&db, json!({"_id": "a"})).unwrap();
        store.flush().unwrap();
    }
    until_unlocked(|| sled::open(dir.path()).ok().map(drop));
    assert_eq!(format(), 3);
    set_format(2);
    {
        let store = until_unlocked(|| Store::open(&StoreConfig::new(dir.path())).ok());
        assert_eq!(
            change_ids(&store.db("db").unwrap(), 0),
            vec![(1, "a".into())]
        );
    }
    until_unlocked(|| sled::open(dir.path()).ok().map(drop));
    assert_eq!(format(), 3);
    set_format(4);
    let err = until_unlocked(|| match Store::open(&StoreConfig::new(dir.path())) {
        Err(StoreError::Corrupt(m)) => Some(m),
        _ => None,
    });
    assert!(err.contains("newer settee"), "{err}");
}

#[test]
fn a_hash_less_revision_is_written_read_and_replicated_as_couchdb_allows() {
    let (_d, s) = store();
    let db = s.create_db("db").unwrap();
    let out = db
        .bulk_docs(
            vec![json!({"_id": "foo", "_rev": "1-", "integer": 1})],
            false,
        )
        .unwrap();
    assert!(out[0].result.is_ok(), "{:?}", out[0].result);
    let doc = db
        .get(
            "foo",
            None,
            &ReadOpts {
                revs: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(doc["_rev"], "1-");
    assert_eq!(doc["_revisions"], json!({"start": 1, "ids": [""]}));
    // Written again from its own `_revisions` (a replication of it): nothing new.
    let again = db.bulk_docs(vec![doc.clone()], false).unwrap();
    assert!(again[0].result.is_ok());
    // An edit on top of it.
    let r2 = db
        .bulk_docs(
            vec![json!({"_id": "foo", "_rev": "1-", "integer": 2})],
            true,
        )
        .unwrap();
    assert!(r2[0].result.as_ref().unwrap().starts_with("2-"));
}
