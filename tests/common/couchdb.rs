//! Apache CouchDB 3.5 as a real test peer: the one at `SETTEE_TEST_COUCHDB` (a URL with admin
//! credentials), or a fresh instance unpacked from the release in `../shared/peers/` on a free
//! loopback port, with its own data folder and admin, killed when dropped.
//!
//! Without either, [`Couch::start`] prints one line saying the test is skipped and returns
//! `None`, so a user's clone without `../shared` still passes; with `SETTEE_REQUIRE_COUCHDB`
//! set (CI sets it) a missing CouchDB is a failure instead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use super::{free_port, raw};

pub struct Couch {
    /// `host:port`.
    pub addr: String,
    pub user: String,
    pub password: String,
    child: Option<Child>,
    /// Set for a node of a [`Cluster`].
    clustered: Option<()>,
    /// The unpacked release, its configuration and data (kept for a restart).
    dir: Option<tempfile::TempDir>,
}

/// The release tarball under `../shared/peers/`, if present.
fn tarball() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SETTEE_COUCHDB_TARBALL") {
        return Some(PathBuf::from(p));
    }
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peers");
    std::fs::read_dir(peers)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("couchdb-3") && n.ends_with(".tar.gz"))
        })
}

fn node_name(port: u16) -> String {
    format!("couch{port}x{}@127.0.0.1", std::process::id())
}

impl Couch {
    /// A CouchDB to test against, or `None` (after saying so) when there is none here.
    pub fn start(test: &str) -> Option<Couch> {
        if let Ok(url) = std::env::var("SETTEE_TEST_COUCHDB") {
            let u = reqwest::Url::parse(&url).expect("SETTEE_TEST_COUCHDB is a URL");
            return Some(Couch {
                addr: format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(5984)),
                user: u.username().to_owned(),
                password: u.password().unwrap_or_default().to_owned(),
                child: None,
                clustered: None,
                dir: None,
            });
        }
        let Some(tarball) = tarball() else {
            assert!(
                std::env::var_os("SETTEE_REQUIRE_COUCHDB").is_none(),
                "{test}: SETTEE_REQUIRE_COUCHDB is set but there is no CouchDB: set SETTEE_TEST_COUCHDB or put the release in ../shared/peers"
            );
            eprintln!("{test}: skipped, no CouchDB (set SETTEE_TEST_COUCHDB=<url> or put the release in ../shared/peers)");
            return None;
        };
        let mut c = Couch::unpack(&tarball, "[couchdb]\nsingle_node = true\n", None);
        c.run();
        Some(c)
    }

    /// Unpacks the release into a folder of its own with this configuration (plus its port,
    /// data folder, admin and log level) and an Erlang node name of its own; not started.
    fn unpack(tarball: &Path, ini: &str, cookie: Option<&str>) -> Couch {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("tar")
            .arg("xzf")
            .arg(tarball)
            .arg("-C")
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "unpacking {}", tarball.display());
        let root = dir.path().join("couchdb");
        let port = free_port();
        let data = dir.path().join("data");
        std::fs::write(
            root.join("etc/local.ini"),
            format!(
                "{ini}[couchdb]\ndatabase_dir = {d}\nview_index_dir = {d}\n\
                 [chttpd]\nbind_address = 127.0.0.1\nport = {port}\n\
                 [admins]\nadmin = pass\n[log]\nlevel = warning\n",
                d = data.display()
            ),
        )
        .unwrap();
        let vm_args = root.join("etc/vm.args");
        let mut args = std::fs::read_to_string(&vm_args).unwrap().replace(
            "-name couchdb@127.0.0.1",
            &format!("-name {}", node_name(port)),
        );
        if let Some(cookie) = cookie {
            args.push_str(&format!("\n-setcookie {cookie}\n"));
        }
        std::fs::write(&vm_args, args).unwrap();
        Couch {
            addr: format!("127.0.0.1:{port}"),
            user: "admin".into(),
            password: "pass".into(),
            child: None,
            clustered: None,
            dir: Some(dir),
        }
    }

    /// The Erlang node name of a server started here.
    pub fn node(&self) -> String {
        node_name(self.addr.rsplit(':').next().unwrap().parse().unwrap())
    }

    /// Starts the unpacked server and waits until it is up.
    fn run(&mut self) {
        let dir = self.dir.as_ref().expect("a CouchDB of our own").path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("log"))
            .unwrap();
        self.child = Some(
            Command::new(dir.join("couchdb/bin/couchdb"))
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("CouchDB starts"),
        );
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            // A node starting up may accept a connection and close it unanswered.
            if super::try_status(&self.addr, "/_up") == Some(200) {
                break;
            }
            assert!(Instant::now() < end, "CouchDB did not come up in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        // A single node creates `_users` and `_replicator` a moment after `_up` (a cluster's
        // are created once it is joined).
        let end = Instant::now() + Duration::from_secs(20);
        while self.clustered.is_none()
            && self.req("GET", "/_replicator", None).0 != 200
            && Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (as a crash would), leaving its data.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts a stopped server again on the same data and port.
    pub fn start_again(&mut self) {
        self.run();
    }

    /// Kills the server (as a crash would) and starts it again on the same data and port.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", self.user, self.password))
        )
    }

    /// The database's URL with the admin's credentials in it.
    pub fn url(&self, db: &str) -> String {
        format!("http://{}:{}@{}/{db}", self.user, self.password, self.addr)
    }

    /// The database's URL without credentials.
    pub fn bare_url(&self, db: &str) -> String {
        format!("http://{}/{db}", self.addr)
    }

    /// A JSON request as the admin.
    pub fn req(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (s, _, b) = raw(
            &self.addr,
            method,
            path,
            &[("Authorization", &self.basic())],
            body.map(|b| b.to_string().into_bytes()),
        );
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }
}

