//! Flow control: a consumer slower than the services sending to it pauses them, instead of
//! being disconnected as soon as its queue fills.
//!
//! When the router queues a line for a service whose queue holds more than half of
//! `outbound_queue_bytes` while that consumer **is reading** (its socket took bytes within
//! [`STALLED`]), it holds the sender back until the queue is down to a quarter, or until the
//! consumer took nothing for [`STALLED`], whichever comes first: the router sets aside the
//! sender's events that are already in its inbox (`router/held_back.rs`, order kept), and the
//! sender's reader stops reading (its [`ReadGate`]). The sender's socket then fills and its
//! client is slowed to the consumer's pace: a sustained burst of at-most-once messages is not
//! dropped, and the daemon's memory stays bounded. A consumer that stops reading is not waited
//! for: after [`STALLED`] no sender is paused for it, its queue fills and it is disconnected as
//! a slow consumer, as before. Nor is one that keeps reading but does not catch up: a consumer
//! holds senders back for at most [`HOLD_LIMIT`] before its queue is down to a quarter again;
//! past that they go on, and it is disconnected once full (so a process that reads a byte now
//! and then cannot stall the services sending to it for longer). Only service connections are
//! paused (never a peer link, which carries a whole node's traffic), and only for lines to one
//! consumer (not broadcasts).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::QueueBytes;

/// A consumer whose socket took nothing for this long is not reading: nobody waits for it.
pub(crate) const STALLED: Duration = Duration::from_millis(500);

/// Longest a consumer holds its senders back before it has caught up once.
pub(crate) const HOLD_LIMIT: Duration = Duration::from_secs(5);

/// Whether a consumer reads, and the senders waiting for its queue to drain.
#[derive(Debug)]
pub(super) struct Flow {
    /// When the consumer's socket last took bytes ([`now_ms`]).
    last_taken_ms: AtomicU64,
    /// Woken when the queue is down to its low-water mark.
    drained: Notify,
    /// Since when the consumer is behind (0: it is not): set when it first holds a sender
    /// back, cleared when its queue is down to the low-water mark.
    behind_since_ms: AtomicU64,
}

impl Flow {
    /// A new connection counts as reading.
    pub(super) fn new() -> Self {
        Self {
            last_taken_ms: AtomicU64::new(now_ms()),
            drained: Notify::new(),
            behind_since_ms: AtomicU64::new(0),
        }
    }

    /// The consumer's socket took bytes.
    pub(super) fn wrote(&self) {
        self.last_taken_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn reading(&self) -> bool {
        now_ms().saturating_sub(self.last_taken_ms.load(Ordering::Relaxed))
            < STALLED.as_millis() as u64
    }

    /// Whether the consumer held senders back for [`HOLD_LIMIT`] without catching up.
    fn overdue(&self) -> bool {
        let since = self.behind_since_ms.load(Ordering::Relaxed);
        since != 0 && now_ms().saturating_sub(since) > HOLD_LIMIT.as_millis() as u64
    }

    /// May the consumer hold a sender back now (it reads, and is not overdue)? The first
    /// time starts its [`HOLD_LIMIT`].
    fn may_hold(&self) -> bool {
        if !self.reading() || self.overdue() {
            return false;
        }
        // `max(1)`: 0 means "not behind".
        let _ = self.behind_since_ms.compare_exchange(
            0,
            now_ms().max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        true
    }
}

/// Milliseconds since the first call in this process.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl QueueBytes {
    /// Whether a sender should wait for this consumer: with `pending` bytes about to be
    /// queued it holds over half its byte bound (or `slots_low`: over half its batches), and
    /// it is reading.
    pub(crate) fn congested(&self, pending: usize, slots_low: bool) -> bool {
        (slots_low || self.conn.load(Ordering::Relaxed) + pending > self.max_conn / 2)
            && self.flow.may_hold()
    }

    /// Whether the senders held back for this consumer may go on: its queue is down to a
    /// quarter of its bound, it stopped reading, or it held them for [`HOLD_LIMIT`].
    pub(crate) fn caught_up(&self) -> bool {
        self.conn.load(Ordering::Relaxed) <= self.low_water()
            || !self.flow.reading()
            || self.flow.overdue()
    }

    fn low_water(&self) -> usize {
        self.max_conn / 4
    }

    /// `left` bytes remain queued after a batch was written or dropped.
    pub(super) fn released(&self, left: usize) {
        if left <= self.low_water() {
            self.flow.behind_since_ms.store(0, Ordering::Relaxed);
            self.flow.drained.notify_waiters();
        }
    }

    /// Until the queue is down to its low-water mark, the consumer stops reading, or `stop`.
    async fn drained(&self, stop: &CancellationToken) {
        loop {
            let notified = self.flow.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.caught_up() {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(STALLED / 5) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// Set by the router on a sender's connection: wait for this consumer before reading more.
#[derive(Debug, Default)]
pub(crate) struct ReadGate(Mutex<Option<Arc<QueueBytes>>>);

impl ReadGate {
    /// Make the reader wait for `queue` before its next read.
    pub(crate) fn hold(&self, queue: &Arc<QueueBytes>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(queue.clone());
    }

    /// Before a read: wait for the consumer held, if any (see the module docs).
    pub(crate) async fn wait(&self, stop: &CancellationToken) {
        let held = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(queue) = held {
            queue.drained(stop).await;
        }
    }
}
