//! When a replication document runs and who hears about it: `schedule` (+ `timezone`),
//! `retry` and `notify`, parsed and decided here without I/O. The scheduler's shell asks these
//! functions what to do with injected times, so their table tests need no clock.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// A document's scheduling options (all optional).
#[derive(Clone, Debug, Default)]
pub struct DocOptions {
    pub schedule: Option<Schedule>,
    /// Run each time this replication document's run completes (DHIS2: data pushed, then
    /// metadata pulled).
    pub after: Option<String>,
    pub retry: Option<Retry>,
    pub notify: Vec<Destination>,
}

/// A POSIX cron expression (5 fields, or `@hourly`, `@daily`, `@weekly`, `@monthly`,
/// `@yearly`) in a time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

impl Schedule {
    pub fn parse(expr: &str, tz: Option<&str>) -> Result<Schedule, String> {
        let cron = croner::Cron::from_str(expr).map_err(|e| {
            format!("`schedule` {expr:?} is not a cron expression ({e}): write five fields (minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\") or @hourly, @daily, @weekly, @monthly, @yearly")
        })?;
        let tz = match tz {
            None => chrono_tz::UTC,
            Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
                format!("`timezone` {name:?} is not an IANA time zone name such as \"Europe/Oslo\" or \"UTC\"")
            })?,
        };
        Ok(Schedule { cron, tz })
    }

    /// The first due time strictly after `t`.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let at: DateTime<Utc> = t.into();
        let local = at.with_timezone(&self.tz);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        Some(next.with_timezone(&Utc).into())
    }

    /// When to run next, given the end of the last run (if any) and now: a due time missed
    /// while the server was down runs once, now; otherwise the next due time after now.
    pub fn next_run(&self, last_run: Option<SystemTime>, now: SystemTime) -> Option<SystemTime> {
        if let Some(due) = last_run.and_then(|l| self.next_after(l)) {
            if due <= now {
                return Some(now);
            }
        }
        self.next_after(now)
    }
}

/// DHIS2's retry policy: `count` retries after the first attempt, `interval` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub count: u32,
    pub interval: Duration,
}

impl Retry {
    /// After `failures` failed attempts in a row: when to try again, or `None` when the
    /// policy is exhausted.
    pub fn again_after(&self, failures: u32) -> Option<Duration> {
        (failures <= self.count).then_some(self.interval)
    }
}

/// A change of state someone may want to hear about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    Failed,
    Crashing,
    Recovered,
    Completed,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Failed => "failed",
            Transition::Crashing => "crashing",
            Transition::Recovered => "recovered",
            Transition::Completed => "completed",
        }
    }

    fn parse(s: &str) -> Option<Transition> {
        Some(match s {
            "failed" => Transition::Failed,
            "crashing" => Transition::Crashing,
            "recovered" => Transition::Recovered,
            "completed" => Transition::Completed,
            _ => return None,
        })
    }

    /// Whether this transition is news after the last one notified: one notification per
    /// change of state, so `crashing` again only after `recovered` (or a new run).
    pub fn is_news(self, last: Option<Transition>) -> bool {
        match (self, last) {
            (Transition::Crashing, Some(Transition::Crashing)) => false,
            (Transition::Recovered, last) => last == Some(Transition::Crashing),
            _ => true,
        }
    }
}

/// Where a notification goes.
#[derive(Clone, Debug)]
pub struct Destination {
    pub to: Target,
    pub on: Vec<Transition>,
}

#[derive(Clone, Debug)]
pub enum Target {
    /// A JSON POST, with these headers.
    Webhook {
        url: reqwest::Url,
        headers: Vec<(String, String)>,
    },
    /// An e-mail through the server's SMTP relay (`--smtp-url`).
    Email(String),
}

impl Destination {
    /// Where it goes, without credentials, for status output.
    pub fn redacted(&self) -> String {
        match &self.to {
            Target::Webhook { url, .. } => {
                let mut u = url.clone();
                if !u.username().is_empty() || u.password().is_some() {
                    let _ = u.set_username("");
                    let _ = u.set_password(None);
                }
                u.to_string()
            }
            Target::Email(to) => format!("mailto:{to}"),
        }
    }
}

