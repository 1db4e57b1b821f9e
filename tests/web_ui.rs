//! The page at `/_utils/` in a real browser: Chromium (the system's `/usr/bin/chromium`)
//! driven by `tests/node/web-ui.js` through playwright-core, against a settee with an admin.
//! The script logs in through the form, watches a continuous replication's progress move while
//! documents keep arriving, finds a failed document's reason, pastes the CouchDB sharing
//! guide's document into the editor at `#database/_replicator/_new`, sees validation errors
//! inline, makes a replication with the form and sees it run, browses a database down to a
//! conflicted document, checks no credential reaches the screen, and logs out; it writes
//! screenshots to `target/screenshots`. See the script's header for every check.
//!
//! Without `/usr/bin/chromium` the test says it was skipped and passes, unless
//! `SETTEE_REQUIRE_BROWSER=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Width and height of a PNG file (from its IHDR chunk).
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        b.len() > 24 && b.starts_with(b"\x89PNG\r\n\x1a\n") && &b[12..16] == b"IHDR",
        "{} is not a PNG",
        path.display()
    );
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
fn web_page_in_a_real_browser() {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("SETTEE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "SETTEE_REQUIRE_BROWSER=1 but there is no browser at {CHROMIUM} (apt-get install chromium)"
        );
        println!(
            "web_ui: skipped, no browser at {CHROMIUM} (SETTEE_REQUIRE_BROWSER=1 makes this fail)"
        );
        return;
    }
    let node = common::node_dir();
    assert!(
        node.join("node_modules/playwright-core").is_dir(),
        "tests/node/node_modules/playwright-core is missing: run `cd tests/node && npm ci` (the lockfile lists it)"
    );
    let s = common::start_admin();

    // The page is public (it shows a login form) and is the files in src/http/web.
    for (name, ctype, file) in [
        ("", "text/html", include_str!("../src/http/web/index.html")),
        (
            "app.js",
            "text/javascript",
            include_str!("../src/http/web/app.js"),
        ),
        (
            "app.css",
            "text/css",
            include_str!("../src/http/web/app.css"),
        ),
    ] {
        let (st, headers, body) = s.raw("GET", &format!("/_utils/{name}"), &[], None);
        assert_eq!(st, 200, "/_utils/{name}");
        let ct = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str());
        assert!(ct.is_some_and(|c| c.starts_with(ctype)), "{name}: {ct:?}");
        assert!(
            body == file.as_bytes(),
            "/_utils/{name} is not src/http/web's file"
        );
    }

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let _ = std::fs::remove_file(shots.join("failure.png"));
    let (user, password) = common::ADMIN.split_once(':').unwrap();
    let started = std::time::Instant::now();
    let out = Command::new("node")
        .current_dir(&node)
        .arg("web-ui.js")
        .args(["--url", &format!("http://{}", s.addr)])
        .args([
            "--user",
            user,
            "--password",
            password,
            "--chromium",
            CHROMIUM,
        ])
        .arg("--screenshots")
        .arg(&shots)
        .args(["--timeout", "180"])
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "the browser test failed (screenshot of the moment: {}):\n{stdout}\n{stderr}",
        shots.join("failure.png").display()
    );
    let report: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("one JSON line");
    assert_eq!(report["ok"], true, "{report}");
    println!(
        "web_ui: {} checks passed in {:.1} s",
        report["checks"].as_array().map_or(0, Vec::len),
        started.elapsed().as_secs_f64()
    );

    // Seen from this side too: the replication made with the page's form ran (the selector
    // kept `other-1` out), and the document refused by validation was never written.
    let (st, all) = common::areq(&s, "GET", "/ui_form_dst/_all_docs", None);
    assert_eq!(st, 200, "{all}");
    let ids: Vec<&str> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["item-1", "item-2"]);
    assert_eq!(common::get_doc(&s, "_replicator", "ui-typo").0, 404);

    // In admin party (no admin configured) the page opens as admin, with no login form.
    let party = common::Server::start(&[]);
    let out = Command::new("node")
        .current_dir(&node)
        .arg("web-ui.js")
        .args(["--url", &format!("http://{}", party.addr), "--admin-party"])
        .args(["--chromium", CHROMIUM, "--screenshots"])
        .arg(&shots)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "admin party: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    for name in [
        "replications.png",
        "new-replication.png",
        "new-replication-errors.png",
        "document.png",
    ] {
        assert_eq!(png_size(&shots.join(name)), (1280, 800), "{name}");
    }
}
