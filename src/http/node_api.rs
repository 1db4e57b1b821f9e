//! `/_node/{node}/…`: this server as a CouchDB node. `_prometheus` is the Prometheus text
//! exposition (settee's own metric names, labelled by `_replicator` document or
//! `/_replicate` job id, never by endpoint: endpoints may carry credentials); `_stats` has
//! CouchDB's JSON shape for the counters CouchDB clients and dashboards read. Both are
//! server-admin only (as in CouchDB; `auth::authorize` refuses other users).

use std::sync::Arc;
use std::time::SystemTime;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::body::Body;
use super::error::ApiError;
use super::request::{json_resp, resp, Req, Resp};
use super::Ctx;
use crate::metrics::{Family, Text, CONTENT_TYPE};
use crate::scheduler::status::{self, Figures, NODE, STATES};

pub fn handle(ctx: &Arc<Ctx>, rest: &[&str], req: &Req) -> Result<Resp, ApiError> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(ApiError::method_not_allowed("GET,HEAD"));
    }
    let (node, rest) = match rest {
        [node, rest @ ..] => (*node, rest),
        [] => return Err(ApiError::bad_request("name a node: /_node/_local/…")),
    };
    if node != "_local" && node != NODE {
        return Err(ApiError::not_found(format!(
            "no node {node:?}: this server is the one node {NODE:?} (or `_local`)"
        )));
    }
    match rest {
        [] => Ok(json_resp(StatusCode::OK, &json!({"name": NODE}))),
        ["_prometheus"] => Ok(resp(
            StatusCode::OK,
            CONTENT_TYPE,
            Body::from_bytes(prometheus(ctx)),
        )),
        ["_stats", path @ ..] => {
            let mut v = stats(ctx);
            for p in path {
                v = v
                    .get(*p)
                    .cloned()
                    .ok_or_else(|| ApiError::not_found(format!("no statistic {p:?}")))?;
            }
            Ok(json_resp(StatusCode::OK, &v))
        }
        _ => Err(ApiError::not_found(
            "this server answers /_node/{node}, /_node/{node}/_prometheus and /_node/{node}/_stats",
        )),
    }
}

