//! The seeds' scenarios end to end, named after them, over real HTTP between real servers:
//! Uwazi (a private instance publishes whitelisted templates and properties to a public one;
//! documents unpublished and deleted later; several instances into one) and Directus (three
//! instances, each pushing its own collection with a field list per remote; creates, updates
//! and deletes all arrive), also with pouchdb-server, which cannot filter, as the source.

mod common;

use common::{
    admin_url, all_content, areq, delete_doc, edit_doc, get_doc, put_doc, wait_for, PouchServer,
    Server,
};
use serde_json::{json, Value};

fn replicator_doc(s: &Server, doc: Value) {
    areq(s, "PUT", "/_replicator", None);
    put_doc(s, "_replicator", doc);
}

/// Waits until `check` holds for the document `id` of `db` on `s` (its status and body).
fn until(s: &Server, db: &str, id: &str, what: &str, check: impl Fn(u16, &Value) -> bool) {
    let ok = wait_for(30, || {
        let (st, v) = get_doc(s, db, id);
        check(st, &v).then_some(())
    });
    assert!(
        ok.is_some(),
        "{id} on {db}: {what}; now {:?}",
        get_doc(s, db, id)
    );
}

fn deleted(st: u16, v: &Value) -> bool {
    st == 404 && v["reason"] == "deleted"
}

#[test]
fn uwazi_private_to_public_with_per_template_properties() {
    let private = common::start_admin();
    let other_office = common::start_admin();
    let public = common::start_admin();
    areq(&public, "PUT", "/public", None);
    for s in [&private, &other_office] {
        areq(s, "PUT", "/entities", None);
    }
    let docs = [
        json!({"_id": "case-1", "template": "case", "published": true, "title": "Flood", "date": "2026-11-02", "witness_name": "W. Secret"}),
        json!({"_id": "person-1", "template": "person", "published": true, "name": "Ana", "phone": "555-0100"}),
        json!({"_id": "case-2", "template": "case", "published": false, "title": "Draft", "witness_name": "X. Secret"}),
        json!({"_id": "country-ar", "type": "thesaurus", "name": "Argentina", "internal_code": "Secret-7"}),
        json!({"_id": "page-home", "type": "page", "published": true, "html": "<p>Secret menu</p>"}),
        json!({"_id": "shared-1", "template": "case", "published": true, "title": "From the private instance"}),
    ];
    for d in docs {
        put_doc(&private, "entities", d);
    }
    put_doc(
        &other_office,
        "entities",
        json!({"_id": "case-9", "template": "case", "published": true, "title": "Other office", "witness_name": "Y. Secret"}),
    );
    put_doc(
        &other_office,
        "entities",
        json!({"_id": "shared-1", "template": "case", "published": true, "title": "From the other office"}),
    );
    // Uwazi's sync config as a replication document: whitelisted templates and properties.
    let publish = |id: &str| {
        json!({"_id": id, "source": "entities", "target": admin_url(&public, "public"), "continuous": true,
        "selector": {"$or": [{"published": true, "template": {"$in": ["case", "person"]}}, {"type": "thesaurus"}]},
        "fields": [
            {"selector": {"template": "case"}, "fields": ["template", "published", "title", "date"]},
            {"selector": {"template": "person"}, "fields": ["template", "published", "name"]},
            {"selector": {"type": "thesaurus"}, "fields": ["type", "name"]}],
        "unmatched": "delete"})
    };
    replicator_doc(&private, publish("publish"));
    replicator_doc(&other_office, publish("publish"));

    for id in ["case-1", "person-1", "country-ar", "case-9"] {
        until(&public, "public", id, "arrives", |st, _| st == 200);
    }
    until(
        &public,
        "public",
        "shared-1",
        "both instances' versions",
        |_, _| {
            let (_, v) = areq(&public, "GET", "/public/shared-1?conflicts=true", None);
            v["_conflicts"].as_array().is_some_and(|c| c.len() == 1)
        },
    );
    let (_, case1) = get_doc(&public, "public", "case-1");
    assert_eq!(
        (case1["title"].clone(), case1["date"].clone()),
        (json!("Flood"), json!("2026-11-02"))
    );
    assert_eq!(
        get_doc(&public, "public", "case-2").0,
        404,
        "unpublished: private"
    );
    assert_eq!(
        get_doc(&public, "public", "page-home").0,
        404,
        "pages are not synced"
    );

    // An edit of a public property arrives; a document unpublished later and one deleted
    // disappear from the public side.
    edit_doc(
        &private,
        "entities",
        "case-1",
        json!({"title": "Flood of 2026"}),
    );
    until(&public, "public", "case-1", "the edit", |_, v| {
        v["title"] == "Flood of 2026"
    });
    edit_doc(&private, "entities", "case-1", json!({"published": false}));
    delete_doc(&private, "entities", "person-1");
    until(&public, "public", "case-1", "unpublished", deleted);
    until(&public, "public", "person-1", "deleted", deleted);

    // Several instances into one: unpublishing shared-1 here removes this instance's
    // version only; the other office's stays, and the job says so.
    edit_doc(
        &private,
        "entities",
        "shared-1",
        json!({"published": false}),
    );
    let kept = wait_for(30, || {
        let v = areq(
            &private,
            "GET",
            "/_scheduler/docs/_replicator/publish",
            None,
        )
        .1;
        v["info"]["kept"]
            .as_array()
            .is_some_and(|k| k.contains(&json!("shared-1")))
            .then_some(v)
    });
    assert!(kept.is_some(), "info.kept names shared-1");
    until(
        &public,
        "public",
        "shared-1",
        "the other office's version wins",
        |st, v| st == 200 && v["title"] == "From the other office",
    );
    assert_eq!(
        get_doc(&public, "public", "case-9").1["title"],
        "Other office"
    );

    let all = all_content(&public, "public");
    assert!(
        !all.contains("Secret") && !all.contains("555-0100"),
        "a private property leaked: {all}"
    );
}

