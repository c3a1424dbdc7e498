//! [`LogGate`]: rate limit for warnings a remote party can trigger at will: at most one line
//! per interval per gate; the lines suppressed in between are counted and reported (field
//! `suppressed`) with the next one. Lock-free, shared by any number of tasks. The counters in
//! [`super::Stats`] still count every event.
//!
//! [`LogGates`] (in `Stats`, so every task has it) holds one gate per [`Gate`] kind, one line
//! a second each: **every** warning or info line that hostile input can cause goes through
//! it (refused and idle connections, TLS handshakes, bad lines, cache full, slow consumers,
//! sniffer loss, peer-link lines), so a flood of any kind writes at most one line a second
//! of that kind. Bad UDP datagrams have their own gates (one line per 5 s per kind).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One warning per `interval` at most.
#[derive(Debug)]
pub(crate) struct LogGate {
    start: Instant,
    interval_ms: u64,
    /// Milliseconds since `start` before which nothing is logged.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogGate {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            start: Instant::now(),
            interval_ms: interval.as_millis().max(1) as u64,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: log now, `n` lines were suppressed since the last one. `None`: stay quiet.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.interval_ms,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The kinds of warnings hostile input can cause; each has its own gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// A stream connection refused (`max_connections`, TLS pending or per-address caps).
    Refused,
    /// A service connection closed for sending no valid line in time.
    IdleClosed,
    /// A failed TLS handshake.
    TlsHandshake,
    /// A line refused with `INVALID` (unparseable, too long, unregistered sender...).
    BadLine,
    /// A message not cached because the cache is full (or its TTL expired).
    Cache,
    /// A slow consumer disconnected (its queue over a bound).
    SlowConsumer,
    /// A sniffer losing copies.
    SniffLost,
    /// A line on a peer link refused (before the handshake, bad, forged...).
    Peer,
    /// A UDP datagram refused by the router (daemon command, not routable).
    Udp,
}

const GATE_KINDS: usize = 9;

/// One warning per second per [`Gate`] kind.
#[derive(Debug)]
pub(crate) struct LogGates([LogGate; GATE_KINDS]);

impl Default for LogGates {
    fn default() -> Self {
        Self(std::array::from_fn(|_| {
            LogGate::new(Duration::from_secs(1))
        }))
    }
}

impl LogGates {
    /// `Some(suppressed)`: write this line now (with `suppressed`). `None`: stay quiet.
    pub(crate) fn allow(&self, kind: Gate) -> Option<u64> {
        self.0[kind as usize].allow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_counted() {
        let gate = LogGate::new(Duration::from_secs(3600));
        assert_eq!(gate.allow(), Some(0));
        assert_eq!(gate.allow(), None);
        assert_eq!(gate.allow(), None);
        // Open the gate again as if the interval had passed.
        gate.next_ms.store(0, Ordering::Relaxed);
        assert_eq!(gate.allow(), Some(2));
    }
}
