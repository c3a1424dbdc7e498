//! Sender-side state per destination: which partition the next record goes to, and which of
//! this sender's records the destination's consumer group has not committed yet.
//!
//! **Partition choice ("sticky until consumed").** A sender keeps writing to one partition of a
//! destination topic while any record it wrote there is not yet committed by the destination's
//! group; only when all of them are does it move on to the next partition. Records of one
//! sender to one destination are therefore never in flight on two partitions at once, so
//! per-pair order holds even across competing consumers, and a busy sender still spreads its
//! work over the partitions (and so over the instances of a service) whenever the consumers
//! keep up. Keying by sender alone would pin a sender to one instance for ever.
//!
//! **Bound.** The records not yet committed are this sender's share of the destination's lag;
//! [`Outbound::pending`] is compared with the configured `queue_bound`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// One destination as seen by one sender.
#[derive(Debug)]
pub struct Outbound {
    current: i32,
    partitions: i32,
    pending: HashMap<i32, VecDeque<i64>>,
    refreshed: Option<Instant>,
}

impl Outbound {
    /// A destination with `partitions` partitions; the first record goes to `start`.
    pub fn new(partitions: i32, start: i32) -> Self {
        let partitions = partitions.max(1);
        Self {
            current: start.rem_euclid(partitions),
            partitions,
            pending: HashMap::new(),
            refreshed: None,
        }
    }

    /// Records written and not yet known to be committed.
    pub fn pending(&self) -> usize {
        self.pending.values().map(VecDeque::len).sum()
    }

    /// The partition the next record goes to (moves on when the current one is drained).
    pub fn choose(&mut self) -> i32 {
        if self.pending() == 0 {
            self.current = (self.current + 1) % self.partitions;
        }
        self.current
    }

    /// The partition records currently go to, without moving.
    pub fn current(&self) -> i32 {
        self.current
    }

    /// A record was written at `partition`/`offset`.
    pub fn written(&mut self, partition: i32, offset: i64) {
        self.pending.entry(partition).or_default().push_back(offset);
    }

    /// The group committed `point` (the next offset it will read) on `partition`.
    pub fn committed(&mut self, partition: i32, point: i64) {
        if let Some(q) = self.pending.get_mut(&partition) {
            while q.front().is_some_and(|o| *o < point) {
                q.pop_front();
            }
            if q.is_empty() {
                self.pending.remove(&partition);
            }
        }
    }

    /// Partitions with records not yet known committed.
    pub fn pending_partitions(&self) -> Vec<i32> {
        self.pending.keys().copied().collect()
    }

    /// Whether committed offsets are worth fetching again (something pending, and the last
    /// look is older than `every`).
    pub fn wants_refresh(&self, now: Instant, every: Duration) -> bool {
        self.pending() > 0
            && self
                .refreshed
                .is_none_or(|t| now.duration_since(t) >= every)
    }

    /// Committed offsets were just fetched.
    pub fn refreshed_at(&mut self, now: Instant) {
        self.refreshed = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticks_while_pending_and_moves_when_drained() {
        let mut o = Outbound::new(3, 0);
        let p = o.choose();
        assert_eq!(p, 1);
        o.written(p, 0);
        assert_eq!(o.choose(), 1, "stays while its records are pending");
        o.written(1, 1);
        assert_eq!(o.pending(), 2);
        o.committed(1, 1);
        assert_eq!(o.pending(), 1);
        assert_eq!(o.choose(), 1);
        o.committed(1, 2);
        assert_eq!(o.pending(), 0);
        assert_eq!(o.choose(), 2, "drained: moves on");
        assert_eq!(o.choose(), 0);
    }

    #[test]
    fn refresh_only_when_pending() {
        let mut o = Outbound::new(1, 0);
        let now = Instant::now();
        assert!(!o.wants_refresh(now, Duration::ZERO));
        o.written(0, 5);
        assert!(o.wants_refresh(now, Duration::from_millis(100)));
        o.refreshed_at(now);
        assert!(!o.wants_refresh(now, Duration::from_millis(100)));
        assert_eq!(o.pending_partitions(), vec![0]);
    }
}