#[test]
fn directus_three_instances_with_per_remote_field_lists() {
    let one = common::start_admin();
    let two = common::start_admin();
    let three = common::start_admin();
    for s in [&one, &two, &three] {
        areq(s, "PUT", "/directus", None);
    }
    // Each instance owns a collection and pushes it to the other two, with a field list
    // per remote (the extension's `schema` of each remote source).
    let push = |from: &Server, id: &str, to: &Server, collection: &str, fields: Value| {
        replicator_doc(
            from,
            json!({"_id": id, "source": "directus", "target": admin_url(to, "directus"), "continuous": true,
                "selector": {"collection": collection}, "fields": fields, "unmatched": "delete"}),
        );
    };
    push(
        &one,
        "articles-to-2",
        &two,
        "articles",
        json!(["collection", "title", "body"]),
    );
    push(
        &one,
        "articles-to-3",
        &three,
        "articles",
        json!(["collection", "title"]),
    );
    push(
        &two,
        "events-to-1",
        &one,
        "events",
        json!(["collection", "name", "date"]),
    );
    push(
        &two,
        "events-to-3",
        &three,
        "events",
        json!(["collection", "name"]),
    );
    push(
        &three,
        "products-to-1",
        &one,
        "products",
        json!(["collection", "sku"]),
    );
    push(
        &three,
        "products-to-2",
        &two,
        "products",
        json!(["collection", "sku", "price"]),
    );

    // Create.
    put_doc(
        &one,
        "directus",
        json!({"_id": "a1", "collection": "articles", "title": "T", "body": "B", "internal_rating": 5}),
    );
    put_doc(
        &two,
        "directus",
        json!({"_id": "e1", "collection": "events", "name": "N", "date": "2027-01-01", "budget": 100}),
    );
    put_doc(
        &three,
        "directus",
        json!({"_id": "p1", "collection": "products", "sku": "S1", "price": 9, "cost": 4}),
    );
    until(&two, "directus", "a1", "article with body", |_, v| {
        v["body"] == "B" && v.get("internal_rating").is_none()
    });
    until(&three, "directus", "a1", "article, title only", |st, v| {
        st == 200 && v.get("body").is_none() && v["title"] == "T"
    });
    until(&one, "directus", "e1", "event with date", |_, v| {
        v["date"] == "2027-01-01" && v.get("budget").is_none()
    });
    until(&three, "directus", "e1", "event, name only", |st, v| {
        st == 200 && v.get("date").is_none()
    });
    until(&one, "directus", "p1", "product, sku only", |st, v| {
        st == 200 && v.get("price").is_none() && v.get("cost").is_none()
    });
    until(&two, "directus", "p1", "product with price", |_, v| {
        v["price"] == 9 && v.get("cost").is_none()
    });

    // Update.
    edit_doc(&one, "directus", "a1", json!({"title": "T2"}));
    edit_doc(&two, "directus", "e1", json!({"name": "N2"}));
    edit_doc(&three, "directus", "p1", json!({"sku": "S2"}));
    for s in [&two, &three] {
        until(s, "directus", "a1", "updated title", |_, v| {
            v["title"] == "T2"
        });
    }
    for s in [&one, &three] {
        until(s, "directus", "e1", "updated name", |_, v| {
            v["name"] == "N2"
        });
    }
    for s in [&one, &two] {
        until(s, "directus", "p1", "updated sku", |_, v| v["sku"] == "S2");
    }

    // Delete (plain DELETEs, as the extension's delete event).
    delete_doc(&one, "directus", "a1");
    delete_doc(&two, "directus", "e1");
    delete_doc(&three, "directus", "p1");
    for (s, id) in [
        (&two, "a1"),
        (&three, "a1"),
        (&one, "e1"),
        (&three, "e1"),
        (&one, "p1"),
        (&two, "p1"),
    ] {
        until(s, "directus", id, "deleted", deleted);
    }
    for s in [&one, &two, &three] {
        let all = all_content(s, "directus");
        assert!(
            !all.contains("internal_rating") && !all.contains("budget") && !all.contains("cost"),
            "{all}"
        );
    }
}

