//! Which jobs start and which make room, each turn of the scheduler: at most `max_jobs` run;
//! when jobs wait and every slot is taken, once per `interval` the continuous jobs that have
//! run longest (at most `max_churn`, never more than wait) stop to let waiting ones run,
//! longest-waiting first. One-shot jobs are never rotated out. Pure: the scheduler passes its
//! jobs and the time, and applies the answer.

use std::time::{Duration, Instant, SystemTime};

/// One job as a turn sees it.
#[derive(Clone, Debug)]
pub struct Slot {
    pub id: String,
    /// `Some(start)` while it runs.
    pub running_since: Option<Instant>,
    pub continuous: bool,
    /// It may start now (pending, or its backoff or due time has passed).
    pub eligible: bool,
    /// Since when it waits (its last start, or when it was added): the longest first.
    pub waiting_since: SystemTime,
}

/// What a turn decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Turn {
    /// Running jobs to stop (they go back to pending).
    pub stop: Vec<String>,
    /// Jobs to start.
    pub start: Vec<String>,
    /// Whether this turn rotated (the next rotation is one `interval` later).
    pub rotated: bool,
}

pub struct Limits {
    pub max_jobs: usize,
    pub max_churn: usize,
    pub interval: Duration,
}

pub fn plan(slots: &[Slot], limits: &Limits, now: Instant, last_rotation: Instant) -> Turn {
    let mut turn = Turn::default();
    let mut running = slots.iter().filter(|s| s.running_since.is_some()).count();
    let waiting = slots.iter().filter(|s| s.eligible).count();
    if waiting > 0
        && running >= limits.max_jobs
        && now.duration_since(last_rotation) >= limits.interval
    {
        turn.rotated = true;
        let mut longest: Vec<(Instant, &str)> = slots
            .iter()
            .filter(|s| s.continuous)
            .filter_map(|s| s.running_since.map(|t| (t, s.id.as_str())))
            .collect();
        longest.sort();
        for (_, id) in longest.into_iter().take(limits.max_churn.min(waiting)) {
            turn.stop.push(id.to_owned());
            running -= 1;
        }
    }
    if running < limits.max_jobs {
        let mut ready: Vec<(SystemTime, &str)> = slots
            .iter()
            .filter(|s| s.eligible)
            .map(|s| (s.waiting_since, s.id.as_str()))
            .collect();
        ready.sort();
        turn.start = ready
            .into_iter()
            .take(limits.max_jobs - running)
            .map(|(_, id)| id.to_owned())
            .collect();
    }
    turn
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Clock {
        t0: Instant,
        s0: SystemTime,
    }

    impl Clock {
        fn new() -> Clock {
            Clock {
                t0: Instant::now(),
                s0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            }
        }
        fn at(&self, secs: u64) -> Instant {
            self.t0 + Duration::from_secs(secs)
        }
        fn wall(&self, secs: u64) -> SystemTime {
            self.s0 + Duration::from_secs(secs)
        }
    }

    fn running(c: &Clock, id: &str, since: u64, continuous: bool) -> Slot {
        Slot {
            id: id.into(),
            running_since: Some(c.at(since)),
            continuous,
            eligible: false,
            waiting_since: c.wall(since),
        }
    }

    fn waiting(c: &Clock, id: &str, since: u64) -> Slot {
        Slot {
            id: id.into(),
            running_since: None,
            continuous: true,
            eligible: true,
            waiting_since: c.wall(since),
        }
    }

    fn limits(max_jobs: usize, max_churn: usize) -> Limits {
        Limits {
            max_jobs,
            max_churn,
            interval: Duration::from_secs(60),
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn free_slots_go_to_the_longest_waiting() {
        let c = Clock::new();
        let slots = [
            running(&c, "r", 0, true),
            waiting(&c, "late", 30),
            waiting(&c, "early", 10),
            waiting(&c, "middle", 20),
        ];
        let t = plan(&slots, &limits(3, 20), c.at(100), c.at(0));
        assert_eq!(t.start, ids(&["early", "middle"]));
        assert!(t.stop.is_empty() && !t.rotated);
    }

    #[test]
    fn a_full_scheduler_rotates_once_per_interval_at_most_max_churn() {
        let c = Clock::new();
        let slots = [
            running(&c, "oldest", 0, true),
            running(&c, "old", 5, true),
            running(&c, "one-shot", 1, false),
            running(&c, "newest", 50, true),
            waiting(&c, "w1", 10),
            waiting(&c, "w2", 20),
            waiting(&c, "w3", 30),
        ];
        // Before the interval has passed since the last rotation: nothing moves.
        assert_eq!(
            plan(&slots, &limits(4, 2), c.at(59), c.at(0)),
            Turn::default()
        );
        // Then the two continuous jobs that ran longest make room (never the one-shot).
        let t = plan(&slots, &limits(4, 2), c.at(60), c.at(0));
        assert!(t.rotated);
        assert_eq!(t.stop, ids(&["oldest", "old"]));
        assert_eq!(t.start, ids(&["w1", "w2"]));
        // Never more stopped than wait.
        let few = [
            running(&c, "a", 0, true),
            running(&c, "b", 1, true),
            waiting(&c, "w", 2),
        ];
        let t = plan(&few, &limits(2, 20), c.at(60), c.at(0));
        assert_eq!((t.stop, t.start), (ids(&["a"]), ids(&["w"])));
    }

    #[test]
    fn nothing_waiting_means_no_rotation() {
        let c = Clock::new();
        let slots = [running(&c, "a", 0, true), running(&c, "b", 0, true)];
        assert_eq!(
            plan(&slots, &limits(2, 20), c.at(600), c.at(0)),
            Turn::default()
        );
    }
}