impl Drop for Couch {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-node CouchDB cluster on loopback from the same release, joined as its README says,
/// with `q = 8` (eight shards per database) and `n = 3`.
pub struct Cluster {
    pub nodes: Vec<Couch>,
    /// One cluster at a time per test binary: two (six Erlang nodes) at once on a 2-core
    /// machine left a node's internal replication lagging past a minute in CI.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Cluster {
    pub fn start(test: &str) -> Option<Cluster> {
        let Some(tarball) = tarball() else {
            assert!(
                std::env::var_os("SETTEE_REQUIRE_COUCHDB").is_none(),
                "{test}: SETTEE_REQUIRE_COUCHDB is set but the CouchDB release is not in ../shared/peers"
            );
            eprintln!("{test}: skipped, no CouchDB release in ../shared/peers for a cluster");
            return None;
        };
        let one_at_a_time = ONE_CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
        let secret = format!("s{}", std::process::id());
        let ini = format!(
            "[couchdb]\nsingle_node = false\nuuid = 0c1b0c1b0c1b0c1b0c1b0c1b0c1b{:04x}\n\
             [chttpd_auth]\nsecret = {secret}\n[cluster]\nn = 3\nq = 8\n",
            std::process::id() & 0xffff
        );
        let cookie = format!("cookie{}", std::process::id());
        let mut nodes: Vec<Couch> = (0..3)
            .map(|_| Couch::unpack(&tarball, &ini, Some(&cookie)))
            .collect();
        for n in &mut nodes {
            n.clustered = Some(());
            n.run();
        }
        let first = &nodes[0];
        for other in &nodes[1..] {
            let (s, v) = first.req(
                "PUT",
                &format!("/_node/_local/_nodes/{}", other.node()),
                Some(&serde_json::json!({})),
            );
            assert!(
                s == 201 || s == 202 || s == 409,
                "joining {}: {s} {v}",
                other.node()
            );
        }
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, m) = first.req("GET", "/_membership", None);
            if m["cluster_nodes"].as_array().is_some_and(|a| a.len() == 3) {
                break;
            }
            assert!(Instant::now() < end, "the cluster never formed: {m}");
            std::thread::sleep(Duration::from_millis(200));
        }
        for db in ["_users", "_replicator"] {
            let (s, v) = first.req("PUT", &format!("/{db}"), None);
            assert!(s == 201 || s == 202 || s == 412, "{db}: {s} {v}");
        }
        Some(Cluster {
            nodes,
            _one_at_a_time: one_at_a_time,
        })
    }
}
