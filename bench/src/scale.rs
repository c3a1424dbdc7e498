//! How much each row measures: message counts and time caps (full run and `--quick`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Payload sizes every backend is measured at.
pub const PAYLOADS: [usize; 2] = [16, 1024];

/// Bounds of one measurement: whichever of count or time cap comes first ends it.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// One-way messages sent at 16 B (fewer at 1 KiB, see [`Scale::oneway_count`]).
    pub oneway_small: u64,
    /// Sending stops after this long even if fewer messages went out.
    pub oneway_cap: Duration,
    /// How long to wait after the last send for the receiver to catch up.
    pub drain: Duration,
    /// Requests timed for the latency histogram.
    pub rtt_count: u64,
    /// Request/reply timing stops after this long.
    pub rtt_cap: Duration,
    /// Untimed requests before timing (connection set-up, first-use declarations).
    pub warmup: u64,
    /// Tasks sending concurrently through one endpoint in the one-way rows of the comms
    /// backends (`--senders`; 1: a plain `send` loop).
    pub senders: u64,
    /// Confirmations each sender keeps outstanding in the at-least-once one-way rows
    /// (`--window`; 0: every send waits for its confirmation). The comms rows `submit` and
    /// keep this many receipts; raw-lapin keeps this many publisher confirms in flight;
    /// raw-rdkafka this many delivery reports, with `linger.ms=5` as its docs recommend.
    pub window: usize,
}

impl Scale {
    /// The full run (all rows stay under ~5 minutes on 2 shared cores).
    pub fn full() -> Self {
        Self {
            oneway_small: 300_000,
            oneway_cap: Duration::from_secs(4),
            drain: Duration::from_secs(5),
            rtt_count: 5_000,
            rtt_cap: Duration::from_secs(3),
            warmup: 100,
            senders: 1,
            window: 0,
        }
    }

    /// `--quick`: proves the harness end to end in seconds; the figures mean little.
    pub fn quick() -> Self {
        Self {
            oneway_small: 3_000,
            oneway_cap: Duration::from_millis(400),
            drain: Duration::from_secs(2),
            rtt_count: 100,
            rtt_cap: Duration::from_millis(300),
            warmup: 5,
            senders: 1,
            window: 0,
        }
    }

    /// One-way messages for `payload` bytes: the 16 B count scaled to a similar byte volume
    /// bound (at least a fifth of it).
    pub fn oneway_count(&self, payload: usize) -> u64 {
        if payload <= 64 {
            self.oneway_small
        } else {
            (self.oneway_small / 5).max(1)
        }
    }

    /// The sending side of a one-way run of `n` messages, its time cap starting now.
    pub fn sends(&self, n: u64) -> Sends {
        Sends {
            n,
            deadline: Instant::now() + self.oneway_cap,
            sent: AtomicU64::new(0),
        }
    }
}

/// Counts a one-way run's sends: `n` at most, and none after the time cap (checked every
/// 64 sends, so the clock costs nothing per message). Shared by concurrent senders.
#[derive(Debug)]
pub struct Sends {
    n: u64,
    deadline: Instant,
    sent: AtomicU64,
}

impl Sends {
    /// Whether to send one more (counted as sent).
    pub fn next(&self) -> bool {
        let mut k = self.sent.load(Ordering::Relaxed);
        loop {
            if k >= self.n || (k % 64 == 0 && Instant::now() >= self.deadline) {
                return false;
            }
            match self
                .sent
                .compare_exchange_weak(k, k + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => k = now,
            }
        }
    }

    /// How many were sent.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}
