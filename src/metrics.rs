//! What the server counts about itself, and the Prometheus text format it is read in.
//!
//! [`Metrics`] holds the server-wide counters the HTTP layer bumps on every request: requests
//! by endpoint family and status code, a latency histogram per family, and the changes feeds
//! open now. Everything is a fixed array of atomics chosen at compile time, so counting costs
//! a few relaxed increments and no lock or allocation on the request path. Replication figures
//! are not kept here: they are read from the scheduler when someone asks ([`Text`] formats
//! both). This module depends on nothing else of settee's.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a request was for, as a low-cardinality label: never a database or document name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Server,
    Session,
    Utils,
    Node,
    Replicate,
    Scheduler,
    Sharing,
    Database,
    Changes,
    Find,
    BulkDocs,
    BulkGet,
    AllDocs,
    RevsDiff,
    Local,
    Design,
    Document,
    Attachment,
    Other,
}

impl Family {
    pub const ALL: [Family; 19] = [
        Family::Server,
        Family::Session,
        Family::Utils,
        Family::Node,
        Family::Replicate,
        Family::Scheduler,
        Family::Sharing,
        Family::Database,
        Family::Changes,
        Family::Find,
        Family::BulkDocs,
        Family::BulkGet,
        Family::AllDocs,
        Family::RevsDiff,
        Family::Local,
        Family::Design,
        Family::Document,
        Family::Attachment,
        Family::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Server => "server",
            Family::Session => "session",
            Family::Utils => "utils",
            Family::Node => "node",
            Family::Replicate => "replicate",
            Family::Scheduler => "scheduler",
            Family::Sharing => "sharing",
            Family::Database => "database",
            Family::Changes => "changes",
            Family::Find => "find",
            Family::BulkDocs => "bulk_docs",
            Family::BulkGet => "bulk_get",
            Family::AllDocs => "all_docs",
            Family::RevsDiff => "revs_diff",
            Family::Local => "local",
            Family::Design => "design",
            Family::Document => "document",
            Family::Attachment => "attachment",
            Family::Other => "other",
        }
    }

    /// The family of a request path, from its decoded segments. No arm looks past the third
    /// segment, so only those are borrowed (no allocation on the request path).
    pub fn of(segments: &[String]) -> Family {
        let mut first = [""; 3];
        for (f, s) in first.iter_mut().zip(segments) {
            *f = s;
        }
        match &first[..segments.len().min(3)] {
            [] | ["_up" | "_uuids" | "_all_dbs" | "_dbs_info" | "_active_tasks"] => Family::Server,
            ["_session"] => Family::Session,
            ["_utils", ..] => Family::Utils,
            ["_node", ..] => Family::Node,
            ["_replicate", ..] => Family::Replicate,
            ["_scheduler", ..] => Family::Scheduler,
            ["_sharing", ..] => Family::Sharing,
            [_db] => Family::Database,
            [_, "_changes"] => Family::Changes,
            [_, "_find" | "_explain" | "_index", ..] => Family::Find,
            [_, "_bulk_docs"] => Family::BulkDocs,
            [_, "_bulk_get"] => Family::BulkGet,
            [_, "_all_docs" | "_design_docs" | "_local_docs"] => Family::AllDocs,
            [_, "_revs_diff" | "_missing_revs"] => Family::RevsDiff,
            [_, "_local", ..] => Family::Local,
            [_, "_design", ..] => Family::Design,
            [_, id] if id.starts_with("_design/") => Family::Design,
            [_, id] if id.starts_with("_local/") => Family::Local,
            [_, special] if special.starts_with('_') => Family::Database,
            [_, _] => Family::Document,
            [_, _, _, ..] => Family::Attachment,
        }
    }
}

/// Status codes counted one by one; anything else is counted under its class (`2xx`...).
const CODES: [u16; 24] = [
    200, 201, 202, 204, 206, 301, 304, 400, 401, 403, 404, 405, 406, 409, 412, 413, 415, 416, 417,
    500, 501, 502, 503, 507,
];
const CODE_SLOTS: usize = CODES.len() + 5;

fn code_slot(code: u16) -> usize {
    match CODES.iter().position(|c| *c == code) {
        Some(i) => i,
        None => CODES.len() + (usize::from(code / 100).clamp(1, 5) - 1),
    }
}

