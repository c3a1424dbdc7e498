//! The dispatcher tasks of an endpoint: reader, sender lanes, heartbeat, directory sweep.
//!
//! # Reader and lanes
//! One reader takes deliveries off the inbox, every delivery waiting at once (up to
//! [`READ_BATCH`], and no more than the endpoint may still hold): a burst costs one wake-up
//! and one pass, not one per message. Replies to pending requests and advertisements are
//! settled right there; everything else is queued on the **lane of its sender** (one FIFO per
//! exact `from`, not a hash bucket shared with other senders). A lane task runs its sender's
//! messages one after another (per-sender order) and ends when its queue is empty; at most
//! [`EndpointBuilder::lanes`](super::EndpointBuilder::lanes) handlers run at once over all lanes.
//!
//! The reader **never waits for a lane**: queuing on a lane cannot block, so a slow or hung
//! handler holds back only the later messages of its own sender, never another sender's. What
//! bounds the memory is the number of deliveries the endpoint holds (queued or running):
//! [`MAX_HELD`]; the reader takes the next delivery only when one of those is settled. In
//! practice the backend's own bound on unacknowledged deliveries (its prefetch or credit) is
//! the tighter one. A sender that floods a stuck handler with more than that bound does hold
//! the others back, but only until the stuck handler's timeout (60 s by default) frees it:
//! the handler timeout is what turns "hung" into "slow".
//!
//! # Failure of a dispatcher task
//! Handlers run inside `catch_unwind` and under a timeout (see the `process` module), so a
//! handler cannot end a lane. Should a dispatcher task end anyway (a bug, or the inbox ending
//! without `close`), the endpoint logs one error and closes itself: the heartbeat stops, the
//! advertisement is withdrawn and the transport closed, so it is never advertised "up" while
//! no one reads its messages.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::address::Address;
use crate::advertisement::Advertisement;
use crate::error::Result;
use crate::message::{commands, Message};
use crate::transport::{Delivery, Inbox};

use super::process::{process, settle, Slot};
use super::{lock, Inner};

/// Most deliveries an endpoint holds at once (queued on lanes or being handled).
pub const MAX_HELD: usize = 1024;

/// Most deliveries the reader takes off the inbox per wake-up.
pub(crate) const READ_BATCH: usize = 64;

/// A delivery queued on a lane (or for a batch handler), with its share of [`MAX_HELD`].
pub(crate) struct Held {
    delivery: Delivery,
    _permit: OwnedSemaphorePermit,
}

impl Held {
    /// The delivery, and its share of [`MAX_HELD`] (to hold until it is settled).
    pub(crate) fn into_parts(self) -> (Delivery, OwnedSemaphorePermit) {
        (self.delivery, self._permit)
    }
}

/// The lanes: one queue per sender, created on demand and removed once empty.
struct Lanes {
    queues: Mutex<HashMap<Option<Address>, mpsc::UnboundedSender<Held>>>,
    /// Handlers running at once.
    running: Arc<Semaphore>,
    /// Deliveries held at once.
    held: Arc<Semaphore>,
    /// The queue of each batch command's task ([`super::batch`]).
    batchers: HashMap<String, mpsc::UnboundedSender<Held>>,
}

pub(crate) fn spawn(inner: &Arc<Inner>, inbox: Inbox) {
    let running = Arc::new(Semaphore::new(inner.lanes));
    let batchers = inner
        .handlers
        .iter()
        .filter(|(_, h)| h.batch.is_some())
        .map(|(command, _)| {
            let tx = super::batch::spawn(inner, running.clone(), command);
            (command.clone(), tx)
        })
        .collect();
    let lanes = Arc::new(Lanes {
        queues: Mutex::default(),
        running,
        held: Arc::new(Semaphore::new(MAX_HELD)),
        batchers,
    });
    inner.tracker.spawn(reader(inner.clone(), inbox, lanes));
    inner.tracker.spawn(heartbeat(inner.clone()));
    if let Some(directory) = inner.directory.clone() {
        let cancel = inner.cancel.clone();
        inner.tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => directory.sweep(),
                    _ = cancel.cancelled() => break,
                }
            }
        });
    }
}

/// Watches a dispatcher task: if it ends while the endpoint is not closing (any end for the
/// reader, a panic for the others), the endpoint closes itself (see the module docs).
pub(crate) struct Sentinel {
    inner: Arc<Inner>,
    task: &'static str,
    any_end: bool,
}

impl Sentinel {
    pub(crate) fn new(inner: &Arc<Inner>, task: &'static str, any_end: bool) -> Self {
        Self {
            inner: inner.clone(),
            task,
            any_end,
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if self.inner.cancel.is_cancelled() || !(self.any_end || std::thread::panicking()) {
            return;
        }
        if self.inner.failed.swap(true, Ordering::SeqCst) {
            return; // reported once
        }
        tracing::error!(
            address = %self.inner.address,
            task = self.task,
            "an endpoint dispatcher task ended; closing the endpoint (advertisement withdrawn)"
        );
        let inner = self.inner.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = close(&inner).await {
                        tracing::warn!(error = %e, "closing a failed endpoint");
                    }
                });
            }
            Err(_) => self.inner.cancel.cancel(),
        }
    }
}

