//! Sender-side state per destination: which partition the next record goes to, and which of
//! this sender's records the destination's consumer group has not committed yet.
//!
//! **Partition choice ("sticky until consumed").** A sender keeps writing to one partition of a
//! destination topic while any record it wrote there is not yet committed by the destination's
//! group; it moves on to the next partition only when all of them are. Records of one sender
//! to one destination are therefore never in flight on two partitions at once, so per-pair
//! order holds even across competing consumers.
//!
//! A sender that never pauses would never see its records drained, and so would stay on one
//! partition — one instance of the service — for ever. For **service** destinations the
//! sender therefore *makes* a drain point: after [`STICKY`] or [`STICKY_RECORDS`] records on
//! one partition, whichever comes first, it waits (at most [`DRAIN_WAIT`]) for its records
//! there to be committed, then moves on. That costs a short pause (about one consumer commit
//! interval) per stint (backing off when the consumers are slow or absent), and spreads a busy
//! sender's work — even a burst shorter than [`STICKY`] — over the partitions, hence over the
//! instances (the native transport caps its service streams the same way). **Instance** destinations have one
//! consumer: their records stay on one partition (chosen from the sender's address) and
//! never pause.
//!
//! **Bound.** The records not yet committed are this sender's share of the destination's lag;
//! [`Outbound::pending`] is compared with the configured `queue_bound`.
//!
//! **Pipelining.** The sender holds the destination's lock only to choose the partition and
//! hand the record to the producer ([`Outbound::sending`]); it waits for the broker's
//! acknowledgement without it, so concurrent sends reach the producer together. A record
//! handed over and not yet acknowledged counts as pending on the current partition (the
//! [`InFlight`] guard), so the sender never moves on while one is in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a sender stays on one partition of a service topic before it makes a drain point.
pub const STICKY: Duration = Duration::from_millis(500);
/// How many records a sender writes to one partition of a service topic before it makes a
/// drain point.
pub const STICKY_RECORDS: usize = 256;
/// Longest pause at a drain point; when the consumers are slower, the sender goes on where it
/// is and tries again after another [`STICKY`]. Longer than the default `assign_grace_ms`
/// (1 s), so a drain point just after a rebalance waits for the partition's new owner, which
/// takes its partitions up only after that grace.
pub const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// One destination as seen by one sender.
#[derive(Debug)]
pub struct Outbound {
    current: i32,
    partitions: i32,
    rotate: bool,
    since: Instant,
    /// Records written since `since`.
    stint: usize,
    misses: u32,
    pending: HashMap<i32, VecDeque<i64>>,
    in_flight: Arc<AtomicUsize>,
    refreshed: Option<Instant>,
}

