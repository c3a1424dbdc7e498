//! State shared by one consumer's poll thread, its rebalance callbacks and its ackers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use comms_core::Message;
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit};

use crate::offsets::{DeliveryKey, Offsets};

/// A delivery handed back for redelivery (nack with requeue, or dropped unsettled).
#[derive(Debug)]
pub struct Requeued {
    /// The message.
    pub message: Arc<Message>,
    /// Its record.
    pub key: DeliveryKey,
    /// The prefetch slot it still holds.
    pub permit: OwnedSemaphorePermit,
}

/// Shared state of one consumer.
#[derive(Debug)]
pub struct Shared {
    /// What label to log with (the group or topic).
    pub label: String,
    offsets: Mutex<Offsets>,
    requeue_tx: mpsc::Sender<Requeued>,
    requeue_rx: Mutex<mpsc::Receiver<Requeued>>,
    stash: Mutex<Vec<Requeued>>,
    /// Wakes the poll loop when a delivery is handed back.
    requeued: Notify,
    closing: AtomicBool,
    assigned: watch::Sender<bool>,
}

impl Shared {
    /// State for a consumer with at most `prefetch` deliveries in flight.
    pub fn new(label: String, prefetch: usize) -> Self {
        // Every requeued delivery holds a prefetch slot, so `prefetch` entries always suffice.
        let (requeue_tx, requeue_rx) = mpsc::channel(prefetch.max(1));
        Self {
            label,
            offsets: Mutex::new(Offsets::default()),
            requeue_tx,
            requeue_rx: Mutex::new(requeue_rx),
            stash: Mutex::new(Vec::new()),
            requeued: Notify::new(),
            closing: AtomicBool::new(false),
            assigned: watch::channel(false).0,
        }
    }

    /// The offsets.
    pub fn offsets(&self) -> MutexGuard<'_, Offsets> {
        self.offsets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hand a delivery back for redelivery. When that is impossible (the consumer is
    /// stopping) it simply stays uncommitted and comes back after a restart or rebalance.
    pub fn requeue(&self, r: Requeued) {
        if self.is_closing() {
            return;
        }
        if let Err(e) = self.requeue_tx.try_send(r) {
            tracing::debug!(consumer = %self.label, error = %e, "kafka: requeue not possible; left uncommitted");
        }
        self.requeued.notify_one();
    }

    /// Resolves once a delivery was handed back (or at once if one was since the last wait).
    pub async fn requeued(&self) {
        self.requeued.notified().await;
    }

    /// Take every delivery handed back so far.
    pub fn take_requeued(&self) -> Vec<Requeued> {
        let mut out = std::mem::take(&mut *self.stash.lock().unwrap_or_else(|p| p.into_inner()));
        let mut rx = self.requeue_rx.lock().unwrap_or_else(|p| p.into_inner());
        while let Ok(r) = rx.try_recv() {
            out.push(r);
        }
        out
    }

    /// Keep requeued deliveries for the poll loop (used inside rebalance callbacks).
    pub fn stash(&self, r: Vec<Requeued>) {
        self.stash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(r);
        self.requeued.notify_one();
    }

    /// The consumer is stopping: rebalance callbacks stop waiting for in-flight deliveries.
    pub fn set_closing(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// Whether the consumer is stopping.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// The consumer got its (first) assignment.
    pub fn set_assigned(&self) {
        self.assigned.send_replace(true);
    }

    /// Wait for the consumer's first assignment.
    pub fn assigned(&self) -> watch::Receiver<bool> {
        self.assigned.subscribe()
    }
}