/// `"30s"`, `"5m"`, `"2h"`, `"1500ms"` or a number of milliseconds.
fn duration(v: &Value, at: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{at} must be a duration such as \"30s\", \"5m\" or a number of milliseconds, not {v}"
        )
    };
    match v {
        Value::Number(n) => n.as_u64().map(Duration::from_millis).ok_or_else(bad),
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (n, unit) = s.split_at(split);
            let n: u64 = n.parse().map_err(|_| bad())?;
            Ok(match unit.trim() {
                "ms" => Duration::from_millis(n),
                "s" | "" => Duration::from_secs(n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                _ => return Err(bad()),
            })
        }
        _ => Err(bad()),
    }
}

fn parse_destination(v: &Value, i: usize) -> Result<Destination, String> {
    let at = format!("`notify[{i}]`");
    let o = v.as_object().ok_or_else(|| {
        format!("{at} must be an object such as {{\"url\": \"https://…\", \"on\": [\"failed\"]}}")
    })?;
    let on = o
        .get("on")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            format!("{at} needs \"on\": the changes to hear about, of failed, crashing, recovered, completed")
        })?
        .iter()
        .map(|t| {
            t.as_str().and_then(Transition::parse).ok_or_else(|| {
                format!("{at}: {t} is not one of failed, crashing, recovered, completed")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(email) = o.get("email") {
        if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "email" | "on")) {
            return Err(format!(
                "{at} has {k:?}: an e-mail destination has \"email\" and \"on\""
            ));
        }
        let addr = email
            .as_str()
            .filter(|e| e.parse::<lettre::Address>().is_ok())
            .ok_or_else(|| format!("{at}: \"email\" must be an e-mail address, not {email}"))?;
        return Ok(Destination {
            to: Target::Email(addr.to_owned()),
            on,
        });
    }
    if let Some(k) = o
        .keys()
        .find(|k| !matches!(k.as_str(), "url" | "headers" | "on"))
    {
        return Err(format!(
            "{at} has {k:?}: a webhook has \"url\", \"headers\" and \"on\""
        ));
    }
    let url = o
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at} needs a \"url\" (a webhook to POST to) or an \"email\""))?;
    let url = reqwest::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| format!("{at}: \"url\" must be an http(s) URL"))?;
    let headers = match o.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_owned()))
                    .ok_or_else(|| format!("{at}: header {k:?} must be a string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{at}: \"headers\" must be an object of strings")),
    };
    Ok(Destination {
        to: Target::Webhook { url, headers },
        on,
    })
}