fn slot_label(i: usize) -> String {
    match CODES.get(i) {
        Some(c) => c.to_string(),
        None => format!("{}xx", i - CODES.len() + 1),
    }
}

/// Upper bounds of the latency buckets, in seconds (Prometheus' `le`).
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram: counts per bucket (not cumulative; made so when read), sum and count.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.sum_micros
            .fetch_add(d.as_micros().min(u128::from(u64::MAX)) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Cumulative counts per bucket, the sum in seconds and the count.
    pub fn read(&self) -> ([u64; BUCKETS.len()], f64, u64) {
        let mut acc = 0;
        let mut out = [0; BUCKETS.len()];
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            acc += b.load(Relaxed);
            *o = acc;
        }
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        (out, sum, self.count.load(Relaxed))
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        let (cum, _, count) = self.read();
        quantile(&cum, count, q)
    }
}

/// The bucket bound at or below which `q` (0..1) of `count` observations fall, from
/// cumulative bucket counts: an upper estimate, as precise as the buckets (`None` before the
/// first observation, infinity past the last bucket).
pub fn quantile(cum: &[u64; BUCKETS.len()], count: u64, q: f64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let want = (q * count as f64).ceil() as u64;
    Some(
        cum.iter()
            .position(|c| *c >= want)
            .map_or(f64::INFINITY, |i| BUCKETS[i]),
    )
}

/// The server's own counters (see the module comment).
pub struct Metrics {
    requests: [[AtomicU64; CODE_SLOTS]; Family::ALL.len()],
    latency: [Histogram; Family::ALL.len()],
    open_feeds: AtomicI64,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| Histogram::default()),
            open_feeds: AtomicI64::new(0),
            started: Instant::now(),
        }
    }
}

fn index(f: Family) -> usize {
    Family::ALL.iter().position(|x| *x == f).unwrap_or(0)
}

impl Metrics {
    /// One request answered with `code` after `took` (time to the response head).
    pub fn request(&self, family: Family, code: u16, took: Duration) {
        let i = index(family);
        self.requests[i][code_slot(code)].fetch_add(1, Relaxed);
        self.latency[i].observe(took);
    }