fn prometheus(ctx: &Ctx) -> String {
    let figures = ctx.scheduler.with_state(status::figures);
    let mut t = Text::default();
    replication_metrics(&mut t, &figures, SystemTime::now());
    let m = &ctx.metrics;
    t.metric(
        "settee_http_requests_total",
        "counter",
        "HTTP requests answered, by endpoint family and status code.",
    );
    for (family, code, n) in m.requests() {
        t.sample(
            "settee_http_requests_total",
            &[("family", family.name()), ("code", &code)],
            n as f64,
        );
    }
    let name = "settee_http_request_duration_seconds";
    t.metric(
        name,
        "histogram",
        "Time from a request's arrival to its response head, by endpoint family.",
    );
    for f in Family::ALL {
        let h = m.latency(f).read();
        if h.2 > 0 {
            t.histogram(name, &[("family", f.name())], h);
        }
    }
    t.metric(
        "settee_http_open_feeds",
        "gauge",
        "Changes feeds open now (longpoll, continuous, eventsource).",
    )
    .sample("settee_http_open_feeds", &[], m.open_feeds() as f64);
    let dbs = ctx.store.all_dbs().map(|d| d.len()).unwrap_or(0);
    t.metric("settee_databases", "gauge", "Databases in the store.")
        .sample("settee_databases", &[], dbs as f64);
    t.metric(
        "settee_store_size_bytes",
        "gauge",
        "Size of the store's files on disk.",
    )
    .sample(
        "settee_store_size_bytes",
        &[],
        ctx.store.size_on_disk() as f64,
    );
    t.metric(
        "settee_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    )
    .sample("settee_uptime_seconds", &[], m.uptime().as_secs_f64());
    t.finish()
}

/// The per-replication metrics and the count of replications by state.
fn replication_metrics(t: &mut Text, figures: &[Figures], now: SystemTime) {
    type Read = fn(&Figures, SystemTime) -> Option<f64>;
    let series: [(&str, &str, &str, Read); 6] = [
        (
            "settee_replication_docs_read_total",
            "counter",
            "Documents read from the source.",
            |f, _| Some(f.counts.docs_read as f64),
        ),
        (
            "settee_replication_docs_written_total",
            "counter",
            "Documents written to the target.",
            |f, _| Some(f.counts.docs_written as f64),
        ),
        (
            "settee_replication_doc_write_failures_total",
            "counter",
            "Documents the target refused.",
            |f, _| Some(f.counts.doc_write_failures as f64),
        ),
        (
            "settee_replication_changes_pending",
            "gauge",
            "Source changes not yet replicated (when the source says).",
            |f, _| f.changes_pending.map(|n| n as f64),
        ),
        (
            "settee_replication_crashes_total",
            "counter",
            "Runs that ended in an error since the replication was added.",
            |f, _| Some(f.crashes as f64),
        ),
        (
            "settee_replication_checkpoint_age_seconds",
            "gauge",
            "Seconds since the last checkpoint (none before the first).",
            |f, now| {
                let at = f.checkpointed_at?;
                Some(now.duration_since(at).map_or(0.0, |d| d.as_secs_f64()))
            },
        ),
    ];
    for (name, kind, help, read) in series {
        t.metric(name, kind, help);
        for f in figures {
            if let Some(v) = read(f, now) {
                t.sample(name, &[(f.key.0, &f.key.1)], v);
            }
        }
    }
    let name = "settee_replication_state";
    t.metric(
        name,
        "gauge",
        "1 for the state a replication is in, 0 for the others.",
    );
    for f in figures {
        for s in STATES {
            let on = if f.state == s { 1.0 } else { 0.0 };
            t.sample(name, &[(f.key.0, &f.key.1), ("state", s)], on);
        }
    }
    let name = "settee_replication_jobs";
    t.metric(name, "gauge", "Replications by state.");
    for s in STATES {
        let n = figures.iter().filter(|f| f.state == s).count();
        t.sample(name, &[("state", s)], n as f64);
    }
}

/// `{"value", "type", "desc"}`, CouchDB's shape of one statistic.
fn stat(value: impl Into<Value>, kind: &str, desc: &str) -> Value {
    json!({"value": value.into(), "type": kind, "desc": desc})
}

fn stats(ctx: &Ctx) -> Value {
    let (figures, counters) = ctx
        .scheduler
        .with_state(|st| (status::figures(st), st.counters));
    let in_state = |s: &str| figures.iter().filter(|f| f.state == s).count() as u64;
    let jobs = json!({
        "running": stat(in_state("running"), "gauge", "replicator scheduler running jobs"),
        "pending": stat(in_state("pending"), "gauge", "replicator scheduler pending jobs"),
        "crashed": stat(in_state("crashing"), "gauge", "replicator scheduler crashed jobs"),
        "total": stat(figures.iter().filter(|f| f.state != "completed" && f.state != "failed").count() as u64,
                      "gauge", "total number of replicator scheduler jobs"),
        "starts": stat(counters.starts, "counter", "replicator scheduler job starts"),
        "stops": stat(counters.stops, "counter", "replicator scheduler job stops"),
        "crashes": stat(counters.crashes, "counter", "replicator scheduler job crashes"),
    });
    let m = &ctx.metrics;
    let mut codes = Map::new();
    let mut methods_total = 0;
    for (_, code, n) in m.requests() {
        methods_total += n;
        if code.ends_with("xx") {
            continue;
        }
        let prev = codes
            .get(&code)
            .and_then(|v| v["value"].as_u64())
            .unwrap_or(0);
        codes.insert(
            code.clone(),
            stat(
                prev + n,
                "counter",
                &format!("number of HTTP {code} responses"),
            ),
        );
    }
    let (_, sum, n) = m.total_latency();
    let ms = |q: f64| {
        m.total_quantile(q)
            .map_or(Value::Null, |s| json!((s * 1000.0).min(1e9)))
    };
    let request_time = json!({
        "n": n,
        "arithmetic_mean": if n > 0 { json!(sum * 1000.0 / n as f64) } else { json!(0) },
        "median": ms(0.5),
        "percentile": [[50, ms(0.5)], [75, ms(0.75)], [90, ms(0.9)], [95, ms(0.95)], [99, ms(0.99)], [999, ms(0.999)]],
    });
    json!({
        "couchdb": {
            "httpd": {"requests": stat(methods_total, "counter", "number of HTTP requests")},
            "httpd_status_codes": codes,
            "open_feeds": stat(m.open_feeds(), "gauge", "changes feeds open now (settee)"),
            "request_time": stat(request_time, "histogram",
                "length of a request in milliseconds until its response head; percentiles are the upper bounds of settee's latency buckets"),
        },
        "couch_replicator": {"jobs": jobs},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicator::stats::Counts;
    use std::time::Duration;

    fn fig(key: (&'static str, &str), state: &'static str) -> Figures {
        Figures {
            key: (key.0, key.1.to_owned()),
            state,
            counts: Counts {
                docs_read: 7,
                docs_written: 5,
                ..Counts::default()
            },
            changes_pending: Some(3),
            checkpointed_at: None,
            crashes: 2,
        }
    }

    #[test]
    fn each_replication_is_labelled_by_its_id_and_has_one_state() {
        let now = SystemTime::now();
        let mut a = fig(("doc_id", "pub\"lish"), "running");
        a.checkpointed_at = Some(now - Duration::from_secs(4));
        let b = fig(("job_id", "abc+continuous"), "crashing");
        let mut t = Text::default();
        replication_metrics(&mut t, &[a, b], now);
        let s = t.finish();
        assert!(s.contains("settee_replication_docs_written_total{doc_id=\"pub\\\"lish\"} 5\n"));
        assert!(s.contains("settee_replication_docs_read_total{job_id=\"abc+continuous\"} 7\n"));
        assert!(s.contains("settee_replication_crashes_total{job_id=\"abc+continuous\"} 2\n"));
        assert!(s.contains("settee_replication_checkpoint_age_seconds{doc_id=\"pub\\\"lish\"} 4\n"));
        assert!(!s.contains("settee_replication_checkpoint_age_seconds{job_id"));
        assert!(
            s.contains("settee_replication_state{doc_id=\"pub\\\"lish\",state=\"running\"} 1\n")
        );
        assert!(
            s.contains("settee_replication_state{doc_id=\"pub\\\"lish\",state=\"crashing\"} 0\n")
        );
        assert!(s.contains("settee_replication_jobs{state=\"crashing\"} 1\n"));
        assert!(s.contains("settee_replication_jobs{state=\"completed\"} 0\n"));
    }
}
