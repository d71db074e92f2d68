//! Request latency and timeouts, measured on the wire: a `get` or `set` the gateway sends is timed until a
//! `result` or `error` with its id comes back, or counted as timed out once the engine's IQ timeout has passed.
//!
//! The engine expires its requests after the same timeout, so what is counted here is what it gave up on. Sent
//! times are the `now` of the input that produced the request, which is the time the engine's deadline counts from.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// At most this many requests are timed at once; beyond it the oldest is dropped uncounted. The engine keeps far
/// fewer in flight (one fetch per account, a few writes), so this only bounds memory against a bug.
const MAX_TRACKED: usize = 65_536;

/// Requests in flight, by id.
#[derive(Debug)]
pub struct IqClock {
    timeout: Duration,
    sent: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl IqClock {
    /// Requests time out after `timeout` (the engine's `iq_timeout`).
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, sent: HashMap::new(), order: VecDeque::new() }
    }

    /// A request went out at `now`.
    pub fn sent(&mut self, id: &str, now: Instant) {
        if self.sent.len() >= MAX_TRACKED
            && let Some((_, oldest)) = self.order.pop_front()
        {
            self.sent.remove(&oldest);
        }
        // A re-used id replaces the earlier request; its old entry in `order` is skipped by `expire`.
        self.sent.insert(id.to_owned(), now);
        self.order.push_back((now, id.to_owned()));
    }

    /// An answer to `id` came at `now`: how long it took, if it was a request in flight.
    pub fn answered(&mut self, id: &str, now: Instant) -> Option<Duration> {
        let sent = self.sent.remove(id)?;
        Some(now.saturating_duration_since(sent))
    }

    /// How many requests in flight reached their timeout by `now` (each counted once, then forgotten).
    pub fn expire(&mut self, now: Instant) -> u64 {
        let mut expired = 0;
        while let Some((at, _)) = self.order.front() {
            if *at + self.timeout > now {
                break;
            }
            let Some((at, id)) = self.order.pop_front() else { break };
            // Still there under the same send time: never answered (an answered or re-sent id has moved on).
            if self.sent.get(&id) == Some(&at) {
                self.sent.remove(&id);
                expired += 1;
            }
        }
        expired
    }

    /// The link went down: answers can no longer come, and the engine voids these requests without a timeout.
    pub fn clear(&mut self) {
        self.sent.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_answers_and_counts_timeouts_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = IqClock::new(5 * s);
        c.sent("a", t0);
        c.sent("b", t0 + s);
        assert_eq!(c.answered("a", t0 + 2 * s), Some(2 * s));
        assert_eq!(c.answered("a", t0 + 3 * s), None, "an answer is timed once");
        assert_eq!(c.expire(t0 + 5 * s), 0);
        assert_eq!(c.expire(t0 + 6 * s), 1, "b");
        assert_eq!(c.expire(t0 + 60 * s), 0);
        assert_eq!(c.answered("b", t0 + 61 * s), None, "a late answer is not timed");
    }

    #[test]
    fn a_lost_link_is_no_timeout() {
        let t0 = Instant::now();
        let mut c = IqClock::new(Duration::from_secs(5));
        c.sent("a", t0);
        c.clear();
        assert_eq!(c.expire(t0 + Duration::from_secs(10)), 0);
    }
}
