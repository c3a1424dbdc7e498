//! [`TransportStats`]: what a transport counts for operators (sent, acknowledged, failed,
//! resent, dead-lettered; in flight is derived), read with [`TransportStats::snapshot`].
//!
//! Every backend keeps one in its [`Binding`](crate::backend::Binding) and counts at the same
//! places: [`Binding::counted`](crate::backend::Binding::counted) around a `send` that returns
//! its outcome, [`Binding::receipt`](crate::backend::Binding::receipt) for a pipelined one
//! (counted when the receipt is settled, whether or not anyone awaits it). Resends are counted
//! by the backend that resends; dead letters by the [`Endpoint`](crate::Endpoint) that gives a
//! message up. Relaxed atomics: one increment per message, no lock. The binaries export them
//! as Prometheus metrics (`comms-ops`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one transport (shared by its clones and its endpoint).
#[derive(Debug, Default)]
pub struct TransportStats {
    sent: AtomicU64,
    acknowledged: AtomicU64,
    failed: AtomicU64,
    resent: AtomicU64,
    dead_lettered: AtomicU64,
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportCounts {
    /// Messages given to `send` or `submit` (replies and forwards included).
    pub sent: u64,
    /// Of those, confirmed: the transport took responsibility (broker confirm, daemon
    /// outbox, delivery report), as `send` returning `Ok` means.
    pub acknowledged: u64,
    /// Of those, failed: refused (backpressure, closed, connection lost) or not confirmed.
    /// An invalid message (bad name, too large) is refused before it is sent: not counted.
    pub failed: u64,
    /// Messages the transport published again (lost connection, nack, return).
    pub resent: u64,
    /// Received messages given up (attempts exhausted, hop limit): answered with an error
    /// and acknowledged, not handled.
    pub dead_lettered: u64,
}

impl TransportCounts {
    /// Sent, neither acknowledged nor failed yet.
    pub fn in_flight(&self) -> u64 {
        self.sent
            .saturating_sub(self.acknowledged)
            .saturating_sub(self.failed)
    }
}

impl TransportStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> TransportCounts {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // Outcomes first: a message settled between the loads never reads as negative in flight.
        let acknowledged = r(&self.acknowledged);
        let failed = r(&self.failed);
        TransportCounts {
            sent: r(&self.sent),
            acknowledged,
            failed,
            resent: r(&self.resent),
            dead_lettered: r(&self.dead_lettered),
        }
    }

    /// One message handed to the transport, outcome pending.
    pub fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The outcome of one message counted by [`TransportStats::sent`].
    pub fn settled(&self, ok: bool) {
        let counter = if ok { &self.acknowledged } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// One message sent whose outcome is already known (`send` returned it).
    pub fn count(&self, ok: bool) {
        self.sent();
        self.settled(ok);
    }

    /// Counts `outcome` as one message sent and failed when it is an error (a send or submit
    /// refused before the message was handed over), and returns it.
    pub fn refused<T>(&self, outcome: crate::Result<T>) -> crate::Result<T> {
        if outcome.is_err() {
            self.count(false);
        }
        outcome
    }

    /// `n` messages published again.
    pub fn resent(&self, n: u64) {
        self.resent.fetch_add(n, Ordering::Relaxed);
    }

    /// One received message given up.
    pub fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_is_sent_minus_settled() {
        let s = TransportStats::default();
        for _ in 0..3 {
            s.sent();
        }
        s.settled(true);
        s.settled(false);
        s.resent(2);
        let c = s.snapshot();
        assert_eq!((c.sent, c.acknowledged, c.failed, c.resent), (3, 1, 1, 2));
        assert_eq!(c.in_flight(), 1);
    }
}
