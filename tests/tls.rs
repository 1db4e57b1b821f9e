//! HTTPS: `settee serve --tls-cert --tls-key`, and replications to HTTPS peers with their
//! certificates verified by default, a CA named in the document (`"tls": {"ca": PEM}`) or, for
//! a test peer, no check (`"tls": {"verify": false}`). The certificates are made here: a CA and
//! a server certificate for 127.0.0.1 signed by it.

mod common;

use std::path::PathBuf;

use common::{admin_trees, areq, start_admin, wait_for, Server, ADMIN};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use serde_json::{json, Value};

struct Pki {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    ca_pem: String,
}

/// A CA, and a certificate for 127.0.0.1 signed by it (the chain in `cert`, its key in `key`).
fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    Pki {
        _dir: dir,
        cert,
        key,
        ca_pem: ca.pem(),
    }
}

fn state(s: &Server, id: &str) -> Value {
    areq(
        s,
        "GET",
        &format!("/_scheduler/docs/_replicator/{id}"),
        None,
    )
    .1
}

fn until_completed(s: &Server, id: &str) {
    assert!(
        wait_for(60, || (state(s, id)["state"] == "completed").then_some(())).is_some(),
        "{id}: {}",
        state(s, id)
    );
}

#[test]
fn settee_to_settee_over_https_with_certificates_verified() {
    let pki = pki();
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let b = Server::start(&["--admin", ADMIN, "--tls-cert", cert, "--tls-key", key]);
    let a = start_admin();
    areq(&a, "PUT", "/src", None);
    let docs: Vec<Value> = (0..50)
        .map(|i| json!({"_id": format!("d{i:02}"), "n": i}))
        .collect();
    areq(
        &a,
        "POST",
        "/src/_bulk_docs",
        Some(&json!({ "docs": docs })),
    );
    let https = |db: &str| format!("https://{ADMIN}@{}/{db}", b.addr);
    let put = |id: &str, doc: Value| {
        let (st, v) = areq(&a, "PUT", &format!("/_replicator/{id}"), Some(&doc));
        (st, v)
    };

    // Plain HTTP to the HTTPS port gets no answer.
    assert_eq!(common::try_status(&b.addr, "/"), None);

    // Not trusted by default: a clear reason, saying what to do, no password.
    let (st, v) = put(
        "untrusted",
        json!({"source": "src", "target": https("dst"), "create_target": true}),
    );
    assert_eq!(st, 201, "{v}");
    let shown = wait_for(60, || {
        let v = state(&a, "untrusted");
        v["info"]["error"].is_string().then_some(v)
    })
    .expect("the untrusted peer's error shows");
    let reason = shown["info"]["error"].as_str().unwrap();
    assert!(
        reason.contains("certificate") && reason.contains("\"tls\""),
        "{reason}"
    );
    assert!(!shown.to_string().contains(":pw@"), "{shown}");

    // The document edited to trust the peer's CA, as the reason says: it completes.
    let (_, cur) = areq(&a, "GET", "/_replicator/untrusted", None);
    let (st, v) = put(
        "untrusted",
        json!({"_rev": cur["_rev"], "source": "src", "target": https("dst"), "create_target": true,
            "tls": {"ca": pki.ca_pem}}),
    );
    assert_eq!(st, 201, "{v}");
    until_completed(&a, "untrusted");
    // And back, to read what landed: through HTTPS again, this time without verification.
    let (st, v) = put(
        "back",
        json!({"source": https("dst"), "target": "back", "create_target": true, "tls": {"verify": false}}),
    );
    assert_eq!(st, 201, "{v}");
    until_completed(&a, "back");
    assert_eq!(admin_trees(&a, "back"), admin_trees(&a, "src"));
    // Checking a document that turns verification off says what that means.
    let (_, back) = areq(&a, "GET", "/_replicator/back", None);
    let mut back = back.as_object().unwrap().clone();
    back.retain(|k, _| !k.starts_with('_'));
    let (st, v) = areq(
        &a,
        "POST",
        "/_replicator/_validate",
        Some(&Value::Object(back)),
    );
    assert_eq!(st, 200, "{v}");
    assert!(v["warnings"].to_string().contains("not checked"), "{v}");
}

#[test]
fn bad_tls_options_and_files_are_refused_with_reasons() {
    let a = start_admin();
    for (tls, says) in [
        (json!({"ca": "not a certificate"}), "holds no certificate"),
        (json!({"verify": "no"}), "true or false"),
        (json!({"cafile": "/etc/ssl/x.pem"}), "takes \"ca\""),
        (json!("strict"), "must be an object"),
    ] {
        let (st, v) = areq(
            &a,
            "PUT",
            &format!("/_replicator/t{}", rand::random::<u32>()),
            Some(&json!({"source": "a", "target": "https://127.0.0.1:1/b", "tls": tls})),
        );
        assert_eq!(st, 403, "{tls}: {v}");
        assert!(v["reason"].as_str().unwrap().contains(says), "{tls}: {v}");
    }
    // A server given a key that is not one refuses to start, naming the file.
    let pki = pki();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_settee"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data"])
        .arg(tempfile::tempdir().unwrap().path())
        .arg("--tls-cert")
        .arg(&pki.cert)
        .arg("--tls-key")
        .arg(&pki.cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-key") && err.contains("cert.pem"),
        "{err}"
    );
    // One of the pair alone is a usage error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_settee"))
        .args(["serve", "--tls-cert"])
        .arg(&pki.cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
