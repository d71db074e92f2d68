//! Distinct accounts seen in the last 24 hours, 7 days and 30 days, in memory that does not grow with them.
//!
//! Each window is a ring of [`Hll`] sketches, one per hour for the day window and one per day for the week and
//! month windows; an estimate merges the sketches still inside the window. So a window reaches back one bucket
//! further than its name at most: "24 h" covers the current hour and the 23 before it, "7 d" the current UTC day
//! and the 6 before it. Time is passed in (seconds since the Unix epoch): nothing here reads a clock.

use std::collections::VecDeque;

use super::hll::Hll;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// A window an estimate is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
    /// The last 30 days.
    Month,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 3] = [Window::Day, Window::Week, Window::Month];

    /// The label value in the metrics.
    pub fn label(self) -> &'static str {
        match self {
            Window::Day => "24h",
            Window::Week => "7d",
            Window::Month => "30d",
        }
    }

    /// Which ring answers for it, and how many of its buckets (the current one included).
    fn span(self) -> (u64, u64) {
        match self {
            Window::Day => (HOUR, 24),
            Window::Week => (DAY, 7),
            Window::Month => (DAY, 30),
        }
    }
}

/// The sketches of one population (say, accounts whose client speaks XEP-0008).
#[derive(Debug, Default)]
pub struct SeenWindows {
    hours: Ring,
    days: Ring,
}

impl SeenWindows {
    /// Notes the item with hash `hash` as seen at `now` (Unix seconds).
    pub fn insert(&mut self, hash: u64, now: u64) {
        self.hours.insert(hash, now / HOUR, 24);
        self.days.insert(hash, now / DAY, 30);
    }

    /// Distinct items seen within `window` of `now` (an estimate, about 3 % off).
    pub fn estimate(&self, window: Window, now: u64) -> f64 {
        let (width, count) = window.span();
        let ring = if width == HOUR { &self.hours } else { &self.days };
        ring.union_since((now / width).saturating_sub(count - 1)).estimate()
    }

    /// How many sketches are held (bounded: 24 + 30).
    pub fn sketches(&self) -> usize {
        self.hours.buckets.len() + self.days.buckets.len()
    }
}

/// Sketches by bucket number (hours or days since the epoch), oldest first.
#[derive(Debug, Default)]
struct Ring {
    buckets: VecDeque<(u64, Hll)>,
}

impl Ring {
    fn insert(&mut self, hash: u64, bucket: u64, keep: u64) {
        if self.buckets.back().is_none_or(|(b, _)| *b < bucket) {
            self.buckets.push_back((bucket, Hll::default()));
        }
        // A clock stepped back lands in the newest bucket rather than reordering the ring.
        let newest = self.buckets.len() - 1;
        let at = self.buckets.iter().rposition(|(b, _)| *b <= bucket).unwrap_or(newest);
        self.buckets[at].1.insert(hash);
        while self.buckets.front().is_some_and(|(b, _)| *b + keep <= bucket) {
            self.buckets.pop_front();
        }
    }

    fn union_since(&self, first: u64) -> Hll {
        let mut union = Hll::default();
        for (_, sketch) in self.buckets.iter().filter(|(b, _)| *b >= first) {
            union.merge(sketch);
        }
        union
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sketches need well-mixed hashes: the accounts' own (`a0`, `a1`, …).
    fn account(i: u64) -> u64 {
        crate::ops::hash(&format!("a{i}@localhost"))
    }

    // A UTC midnight, so the day buckets start with the test.
    const T0: u64 = 20_601 * DAY;

    #[test]
    fn an_account_leaves_each_window_as_it_ages() {
        let mut w = SeenWindows::default();
        w.insert(account(11), T0);
        let at = |secs: u64| Window::ALL.map(|window| w.estimate(window, T0 + secs).round() as u64);
        assert_eq!(at(0), [1, 1, 1]);
        assert_eq!(at(25 * HOUR), [0, 1, 1]);
        assert_eq!(at(8 * DAY), [0, 0, 1]);
        assert_eq!(at(31 * DAY), [0, 0, 0]);
    }

    #[test]
    fn the_same_account_counts_once_however_often_it_is_seen() {
        let mut w = SeenWindows::default();
        for minute in 0..(3 * 24 * 60) {
            w.insert(account(42), T0 + minute * 60);
            w.insert(account(43), T0 + minute * 60);
        }
        let now = T0 + 3 * DAY;
        assert_eq!(w.estimate(Window::Day, now).round(), 2.0);
        assert_eq!(w.estimate(Window::Month, now).round(), 2.0);
    }

    #[test]
    fn memory_is_bounded_however_long_it_runs_and_however_many_accounts() {
        let mut w = SeenWindows::default();
        for hour in 0..(100 * 24) {
            for i in 0..50 {
                w.insert(account(hour * 50 + i), T0 + hour * HOUR);
            }
        }
        assert!(w.sketches() <= 24 + 30, "{}", w.sketches());
        let now = T0 + (100 * 24 - 1) * HOUR;
        // 50 new accounts an hour: 1200 a day, 8400 a week (the current, partial day included).
        let day = w.estimate(Window::Day, now);
        assert!((day - 1200.0).abs() < 120.0, "{day}");
        let week = w.estimate(Window::Week, now);
        assert!((week - 8400.0).abs() < 840.0, "{week}");
    }

    #[test]
    fn a_clock_stepped_back_is_counted_not_lost() {
        let mut w = SeenWindows::default();
        w.insert(account(1), T0 + 2 * HOUR);
        w.insert(account(2), T0);
        assert_eq!(w.estimate(Window::Day, T0 + 2 * HOUR).round(), 2.0);
    }
}