#[test]
fn uwazi_publishing_from_pouchdb_server_which_cannot_filter() {
    // The private side is pouchdb-server (stock: it cannot take a selector by POST), so
    // settee filters on its side; field lists and plain deletions work the same.
    let p = PouchServer::start(&["--no-selector-shim"]);
    let public = common::start_admin();
    let src = format!("{}/entities", p.1.trim_end_matches('/'));
    let (st, _, _) = common::raw(p.addr(), "PUT", "/entities", &[], None);
    assert!(st == 201 || st == 412, "{st}");
    for d in [
        json!({"_id": "case-1", "published": true, "title": "Flood", "witness_name": "W. Secret"}),
        json!({"_id": "case-2", "published": true, "title": "Fire", "witness_name": "V. Secret"}),
        json!({"_id": "case-3", "published": false, "title": "Draft"}),
    ] {
        let (st, _, b) = common::raw(
            p.addr(),
            "POST",
            "/entities",
            &[],
            Some(d.to_string().into_bytes()),
        );
        assert!(st == 201, "{}", String::from_utf8_lossy(&b));
    }
    replicator_doc(
        &public,
        json!({"_id": "pull", "source": src, "target": "public", "create_target": true, "continuous": true,
            "selector": {"published": true}, "fields": ["title", "published"], "unmatched": "delete"}),
    );
    until(&public, "public", "case-1", "arrives", |st, _| st == 200);
    until(&public, "public", "case-2", "arrives", |st, _| st == 200);
    assert_eq!(get_doc(&public, "public", "case-3").0, 404);
    // Unpublish case-1 and delete case-2 on pouchdb-server.
    let (_, _, b) = common::raw(p.addr(), "GET", "/entities/case-1", &[], None);
    let mut c1: Value = serde_json::from_slice(&b).unwrap();
    c1["published"] = json!(false);
    let (st, _, _) = common::raw(
        p.addr(),
        "PUT",
        "/entities/case-1",
        &[],
        Some(c1.to_string().into_bytes()),
    );
    assert_eq!(st, 201);
    let (_, _, b) = common::raw(p.addr(), "GET", "/entities/case-2", &[], None);
    let c2: Value = serde_json::from_slice(&b).unwrap();
    let (st, _, _) = common::raw(
        p.addr(),
        "DELETE",
        &format!("/entities/case-2?rev={}", c2["_rev"].as_str().unwrap()),
        &[],
        None,
    );
    assert_eq!(st, 200);
    until(&public, "public", "case-1", "unpublished", deleted);
    until(&public, "public", "case-2", "deleted", deleted);
    let all = all_content(&public, "public");
    assert!(!all.contains("Secret"), "{all}");
}

#[test]
fn publishing_to_pouchdb_server_sends_only_listed_fields() {
    let private = common::start_admin();
    let p = PouchServer::start(&[]);
    areq(&private, "PUT", "/entities", None);
    put_doc(
        &private,
        "entities",
        json!({"_id": "e1", "published": true, "title": "T", "witness_name": "W. Secret"}),
    );
    put_doc(
        &private,
        "entities",
        json!({"_id": "e2", "published": true, "title": "U", "witness_name": "Z. Secret"}),
    );
    let target = format!("{}/public", p.1.trim_end_matches('/'));
    let body = json!({"source": "entities", "target": target, "create_target": true,
        "selector": {"published": true}, "fields": ["title"], "unmatched": "delete"});
    let (st, v) = areq(&private, "POST", "/_replicate", Some(&body));
    assert_eq!(st, 200, "{v}");
    edit_doc(&private, "entities", "e1", json!({"published": false}));
    delete_doc(&private, "entities", "e2");
    put_doc(
        &private,
        "entities",
        json!({"_id": "e3", "published": true, "title": "V", "witness_name": "Q. Secret"}),
    );
    let (st, v) = areq(&private, "POST", "/_replicate", Some(&body));
    assert_eq!(st, 200, "{v}");
    let (_, _, b) = common::raw(
        p.addr(),
        "GET",
        "/public/_changes?include_docs=true&style=all_docs",
        &[],
        None,
    );
    let ch = String::from_utf8_lossy(&b).into_owned();
    assert!(!ch.contains("Secret"), "{ch}");
    let get = |id: &str| -> Value {
        let (_, _, b) = common::raw(p.addr(), "GET", &format!("/public/{id}"), &[], None);
        serde_json::from_slice(&b).unwrap()
    };
    assert_eq!(get("e3")["title"], "V");
    // PouchDB answers a deleted document as "missing": its feed says it is deleted.
    let feed: Value = serde_json::from_str(&ch).unwrap();
    let deleted: Vec<&str> = feed["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["deleted"] == true)
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(deleted, ["e1", "e2"], "{ch}");
    assert_eq!(get("e1")["error"], "not_found");
}
