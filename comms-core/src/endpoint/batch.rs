//! Batch handlers ([`EndpointBuilder::handle_batch`](super::EndpointBuilder::handle_batch)):
//! one task per batch command takes that command's deliveries off the reader, in arrival
//! order, and hands them to the handler a batch at a time ([`Batching`]).
//!
//! # Settling per message
//! The handler returns one result per message; each message is settled on its own result,
//! in order, exactly as a per-message handler's would be (acknowledged, answered, forwarded,
//! `ERROR`/`INVALID`). A message whose result is a failed attempt ([`HandlerError::Retry`])
//! goes down the failure path alone: counted, tried again alone after the backoff, in place
//! (the next batch waits), dead-lettered after the last attempt; its neighbours are settled
//! on their own results. When the call itself panics, times out or returns a wrong number of
//! results, the endpoint cannot tell which message was at fault: the batch is split and
//! each message runs alone (a batch of one), so only the one at fault takes the failure path
//! (its neighbours may have been partly handled by the failed call: at-least-once).
//!
//! # Order
//! The handler sees each sender's messages in arrival order, within and across batches. A
//! message retried in place is handled again after the neighbours that followed it in its
//! batch (they were handled in the same call). Batch commands have their own task, so
//! their order relative to the same sender's other commands is not kept.
//!
//! Duplicates, and messages that fail their schema, are settled before the batch is formed
//! (they never reach the handler); a second copy of a message already in the same batch waits
//! until the first is settled, then is acknowledged as a duplicate. A batch holds one of the endpoint's handler slots
//! ([`EndpointBuilder::lanes`](super::EndpointBuilder::lanes)) while it runs.
//!
//! [`Batching`]: super::Batching
//! [`HandlerError::Retry`]: super::HandlerError::Retry

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use super::dedup::Digest;
use super::dispatch::{Held, Sentinel};
use super::handler::{BatchCall, Handler, HandlerError, HandlerResult, Request};
use super::process::{admit, attempts, guarded, CallFailure, Slot};
use super::{Endpoint, Inner};
use crate::transport::Delivery;

/// Start the task of batch command `command`; returns where the reader queues its deliveries.
pub(crate) fn spawn(
    inner: &Arc<Inner>,
    running: Arc<Semaphore>,
    command: &str,
) -> mpsc::UnboundedSender<Held> {
    let (tx, rx) = mpsc::unbounded_channel();
    inner
        .tracker
        .spawn(batcher(inner.clone(), running, command.to_owned(), rx));
    tx
}

async fn batcher(
    inner: Arc<Inner>,
    running: Arc<Semaphore>,
    command: String,
    mut rx: mpsc::UnboundedReceiver<Held>,
) {
    let _sentinel = Sentinel::new(&inner, "batch handler", false);
    let Some(handler) = inner.handlers.get(&command) else {
        return;
    };
    let Some(call) = &handler.batch else {
        return;
    };
    let mut slot = Slot::new(running);
    loop {
        let first = tokio::select! {
            biased;
            _ = inner.cancel.cancelled() => return,
            h = rx.recv() => match h { Some(h) => h, None => return },
        };
        let batch = fill(&inner, call, &mut rx, first).await;
        run_batch(&inner, handler, call, batch, &mut slot).await;
        slot.give_back();
    }
}

/// `first`, and what follows it up to the batch's size (waiting up to its linger).
async fn fill(
    inner: &Inner,
    call: &BatchCall,
    rx: &mut mpsc::UnboundedReceiver<Held>,
    first: Held,
) -> Vec<Held> {
    let max = call.batching.max_messages.max(1);
    let until = tokio::time::Instant::now() + call.batching.linger;
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(h) => batch.push(h),
            Err(_) if call.batching.linger.is_zero() => break,
            Err(_) => {
                let next = tokio::select! {
                    biased;
                    _ = inner.cancel.cancelled() => None,
                    h = rx.recv() => h,
                    _ = tokio::time::sleep_until(until) => None,
                };
                match next {
                    Some(h) => batch.push(h),
                    None => break,
                }
            }
        }
    }
    batch
}

async fn run_batch(
    inner: &Arc<Inner>,
    handler: &Handler,
    call: &BatchCall,
    batch: Vec<Held>,
    slot: &mut Slot,
) {
    let mut admitted = Vec::with_capacity(batch.len());
    let mut held = Vec::with_capacity(batch.len());
    // A second copy of a message already in this batch (a redelivery racing the first) waits
    // until the first is settled: then the dedup window acknowledges it without a second run.
    let mut keys = HashSet::with_capacity(batch.len());
    let mut copies = Vec::new();
    for h in batch {
        let (delivery, permit) = h.into_parts();
        held.push(permit);
        if let Some((delivery, key, _)) = admit(inner, delivery).await {
            if keys.insert(key) {
                admitted.push((delivery, key));
            } else {
                copies.push(delivery);
            }
        }
    }
    run_admitted(inner, handler, call, admitted, slot).await;
    for delivery in copies {
        if let Some((delivery, key, handler)) = admit(inner, delivery).await {
            attempts(inner, delivery, key, handler, slot, None).await;
        }
    }
    drop(held);
}

/// One call for the admitted deliveries of a batch, then each settled on its result.
async fn run_admitted(
    inner: &Arc<Inner>,
    handler: &Handler,
    call: &BatchCall,
    admitted: Vec<(Delivery, Digest)>,
    slot: &mut Slot,
) {
    if admitted.is_empty() {
        return;
    }
    let Some(endpoint) = Endpoint::upgrade(inner) else {
        return; // shutting down: the deliveries go back
    };
    if !slot.take(&inner.cancel).await {
        return;
    }
    let requests: Vec<Request> = admitted
        .iter()
        .map(|(d, _)| Request {
            message: d.shared_message(),
            endpoint: endpoint.clone(),
        })
        .collect();
    match call_batch(inner, handler, call, requests).await {
        Ok(results) => {
            for ((delivery, key), result) in admitted.into_iter().zip(results) {
                attempts(inner, delivery, key, handler, slot, Some(result)).await;
            }
        }
        Err(reason) if admitted.len() == 1 => {
            for (delivery, key) in admitted {
                let failed = Some(Err(HandlerError::Retry(reason.clone())));
                attempts(inner, delivery, key, handler, slot, failed).await;
            }
        }
        Err(reason) => {
            tracing::warn!(address = %inner.address, messages = admitted.len(), %reason, "a batch call failed; its messages run one at a time");
            for (delivery, key) in admitted {
                attempts(inner, delivery, key, handler, slot, None).await;
            }
        }
    }
}

/// One call of the batch handler, under the command's timeout and inside `catch_unwind`:
/// its results (one per request), or why the call as a whole failed.
async fn call_batch(
    inner: &Inner,
    handler: &Handler,
    call: &BatchCall,
    requests: Vec<Request>,
) -> Result<Vec<HandlerResult>, String> {
    let n = requests.len();
    let limit = handler.timeout.unwrap_or(inner.handler_timeout);
    let f = call.call.clone();
    match guarded(limit, async move { f(requests).await }).await {
        Ok(results) if results.len() == n => Ok(results),
        Ok(results) => Err(format!(
            "the batch handler returned {} results for {n} messages",
            results.len()
        )),
        Err(failure) => {
            if let CallFailure::Panicked(what) = &failure {
                tracing::error!(address = %inner.address, messages = n, panic = %what, "batch handler panicked");
            }
            Err(failure.to_string())
        }
    }
}
