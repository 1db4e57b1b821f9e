//! Delivering notifications: a JSON POST to each webhook that asked for the transition,
//! retried with backoff, never in the way of the job. One task owned by the scheduler takes
//! deliveries from a bounded channel and runs at most [`IN_FLIGHT`] at once; a full channel
//! drops the notification (and says so in the log) rather than slow the scheduler down. The
//! last result per webhook shows in the job's `info.notifications`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::options::{Destination, Transition};
use crate::replicator::checkpoint::iso8601;
use crate::replicator::JobState;

const IN_FLIGHT: usize = 8;
const ATTEMPTS: u32 = 3;

pub struct Delivery {
    pub to: Destination,
    pub transition: Transition,
    /// The notification's JSON (credentials already redacted).
    pub body: Value,
    pub state: Arc<JobState>,
}

/// The sending side, held by the scheduler.
#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Delivery>,
}

impl Notifier {
    pub fn new() -> (Notifier, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(256);
        (Notifier { tx }, rx)
    }

    /// Queues a notification to every destination that asked for this transition.
    pub fn send(
        &self,
        destinations: &[Destination],
        transition: Transition,
        body: Value,
        state: &Arc<JobState>,
    ) {
        for to in destinations.iter().filter(|d| d.on.contains(&transition)) {
            let d = Delivery {
                to: to.clone(),
                transition,
                body: body.clone(),
                state: state.clone(),
            };
            if self.tx.try_send(d).is_err() {
                tracing::warn!(url = %to.redacted(), "notification queue full; dropped one");
            }
        }
    }
}

/// Delivers until the channel closes (the scheduler stopped); the caller aborts it on
/// shutdown.
pub async fn deliver_all(mut rx: mpsc::Receiver<Delivery>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for notifications");
            return;
        }
    };
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            d = rx.recv(), if running.len() < IN_FLIGHT => match d {
                Some(d) => { running.spawn(deliver(client.clone(), d)); }
                None => break,
            },
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    while running.join_next().await.is_some() {}
}

async fn deliver(client: reqwest::Client, d: Delivery) {
    let mut delay = Duration::from_secs(1);
    let mut outcome = json!(null);
    for attempt in 1..=ATTEMPTS {
        let mut rb = client
            .post(d.to.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(d.body.to_string());
        for (k, v) in &d.to.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        match rb.send().await {
            Ok(r) if r.status().is_success() => {
                outcome = json!({"ok": true, "status": r.status().as_u16(), "attempts": attempt});
                break;
            }
            Ok(r) => {
                outcome = json!({"ok": false, "status": r.status().as_u16(), "attempts": attempt})
            }
            Err(e) => {
                let reason = if e.is_timeout() {
                    "timed out".to_owned()
                } else if e.is_connect() {
                    "could not connect".to_owned()
                } else {
                    "request failed".to_owned()
                };
                outcome = json!({"ok": false, "error": reason, "attempts": attempt});
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    outcome["url"] = json!(d.to.redacted());
    outcome["transition"] = json!(d.transition.as_str());
    outcome["at"] = json!(iso8601(SystemTime::now()));
    if outcome["ok"] != true {
        tracing::warn!(url = %d.to.redacted(), result = %outcome, "notification not delivered");
    }
    let url = d.to.redacted();
    d.state.update(|p| {
        p.notifications.retain(|n| n["url"] != url.as_str());
        p.notifications.push(outcome);
    });
}
