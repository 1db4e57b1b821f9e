//! Replications through a network that misbehaves: the project's fault proxy
//! (`tests/common/fault_proxy.rs`) between a job and its peer takes the peer down, resets every
//! connection, cuts connections mid-stream, adds latency, or accepts and never answers. Every
//! test ends with both sides holding identical leaves, and checks the job's state while the
//! fault lasts: `running` with `info.error` while requests are retried, or `crashing`, the
//! error naming the peer without its password; clean again once requests succeed.

mod common;

use std::collections::BTreeMap;

use common::fault_proxy::{Fault, FaultProxy};
use common::{admin_trees, areq, start_admin, wait_for, Server, ADMIN};
use serde_json::{json, Value};

fn put_many(s: &Server, db: &str, range: std::ops::Range<usize>) {
    let docs: Vec<Value> = range
        .map(|i| json!({"_id": format!("d{i:05}"), "n": i, "pad": "x".repeat(200)}))
        .collect();
    let (st, v) = areq(
        s,
        "POST",
        &format!("/{db}/_bulk_docs"),
        Some(&json!({ "docs": docs })),
    );
    assert_eq!(st, 201, "{v}");
}

fn doc_state(s: &Server, id: &str) -> Value {
    areq(
        s,
        "GET",
        &format!("/_scheduler/docs/_replicator/{id}"),
        None,
    )
    .1
}

fn same(a: &Server, adb: &str, b: &Server, bdb: &str) -> bool {
    let (ta, tb): (BTreeMap<_, _>, BTreeMap<_, _>) = (admin_trees(a, adb), admin_trees(b, bdb));
    !ta.is_empty() && ta == tb
}

fn until_same(a: &Server, adb: &str, b: &Server, bdb: &str, what: &str) {
    assert!(
        wait_for(120, || same(a, adb, b, bdb).then_some(())).is_some(),
        "{what}: the two sides did not converge"
    );
}

/// Waits until the job shows the fault, and checks how: an error naming the peer as the
/// proxy's address, never its password, while `running` (retrying) or `crashing`.
fn until_fault_shown(s: &Server, id: &str, proxy: &FaultProxy) -> Value {
    let v = wait_for(60, || {
        let v = doc_state(s, id);
        v["info"]["error"].is_string().then_some(v)
    })
    .unwrap_or_else(|| panic!("the fault never showed: {}", doc_state(s, id)));
    let state = v["state"].as_str().unwrap_or_default();
    assert!(
        state == "running" || state == "crashing",
        "state during a fault: {v}"
    );
    let err = v["info"]["error"].as_str().unwrap();
    assert!(err.contains(&proxy.addr), "the error names the peer: {err}");
    assert!(!v.to_string().contains(":pw@"), "no password: {v}");
    v
}

fn until_clean(s: &Server, id: &str) {
    assert!(
        wait_for(60, || {
            let v = doc_state(s, id);
            (v["state"] == "running" && v["info"]["error"].is_null()).then_some(())
        })
        .is_some(),
        "back to a clean running: {}",
        doc_state(s, id)
    );
}

/// A fault in force while `range` is written on `a`: the job `id` on `on` shows it; once it is
/// lifted, `a`'s `src` and `b`'s `dst` converge and the job is clean again.
fn through(
    proxy: &FaultProxy,
    fault: Fault,
    (on, id): (&Server, &str),
    (a, b): (&Server, &Server),
    range: std::ops::Range<usize>,
) {
    proxy.set(fault);
    put_many(a, "src", range);
    until_fault_shown(on, id, proxy);
    proxy.set(Fault::None);
    until_same(a, "src", b, "dst", &format!("after {fault:?}"));
    until_clean(on, id);
}

/// Two servers, `a`'s `src` pushed continuously to `b`'s `dst` through a proxy by the
/// `_replicator` document `id` (with `options` added).
fn push_through_proxy(id: &str, options: Value) -> (Server, Server, FaultProxy) {
    let (a, b) = (start_admin(), start_admin());
    areq(&a, "PUT", "/src", None);
    areq(&b, "PUT", "/dst", None);
    let proxy = FaultProxy::start(&b.addr);
    let mut doc = json!({"source": "src", "target": proxy.url(ADMIN, "dst"), "continuous": true});
    for (k, v) in options.as_object().unwrap() {
        doc[k] = v.clone();
    }
    let (st, v) = areq(&a, "PUT", &format!("/_replicator/{id}"), Some(&doc));
    assert_eq!(st, 201, "{v}");
    (a, b, proxy)
}

#[test]
fn continuous_push_survives_a_target_outage_reset_storms_and_cuts() {
    let (a, b, proxy) = push_through_proxy("out", json!({}));
    put_many(&a, "src", 0..200);
    until_same(&a, "src", &b, "dst", "before any fault");

    // The target goes down while writes go on; then a reset storm (every connection reset).
    through(&proxy, Fault::Down, (&a, "out"), (&a, &b), 200..400);
    through(&proxy, Fault::Reset, (&a, "out"), (&a, &b), 400..600);

    // Connections cut mid-stream at random while a thousand documents cross, with latency.
    proxy.set(Fault::Cut(32 * 1024));
    put_many(&a, "src", 600..1600);
    until_same(&a, "src", &b, "dst", "through random cuts");
    proxy.set(Fault::Latency(std::time::Duration::from_millis(20)));
    put_many(&a, "src", 1600..1700);
    until_same(&a, "src", &b, "dst", "through a slow link");
}

#[test]
fn continuous_pull_survives_a_source_outage() {
    let (a, b) = (start_admin(), start_admin());
    areq(&a, "PUT", "/src", None);
    let proxy = FaultProxy::start(&a.addr);
    let (st, v) = areq(
        &b,
        "PUT",
        "/_replicator/in",
        Some(
            &json!({"source": proxy.url(ADMIN, "src"), "target": "dst", "create_target": true, "continuous": true}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    put_many(&a, "src", 0..100);
    until_same(&a, "src", &b, "dst", "before the outage");
    through(&proxy, Fault::Down, (&b, "in"), (&a, &b), 100..300);
}

#[test]
fn one_shot_through_random_cuts_completes() {
    let (a, b) = (start_admin(), start_admin());
    areq(&a, "PUT", "/src", None);
    put_many(&a, "src", 0..3000);
    let proxy = FaultProxy::start(&b.addr);
    proxy.set(Fault::Cut(64 * 1024));
    let (st, v) = areq(
        &a,
        "PUT",
        "/_replicator/once",
        Some(&json!({"source": "src", "target": proxy.url(ADMIN, "dst"), "create_target": true})),
    );
    assert_eq!(st, 201, "{v}");
    let done = wait_for(120, || {
        let v = doc_state(&a, "once");
        (v["state"] == "completed").then_some(v)
    });
    assert!(done.is_some(), "{}", doc_state(&a, "once"));
    assert!(same(&a, "src", &b, "dst"), "identical leaves");
}

/// A peer that accepts and never answers: the job gives up on each request after its
/// `connection_timeout`, says so, and catches up once the peer answers.
#[test]
fn a_peer_that_never_answers_is_shown_and_survived() {
    let (a, b, proxy) = push_through_proxy(
        "mute",
        json!({"connection_timeout": 2000, "retries_per_request": 2}),
    );
    put_many(&a, "src", 0..50);
    until_same(&a, "src", &b, "dst", "before the peer went silent");
    proxy.set(Fault::BlackHole);
    put_many(&a, "src", 50..100);
    until_fault_shown(&a, "mute", &proxy);
    proxy.set(Fault::None);
    until_same(&a, "src", &b, "dst", "after the peer answered again");
}