    /// Counts a changes feed (longpoll, continuous, eventsource) as open until the returned
    /// guard is dropped.
    pub fn feed_opened(self: &Arc<Self>) -> FeedGuard {
        self.open_feeds.fetch_add(1, Relaxed);
        FeedGuard(self.clone())
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn open_feeds(&self) -> i64 {
        self.open_feeds.load(Relaxed)
    }

    /// Every non-zero request count: family, status label, count.
    pub fn requests(&self) -> Vec<(Family, String, u64)> {
        let mut out = Vec::new();
        for (f, row) in Family::ALL.iter().zip(&self.requests) {
            for (slot, n) in row.iter().enumerate() {
                let n = n.load(Relaxed);
                if n > 0 {
                    out.push((*f, slot_label(slot), n));
                }
            }
        }
        out
    }

    pub fn latency(&self, f: Family) -> &Histogram {
        &self.latency[index(f)]
    }

    /// All families' latencies in one histogram's terms: cumulative buckets, sum, count.
    pub fn total_latency(&self) -> ([u64; BUCKETS.len()], f64, u64) {
        let mut acc = ([0; BUCKETS.len()], 0.0, 0);
        for h in &self.latency {
            let (b, s, c) = h.read();
            for (a, x) in acc.0.iter_mut().zip(b) {
                *a += x;
            }
            acc.1 += s;
            acc.2 += c;
        }
        acc
    }

    /// [`quantile`] over every family's requests.
    pub fn total_quantile(&self, q: f64) -> Option<f64> {
        let (cum, _, count) = self.total_latency();
        quantile(&cum, count, q)
    }
}

/// See [`Metrics::feed_opened`].
pub struct FeedGuard(Arc<Metrics>);

impl Drop for FeedGuard {
    fn drop(&mut self) {
        self.0.open_feeds.fetch_sub(1, Relaxed);
    }
}

/// A Prometheus text exposition (format 0.0.4) being written. Each metric is introduced once
/// with its HELP and TYPE lines; its samples must follow before the next one starts.
#[derive(Default)]
pub struct Text(String);

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Text {
    /// Starts a metric: `kind` is `counter`, `gauge` or `histogram`.
    pub fn metric(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample of the current metric.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value));
        self
    }

    /// The samples of one histogram (cumulative buckets, sum, count) under `labels`.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        (buckets, sum, count): ([u64; BUCKETS.len()], f64, u64),
    ) -> &mut Self {
        let bucket = format!("{name}_bucket");
        for (le, n) in BUCKETS.iter().zip(buckets) {
            let le = number(*le);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, n as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, count as f64);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, count as f64)
    }

    pub fn finish(self) -> String {
        self.0
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value as Prometheus writes it (integers without a fraction).
fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.is_nan() {
        "NaN".to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn families_never_carry_names() {
        for (path, f) in [
            ("/", Family::Server),
            ("/_all_dbs", Family::Server),
            ("/_utils/app.js", Family::Utils),
            ("/_node/_local/_prometheus", Family::Node),
            ("/db", Family::Database),
            ("/db/_changes", Family::Changes),
            ("/db/_bulk_docs", Family::BulkDocs),
            ("/db/_index/_design/x/json/y", Family::Find),
            ("/db/_local/cp", Family::Local),
            ("/db/_design/x", Family::Design),
            ("/db/_security", Family::Database),
            ("/db/doc", Family::Document),
            ("/db/doc/att/x.png", Family::Attachment),
            ("/db/_design/d/_view/v", Family::Design),
        ] {
            assert_eq!(Family::of(&segs(path)), f, "{path}");
        }
    }

    #[test]
    fn requests_count_by_family_and_code_with_classes_for_the_rest() {
        let m = Metrics::default();
        m.request(Family::Document, 201, Duration::from_millis(2));
        m.request(Family::Document, 201, Duration::from_millis(3));
        m.request(Family::Document, 418, Duration::from_millis(3));
        m.request(Family::Find, 400, Duration::from_micros(100));
        let mut r = m.requests();
        r.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            r,
            vec![
                (Family::Document, "201".into(), 2),
                (Family::Find, "400".into(), 1),
                (Family::Document, "4xx".into(), 1),
            ]
        );
        let (b, sum, n) = m.latency(Family::Document).read();
        assert_eq!(n, 3);
        assert!((sum - 0.008).abs() < 1e-9);
        // 2 ms and 3 ms fall in the 2.5 ms and 5 ms buckets; buckets are cumulative.
        assert_eq!(&b[..5], &[0, 0, 1, 3, 3]);
        assert_eq!(m.latency(Family::Document).quantile(0.5), Some(0.005));
        assert_eq!(m.latency(Family::Server).quantile(0.5), None);
    }

    #[test]
    fn open_feeds_fall_when_guards_drop() {
        let m = Arc::new(Metrics::default());
        let a = m.feed_opened();
        let b = m.feed_opened();
        assert_eq!(m.open_feeds(), 2);
        drop(a);
        assert_eq!(m.open_feeds(), 1);
        drop(b);
        assert_eq!(m.open_feeds(), 0);
    }

    #[test]
    fn text_escapes_labels_and_writes_histograms() {
        let mut t = Text::default();
        t.metric("x_total", "counter", "a\nb")
            .sample("x_total", &[("doc_id", "a\"b\\c\nd")], 3.0);
        let h = Histogram::default();
        h.observe(Duration::from_millis(30));
        t.metric("lat_seconds", "histogram", "latency").histogram(
            "lat_seconds",
            &[("family", "doc")],
            h.read(),
        );
        let s = t.finish();
        assert!(s.contains("# HELP x_total a\\nb\n# TYPE x_total counter\n"));
        assert!(s.contains("x_total{doc_id=\"a\\\"b\\\\c\\nd\"} 3\n"));
        assert!(s.contains("lat_seconds_bucket{family=\"doc\",le=\"0.025\"} 0\n"));
        assert!(s.contains("lat_seconds_bucket{family=\"doc\",le=\"0.05\"} 1\n"));
        assert!(s.contains("lat_seconds_bucket{family=\"doc\",le=\"+Inf\"} 1\n"));
        assert!(s.contains("lat_seconds_count{family=\"doc\"} 1\n"));
    }
}
