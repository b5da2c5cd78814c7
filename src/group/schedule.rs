//! When the coordinator next polls each group: a time-ordered set of (time, group id), at most
//! one entry per group.
//!
//! Per-shard, owned by the `Coordinator`. Polling a group scans all its members, so it must
//! not run on every request (a flood of JoinGroup into a group of thousands of members would
//! then cost thousands of steps per request); nor may the timer loop poll every group of the
//! shard whenever any request arrives. Instead each group is polled when its earliest deadline
//! is due, and at most once per `limits::GROUP_POLL_INTERVAL_MS_MIN` after a request touched it.
//! Invariant: `by_time` and `by_group` hold the same entries.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

#[derive(Default)]
pub struct Schedule {
    by_time: BTreeSet<(Instant, String)>,
    by_group: HashMap<String, Instant>,
}

impl Schedule {
    /// Asks for `group` to be polled at `at`, or earlier if it already is. Returns whether
    /// `at` became the earliest time of the whole schedule (the timer loop must look again).
    pub fn at(&mut self, group: &str, at: Instant) -> bool {
        match self.by_group.get(group) {
            Some(&known) if known <= at => return false,
            Some(&known) => {
                self.by_time.remove(&(known, group.to_string()));
            }
            None => {}
        }
        self.by_group.insert(group.to_string(), at);
        self.by_time.insert((at, group.to_string()));
        self.next() == Some(at)
    }

    /// Takes the groups due at `now`, earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.by_time.first() {
            if *at > now {
                break;
            }
            let (_, group) = self.by_time.pop_first().expect("looked at above");
            self.by_group.remove(&group);
            due.push(group);
        }
        due
    }

    /// The earliest time a group is due, if any.
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_group.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A group keeps only its earliest time; due groups come out in time order, once.
    #[test]
    fn keeps_the_earliest_time_per_group() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut schedule = Schedule::default();
        assert!(schedule.at("a", ms(30)));
        assert!(!schedule.at("a", ms(40)), "a later time changes nothing");
        assert!(schedule.at("b", ms(20)));
        assert!(
            schedule.at("a", ms(10)),
            "an earlier time replaces the entry"
        );
        assert_eq!(schedule.len(), 2);
        assert_eq!(schedule.next(), Some(ms(10)));
        assert!(schedule.take_due(ms(5)).is_empty());
        assert_eq!(schedule.take_due(ms(25)), vec!["a", "b"]);
        assert_eq!((schedule.len(), schedule.next()), (0, None));
        assert!(schedule.take_due(ms(100)).is_empty());
    }
}