/// Parses a document's scheduling options; every problem is reported.
pub fn parse(doc: &Map<String, Value>, continuous: bool) -> Result<DocOptions, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = DocOptions::default();
    let tz = doc.get("timezone").filter(|v| !v.is_null());
    match doc.get("schedule").filter(|v| !v.is_null()) {
        Some(_) if continuous => problems.push(
            "`schedule` runs one-shot replications at their due times: remove `continuous` (or the schedule)".into(),
        ),
        Some(Value::String(expr)) => match tz.map(|t| t.as_str().ok_or(t)) {
            Some(Err(t)) => problems.push(format!("`timezone` must be a string, not {t}")),
            Some(Ok(t)) => match Schedule::parse(expr, Some(t)) {
                Ok(s) => out.schedule = Some(s),
                Err(e) => problems.push(e),
            },
            None => match Schedule::parse(expr, None) {
                Ok(s) => out.schedule = Some(s),
                Err(e) => problems.push(e),
            },
        },
        Some(v) => problems.push(format!("`schedule` must be a cron expression string, not {v}")),
        None if tz.is_some() => problems.push("`timezone` only applies to a `schedule`".into()),
        None => {}
    }
    match doc.get("after").filter(|v| !v.is_null()) {
        None => {}
        Some(_) if continuous => problems.push(
            "`after` runs a one-shot replication when another one completes: remove `continuous`"
                .into(),
        ),
        Some(Value::String(id)) if doc.get("_id").and_then(Value::as_str) == Some(id.as_str()) => {
            problems.push(format!(
                "`after` names this document itself ({id:?}): it would never start"
            ))
        }
        Some(Value::String(id)) => out.after = Some(id.clone()),
        Some(v) => problems.push(format!(
            "`after` must be the id of another replication document, not {v}"
        )),
    }
    match doc.get("retry").filter(|v| !v.is_null()) {
        None => {}
        Some(Value::Object(r)) => {
            let count = r.get("count").and_then(Value::as_u64);
            let interval = r.get("interval").map(|i| duration(i, "`retry.interval`"));
            match (count, interval) {
                (Some(c), Some(Ok(i))) if c <= 1000 => {
                    out.retry = Some(Retry {
                        count: c as u32,
                        interval: i,
                    })
                }
                (_, Some(Err(e))) => problems.push(e),
                _ => problems.push(
                    "`retry` must be {\"count\": N, \"interval\": \"30s\"}: N retries after the first attempt (at most 1000), that far apart".into(),
                ),
            }
            if let Some(k) = r.keys().find(|k| *k != "count" && *k != "interval") {
                problems.push(format!(
                    "`retry` has {k:?}: it takes \"count\" and \"interval\""
                ));
            }
        }
        Some(v) => problems.push(format!(
            "`retry` must be {{\"count\": N, \"interval\": \"30s\"}}, not {v}"
        )),
    }
    match doc.get("notify").filter(|v| !v.is_null()) {
        None => {}
        Some(Value::Array(list)) => {
            for (i, d) in list.iter().enumerate() {
                match parse_destination(d, i) {
                    Ok(d) => out.notify.push(d),
                    Err(e) => problems.push(e),
                }
            }
        }
        Some(v) => problems.push(format!(
            "`notify` must be a list of webhooks such as [{{\"url\": \"https://…\", \"on\": [\"failed\"]}}], not {v}"
        )),
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Whether following `after` from `start` (through `after_of`, which gives the `after` of a
/// document id) comes back to `start`: such a chain never starts.
pub fn after_cycle(start: &str, first: &str, after_of: impl Fn(&str) -> Option<String>) -> bool {
    let mut at = first.to_owned();
    for _ in 0..1000 {
        if at == start {
            return true;
        }
        match after_of(&at) {
            Some(next) => at = next,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
            .into()
    }

    fn iso(t: SystemTime) -> String {
        DateTime::<Utc>::from(t).to_rfc3339()
    }

    #[test]
    fn schedules_in_utc_and_in_a_time_zone() {
        let daily = Schedule::parse("@daily", None).unwrap();
        assert_eq!(
            iso(daily.next_after(at("2026-12-03T10:00:00Z")).unwrap()),
            "2026-12-04T00:00:00+00:00"
        );
        let two_am_oslo = Schedule::parse("0 2 * * *", Some("Europe/Oslo")).unwrap();
        assert_eq!(
            iso(two_am_oslo.next_after(at("2026-12-03T10:00:00Z")).unwrap()),
            "2026-12-04T01:00:00+00:00",
            "02:00 in Oslo is 01:00 UTC in winter"
        );
        let monthly = Schedule::parse("@monthly", None).unwrap();
        assert_eq!(
            iso(monthly.next_after(at("2026-12-03T10:00:00Z")).unwrap()),
            "2027-01-01T00:00:00+00:00"
        );
        assert!(Schedule::parse("every day", None).is_err());
        assert!(Schedule::parse("0 2 * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn a_run_missed_while_down_runs_once_at_start_up() {
        let daily = Schedule::parse("@daily", None).unwrap();
        let now = at("2026-12-03T10:00:00Z");
        // Last run two days ago: due since then, so now.
        assert_eq!(
            daily.next_run(Some(at("2026-12-01T00:00:05Z")), now),
            Some(now)
        );
        // Last run today at midnight: next midnight.
        assert_eq!(
            daily.next_run(Some(at("2026-12-03T00:00:05Z")), now),
            Some(at("2026-12-04T00:00:00Z"))
        );
        // Never ran: it does not run on creation, only at the due time.
        assert_eq!(daily.next_run(None, now), Some(at("2026-12-04T00:00:00Z")));
    }

    #[test]
    fn retries_run_out_after_count() {
        let r = Retry {
            count: 3,
            interval: Duration::from_secs(30),
        };
        let waits: Vec<_> = (1..=5).map(|f| r.again_after(f)).collect();
        let s30 = Some(Duration::from_secs(30));
        assert_eq!(waits, [s30, s30, s30, None, None], "3 retries: 4 attempts");
        assert_eq!(
            Retry {
                count: 0,
                interval: Duration::ZERO
            }
            .again_after(1),
            None
        );
    }

    #[test]
    fn one_notification_per_change_of_state() {
        use Transition::*;
        assert!(Crashing.is_news(None));
        assert!(!Crashing.is_news(Some(Crashing)));
        assert!(Recovered.is_news(Some(Crashing)));
        assert!(!Recovered.is_news(None) && !Recovered.is_news(Some(Completed)));
        assert!(Crashing.is_news(Some(Recovered)));
        assert!(Failed.is_news(Some(Crashing)) && Completed.is_news(Some(Completed)));
    }

    #[test]
    fn options_are_checked_with_every_problem_named() {
        let o = |v: Value, continuous| parse(v.as_object().unwrap(), continuous);
        let ok = o(
            json!({"schedule": "@weekly", "timezone": "America/Bogota", "retry": {"count": 3, "interval": "30s"},
                "notify": [{"url": "https://hooks.example/x", "headers": {"X-Token": "t"}, "on": ["failed", "completed"]}]}),
            false,
        )
        .unwrap();
        assert_eq!(ok.retry.unwrap().interval, Duration::from_secs(30));
        assert_eq!(ok.notify[0].on, [Transition::Failed, Transition::Completed]);
        let mail = o(
            json!({"notify": [{"email": "ops@example.org", "on": ["failed"]}]}),
            false,
        )
        .unwrap();
        assert!(matches!(&mail.notify[0].to, Target::Email(a) if a == "ops@example.org"));
        let bad = o(
            json!({"schedule": "@daily", "retry": {"count": "x"}, "notify": [{"email": "not an address", "on": ["failed"]}, {"url": "ftp://x", "on": []}]}),
            true,
        )
        .unwrap_err();
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert!(bad[0].contains("continuous"));
        assert!(o(json!({"timezone": "UTC"}), false).unwrap_err()[0].contains("only applies"));
        assert_eq!(
            duration(&json!("5m"), "x").unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(
            duration(&json!(1500), "x").unwrap(),
            Duration::from_millis(1500)
        );
        assert!(duration(&json!("soon"), "x").is_err());
    }

    #[test]
    fn after_chains_that_come_back_are_cycles() {
        let chain = |id: &str| match id {
            "b" => Some("c".to_owned()),
            "c" => Some("a".to_owned()),
            "x" => None,
            _ => None,
        };
        assert!(after_cycle("a", "b", chain), "a after b after c after a");
        assert!(!after_cycle("a", "x", chain));
        let o = |v: Value| parse(v.as_object().unwrap(), false);
        assert!(o(json!({"_id": "a", "after": "a"})).unwrap_err()[0].contains("itself"));
        assert_eq!(
            o(json!({"_id": "a", "after": "b"}))
                .unwrap()
                .after
                .as_deref(),
            Some("b")
        );
    }

    #[test]
    fn a_webhook_url_shows_without_credentials() {
        let d = parse_destination(
            &json!({"url": "https://u:secret@hooks.example/x", "on": ["failed"]}),
            0,
        )
        .unwrap();
        assert!(!d.redacted().contains("secret"));
    }
}
