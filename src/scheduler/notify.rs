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

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::options::{Destination, Target, Transition};
use crate::ids::iso8601;
use crate::replicator::JobState;

const IN_FLIGHT: usize = 8;

/// The SMTP relay e-mail notifications go through.
#[derive(Clone)]
pub struct Smtp {
    pub url: String,
    pub from: String,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold the relay's password.
        write!(
            f,
            "Smtp({})",
            crate::replicator::endpoint::redact_str(&self.url)
        )
    }
}

/// What sends: an HTTP client for webhooks, a mailer for e-mail (if a relay is set).
#[derive(Clone)]
struct Senders {
    http: reqwest::Client,
    mail: Option<(AsyncSmtpTransport<Tokio1Executor>, lettre::message::Mailbox)>,
}
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
pub async fn deliver_all(mut rx: mpsc::Receiver<Delivery>, smtp: Option<Smtp>) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for notifications");
            return;
        }
    };
    let mail = smtp.and_then(|s| {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&s.url)
            .map(|b| b.timeout(Some(Duration::from_secs(10))).build());
        let from = s.from.parse::<lettre::message::Mailbox>();
        match (transport, from) {
            (Ok(t), Ok(f)) => Some((t, f)),
            (Err(e), _) => {
                tracing::error!(smtp = %crate::replicator::endpoint::redact_str(&s.url), error = %e, "the SMTP relay cannot be used; e-mail notifications will fail");
                None
            }
            (_, Err(e)) => {
                tracing::error!(from = %s.from, error = %e, "--smtp-from is not a mailbox; e-mail notifications will fail");
                None
            }
        }
    });
    let client = Senders { http, mail };
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

async fn deliver(senders: Senders, d: Delivery) {
    let mut delay = Duration::from_secs(1);
    let mut outcome = json!(null);
    for attempt in 1..=ATTEMPTS {
        outcome = match send_once(&senders, &d).await {
            Ok(status) => json!({"ok": true, "status": status, "attempts": attempt}),
            Err(mut e) => {
                e["ok"] = json!(false);
                e["attempts"] = json!(attempt);
                e
            }
        };
        if outcome["ok"] == true {
            break;
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

/// One attempt; `Err` holds what went wrong (`status` or `error`).
async fn send_once(senders: &Senders, d: &Delivery) -> Result<Value, Value> {
    match &d.to.to {
        Target::Webhook { url, headers } => {
            let mut rb = senders
                .http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(d.body.to_string());
            for (k, v) in headers {
                rb = rb.header(k.as_str(), v.as_str());
            }
            match rb.send().await {
                Ok(r) if r.status().is_success() => Ok(json!(r.status().as_u16())),
                Ok(r) => Err(json!({"status": r.status().as_u16()})),
                Err(e) if e.is_timeout() => Err(json!({"error": "timed out"})),
                Err(e) if e.is_connect() => Err(json!({"error": "could not connect"})),
                Err(_) => Err(json!({"error": "request failed"})),
            }
        }
        Target::Email(to) => {
            let Some((mailer, from)) = &senders.mail else {
                return Err(
                    json!({"error": "no SMTP relay is configured (settee serve --smtp-url)"}),
                );
            };
            let to = to
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| json!({"error": format!("bad address: {e}")}))?;
            let subject = format!(
                "settee: replication {} {}",
                d.body["doc_id"]
                    .as_str()
                    .unwrap_or_else(|| d.body["replication_id"].as_str().unwrap_or("")),
                d.transition.as_str()
            );
            let text = serde_json::to_string_pretty(&d.body).unwrap_or_default();
            let msg = Message::builder()
                .from(from.clone())
                .to(to)
                .subject(subject)
                .body(text)
                .map_err(|e| json!({"error": format!("could not build the message: {e}")}))?;
            match mailer.send(msg).await {
                Ok(r) => Ok(json!(r.code().to_string())),
                Err(e) => Err(json!({"error": format!("SMTP: {e}")})),
            }
        }
    }
}