/// One record handed to the producer and not yet acknowledged: pending until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Outbound {
    /// A destination with `partitions` partitions; the first record goes to `start`.
    /// `rotate`: move between partitions (service destinations); otherwise stay on `start`.
    pub fn new(partitions: i32, start: i32, rotate: bool) -> Self {
        let partitions = partitions.max(1);
        Self {
            current: start.rem_euclid(partitions),
            partitions,
            rotate,
            since: Instant::now(),
            stint: 0,
            misses: 0,
            pending: HashMap::new(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            refreshed: None,
        }
    }

    /// Records handed to the producer and not yet known to be committed.
    pub fn pending(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
            + self.pending.values().map(VecDeque::len).sum::<usize>()
    }

    /// A record is being handed to the producer for the current partition: pending until
    /// the guard is dropped (after [`Outbound::written`], or on failure).
    pub fn sending(&mut self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.stint += 1;
        InFlight(self.in_flight.clone())
    }

    /// The partition the next record goes to (moves on when the current one is drained).
    pub fn choose(&mut self) -> i32 {
        if self.rotate && self.pending() == 0 {
            self.current = (self.current + 1) % self.partitions;
            self.since = Instant::now();
            self.stint = 0;
            self.misses = 0;
        }
        self.current
    }

    /// Whether the sender should wait for a drain point before its next record.
    pub fn wants_drain(&self, now: Instant) -> bool {
        let backoff = 1 << self.misses.min(5);
        self.rotate
            && self.partitions > 1
            && self.pending() > 0
            && (now.duration_since(self.since) >= STICKY * backoff
                || self.stint >= STICKY_RECORDS * backoff as usize)
    }

    /// The drain point did not come in time (slow or absent consumers): stay, and try again
    /// after twice as long as last time (at most 32 × [`STICKY`]).
    pub fn stay(&mut self, now: Instant) {
        self.since = now;
        self.stint = 0;
        self.misses = self.misses.saturating_add(1);
    }

    /// The partition records currently go to, without moving.
    pub fn current(&self) -> i32 {
        self.current
    }

    /// A record was written at `partition`/`offset` (acknowledgements of pipelined records
    /// may be learnt out of order: kept sorted).
    pub fn written(&mut self, partition: i32, offset: i64) {
        let q = self.pending.entry(partition).or_default();
        let at = q.partition_point(|o| *o < offset);
        q.insert(at, offset);
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

    /// A look at committed offsets starts now: the partitions to ask about, `None` when
    /// nothing is pending there.
    pub fn begin_refresh(&mut self, now: Instant) -> Option<Vec<i32>> {
        self.refreshed = Some(now);
        let parts = self.pending_partitions();
        (!parts.is_empty()).then_some(parts)
    }

    /// Applies the committed points `(partition, next offset)` just fetched.
    pub fn committed_all(&mut self, points: impl IntoIterator<Item = (i32, i64)>) {
        for (p, point) in points {
            self.committed(p, point);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticks_while_pending_and_moves_when_drained() {
        let mut o = Outbound::new(3, 0, true);
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
    fn instance_destinations_never_move_and_drain_points_come_after_sticky() {
        let mut o = Outbound::new(4, 2, false);
        assert_eq!(o.choose(), 2);
        assert_eq!(o.choose(), 2);
        assert!(!o.wants_drain(Instant::now() + STICKY));
        let mut s = Outbound::new(4, 0, true);
        let p = s.choose();
        s.written(p, 0);
        assert!(!s.wants_drain(Instant::now()));
        assert!(s.wants_drain(Instant::now() + STICKY));
        s.stay(Instant::now() + STICKY);
        assert!(!s.wants_drain(Instant::now() + STICKY));
        assert!(!s.wants_drain(Instant::now() + STICKY * 2));
        assert!(
            s.wants_drain(Instant::now() + STICKY * 4),
            "backs off after a miss"
        );
    }

    #[test]
    fn a_burst_makes_a_drain_point_after_sticky_records() {
        let now = Instant::now();
        let mut s = Outbound::new(2, 0, true);
        let p = s.choose();
        for i in 0..STICKY_RECORDS as i64 - 1 {
            drop(s.sending());
            s.written(p, i);
        }
        assert!(!s.wants_drain(now));
        drop(s.sending());
        s.written(p, STICKY_RECORDS as i64);
        assert!(
            s.wants_drain(now),
            "a burst drains before STICKY has passed"
        );
        s.committed(p, STICKY_RECORDS as i64 + 1);
        assert_ne!(s.choose(), p, "drained: moves on");
        assert!(!s.wants_drain(now), "a new stint");
    }

    #[test]
    fn a_record_in_flight_is_pending_and_keeps_the_sender_on_its_partition() {
        let mut o = Outbound::new(3, 0, true);
        let p = o.choose();
        let first = o.sending();
        assert_eq!(o.pending(), 1, "in flight counts as pending");
        assert_eq!(o.choose(), p, "no move while a record is in flight");
        let second = o.sending();
        o.written(p, 11);
        drop(second);
        o.written(p, 10);
        drop(first);
        assert_eq!(o.pending(), 2);
        o.committed(p, 11);
        assert_eq!(
            o.pending(),
            1,
            "acknowledgements out of order are kept sorted"
        );
        o.committed(p, 12);
        assert_eq!(o.pending(), 0);
        assert_ne!(o.choose(), p, "drained: moves on");
    }

    #[test]
    fn refresh_only_when_pending() {
        let mut o = Outbound::new(1, 0, true);
        let now = Instant::now();
        assert!(!o.wants_refresh(now, Duration::ZERO));
        o.written(0, 5);
        assert!(o.wants_refresh(now, Duration::from_millis(100)));
        assert_eq!(o.begin_refresh(now), Some(vec![0]));
        assert!(!o.wants_refresh(now, Duration::from_millis(100)));
    }
}
