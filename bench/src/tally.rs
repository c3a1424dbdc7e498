//! [`Tally`]: the receiving side of a one-way measurement, shared by every driver — counts
//! arrivals, remembers when the last one came, wakes the sender's wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::report::OneWay;

/// Arrival counter with the time of the last arrival.
#[derive(Debug)]
pub struct Tally {
    origin: Instant,
    count: AtomicU64,
    target: AtomicU64,
    last_ns: AtomicU64,
    done: Notify,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    /// A tally whose clock starts now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            count: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            last_ns: AtomicU64::new(0),
            done: Notify::new(),
        }
    }

    /// Time since the tally was made (take it just before the first send).
    pub fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// One message arrived.
    pub fn hit(&self) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        self.last_ns
            .store(self.origin.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if n >= self.target.load(Ordering::Relaxed) {
            self.done.notify_one();
        }
    }

    /// Arrivals so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Wait until `sent` arrived or `drain` passed; the figures from `t0` (the first send)
    /// to the last arrival, with the real received count.
    pub async fn finish(&self, t0: Duration, sent: u64, drain: Duration, payload: usize) -> OneWay {
        self.target.store(sent, Ordering::Relaxed);
        let _ = tokio::time::timeout(drain, async {
            while self.count() < sent {
                self.done.notified().await;
            }
        })
        .await;
        let last = Duration::from_nanos(self.last_ns.load(Ordering::Relaxed));
        OneWay::new(sent, self.count(), last.saturating_sub(t0), payload)
    }
}