async fn reader(inner: Arc<Inner>, mut inbox: Inbox, lanes: Arc<Lanes>) {
    let _sentinel = Sentinel {
        inner: inner.clone(),
        task: "reader",
        any_end: true,
    };
    let mut batch = Vec::with_capacity(READ_BATCH);
    loop {
        // One share of MAX_HELD per delivery taken: wait for one, take what else is free.
        let mut permits = tokio::select! {
            biased;
            _ = inner.cancel.cancelled() => break,
            p = lanes.held.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let free = lanes.held.available_permits().min(READ_BATCH - 1);
        if free > 0 {
            if let Ok(more) = lanes.held.clone().try_acquire_many_owned(free as u32) {
                permits.merge(more);
            }
        }
        let taken = tokio::select! {
            biased;
            _ = inner.cancel.cancelled() => break,
            n = inbox.recv_many(&mut batch, permits.num_permits()) => n,
        };
        if taken == 0 {
            if !inner.cancel.is_cancelled() {
                tracing::debug!(address = %inner.address, "inbox closed");
            }
            break;
        }
        for delivery in batch.drain(..) {
            // At least one permit per delivery was taken (recv_many's limit).
            let Some(permit) = permits.split(1) else {
                break;
            };
            take(&inner, &lanes, delivery, permit).await;
        }
        // Shares not used (fewer deliveries waited than were free) are released here.
    }
}

/// One delivery off the inbox: a reply to a pending request or an advertisement is settled
/// here; everything else is queued for a handler.
async fn take(
    inner: &Arc<Inner>,
    lanes: &Arc<Lanes>,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
) {
    let msg = delivery.message();
    if let Some(correlation) = &msg.correlation {
        let waiter = lock(&inner.pending).remove(correlation);
        if let Some(waiter) = waiter {
            let _ = waiter.send(msg.clone());
            settle(delivery.ack().await);
            return;
        }
    }
    if msg.command == commands::ADVERTISE {
        observe(inner, msg);
        settle(delivery.ack().await);
        return;
    }
    enqueue(inner, lanes, delivery, permit);
}

/// Queue `delivery` on its sender's lane, starting the lane's task if it has none (or on its
/// batch command's queue). Never waits.
fn enqueue(
    inner: &Arc<Inner>,
    lanes: &Arc<Lanes>,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
) {
    let held = Held {
        delivery,
        _permit: permit,
    };
    let held = match lanes.batchers.get(&held.delivery.message().command) {
        // A closed batch queue means the endpoint is closing: dropping puts the delivery back.
        Some(batcher) => return drop(batcher.send(held)),
        None => held,
    };
    let key = held.delivery.message().from.clone();
    let mut queues = lock(&lanes.queues);
    let held = match queues.get(&key) {
        Some(tx) => match tx.send(held) {
            Ok(()) => return,
            Err(mpsc::error::SendError(held)) => held,
        },
        None => held,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    // Cannot fail: rx is alive.
    let _ = tx.send(held);
    queues.insert(key.clone(), tx);
    drop(queues);
    inner
        .tracker
        .spawn(lane(inner.clone(), lanes.clone(), key, rx));
}

/// One sender's lane: its messages one at a time, in order; ends when its queue is empty (the
/// queue is removed under the same lock the reader queues under, so nothing is stranded).
async fn lane(
    inner: Arc<Inner>,
    lanes: Arc<Lanes>,
    key: Option<Address>,
    mut rx: mpsc::UnboundedReceiver<Held>,
) {
    let _sentinel = Sentinel {
        inner: inner.clone(),
        task: "sender lane",
        any_end: false,
    };
    loop {
        let held = match rx.try_recv() {
            Ok(held) => held,
            Err(_) => {
                let mut queues = lock(&lanes.queues);
                match rx.try_recv() {
                    Ok(held) => held,
                    Err(_) => {
                        queues.remove(&key);
                        return;
                    }
                }
            }
        };
        let mut slot = Slot::new(lanes.running.clone());
        if !slot.take(&inner.cancel).await {
            return;
        }
        process(&inner, held.delivery, &mut slot).await;
    }
}

fn observe(inner: &Inner, msg: &Message) {
    let (Some(directory), Some(origin)) = (&inner.directory, &msg.from) else {
        return;
    };
    match Advertisement::from_message(msg) {
        Ok(ad) => directory.observe(origin, ad),
        Err(e) => tracing::warn!(from = %origin, error = %e, "ignoring a malformed advertisement"),
    }
}

async fn heartbeat(inner: Arc<Inner>) {
    let _sentinel = Sentinel {
        inner: inner.clone(),
        task: "heartbeat",
        any_end: false,
    };
    let period = (lock(&inner.ad).ttl / 3).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.cancel.cancelled() => break,
        }
        let ad = lock(&inner.ad).clone();
        if let Err(e) = inner.transport.advertise(&ad).await {
            tracing::warn!(address = %inner.address, error = %e, "heartbeat advertisement failed");
        }
    }
}

pub(crate) async fn close(inner: &Arc<Inner>) -> Result<()> {
    if inner.cancel.is_cancelled() {
        let mut rx = inner.closed_tx.subscribe();
        let _ = rx.wait_for(|c| *c).await;
        return Ok(());
    }
    inner.cancel.cancel();
    inner.tracker.close();
    inner.tracker.wait().await;
    let mut withdraw = lock(&inner.ad).clone();
    withdraw.ttl = Duration::ZERO;
    if let Err(e) = inner.transport.advertise(&withdraw).await {
        tracing::debug!(error = %e, "withdrawing the advertisement failed");
    }
    let result = inner.transport.close().await;
    inner.closed_tx.send_replace(true);
    result
}
