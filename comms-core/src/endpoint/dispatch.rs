//! The dispatcher tasks of an endpoint: reader, sender lanes, heartbeat, directory sweep.
//!
//! One reader takes deliveries off the inbox. Replies to pending requests and advertisements are
//! settled right there; everything else goes to the lane of its sender (hash of `from`), and each
//! lane runs its messages one after another, which keeps per-sender order.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::advertisement::Advertisement;
use crate::error::{Error, Result};
use crate::message::{commands, Message};
use crate::transport::{Delivery, Inbox};

use super::dedup::Digest;
use super::handler::{HandlerError, Outcome, Request};
use super::{lock, Endpoint, Inner};

const LANE_DEPTH: usize = 32;
const RETRY_PAUSE: Duration = Duration::from_millis(10);

pub(crate) fn spawn(inner: &Arc<Inner>, inbox: Inbox) {
    let mut lanes = Vec::with_capacity(inner.lanes);
    for _ in 0..inner.lanes {
        let (tx, rx) = mpsc::channel(LANE_DEPTH);
        lanes.push(tx);
        inner.tracker.spawn(lane(inner.clone(), rx));
    }
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

async fn reader(inner: Arc<Inner>, mut inbox: Inbox, lanes: Vec<mpsc::Sender<Delivery>>) {
    loop {
        let delivery = tokio::select! {
            d = inbox.recv() => d,
            _ = inner.cancel.cancelled() => break,
        };
        let Some(delivery) = delivery else {
            tracing::debug!(address = %inner.address, "inbox closed");
            break;
        };
        let msg = delivery.message();
        if let Some(correlation) = &msg.correlation {
            let waiter = lock(&inner.pending).remove(correlation);
            if let Some(waiter) = waiter {
                let _ = waiter.send(msg.clone());
                settle(delivery.ack().await);
                continue;
            }
        }
        if msg.command == commands::ADVERTISE {
            observe(&inner, msg);
            settle(delivery.ack().await);
            continue;
        }
        let lane = &lanes[lane_of(msg, lanes.len())];
        let delivery = match lane.try_send(delivery) {
            Ok(()) => continue,
            Err(mpsc::error::TrySendError::Closed(_)) => break,
            Err(mpsc::error::TrySendError::Full(d)) => d,
        };
        tokio::select! {
            r = lane.send(delivery) => if r.is_err() { break },
            _ = inner.cancel.cancelled() => break,
        }
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

fn lane_of(msg: &Message, lanes: usize) -> usize {
    if lanes <= 1 {
        return 0;
    }
    let mut h = DefaultHasher::new();
    msg.from.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

async fn lane(inner: Arc<Inner>, mut rx: mpsc::Receiver<Delivery>) {
    loop {
        let delivery = tokio::select! {
            biased;
            _ = inner.cancel.cancelled() => break,
            d = rx.recv() => d,
        };
        match delivery {
            Some(d) => process(&inner, d).await,
            None => break,
        }
    }
}

async fn heartbeat(inner: Arc<Inner>) {
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

fn settle(result: Result<()>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "settling a delivery failed; it may be delivered again");
    }
}

/// Whether `msg` may be answered with an error reply (never replies or error replies: no loops).
fn may_answer(msg: &Message) -> bool {
    msg.from.is_some() && !msg.is_reply() && !commands::is_error_reply(&msg.command)
}

async fn answer_error(inner: &Inner, msg: &Message, command: &str, params: &[(&str, &str)]) {
    if !may_answer(msg) {
        if commands::is_error_reply(&msg.command) {
            tracing::warn!(from = ?msg.from, command = %msg.command, params = ?msg.params, "error reply received");
        }
        return;
    }
    let reply = msg.reply(command).map(|mut r| {
        r.params.insert("command".into(), msg.command.clone());
        for (k, v) in params {
            r.params.insert((*k).into(), (*v).into());
        }
        r
    });
    let result = match reply {
        Ok(r) => inner.transport.send(r).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(to = ?msg.from, command, error = %e, "could not send an error reply");
    }
}

async fn complete(inner: &Inner, delivery: Delivery, key: Digest) {
    {
        let mut attempts = lock(&inner.attempts);
        if !attempts.is_empty() {
            attempts.remove(&delivery.message().id);
        }
    }
    lock(&inner.dedup).insert(key);
    settle(delivery.ack().await);
}

/// Runs the handler of one delivery and settles it. The handler's [`Request`] shares the
/// delivery's message (no copy).
async fn process(inner: &Arc<Inner>, delivery: Delivery) {
    let msg = delivery.message();
    let (key, seen) = {
        let dedup = lock(&inner.dedup);
        let key = dedup.digest(&msg.id, msg.hops);
        (key, dedup.contains(key))
    };
    if seen {
        tracing::debug!(id = %msg.id, "duplicate delivery acknowledged without running the handler");
        settle(delivery.ack().await);
        return;
    }
    let Some(handler) = inner.handlers.get(&msg.command) else {
        answer_error(inner, msg, commands::UNKNOWN, &[]).await;
        complete(inner, delivery, key).await;
        return;
    };
    if let Some(schema) = &handler.schema {
        if let Err(invalid) = schema.validate(msg) {
            answer_error(
                inner,
                msg,
                commands::INVALID,
                &[("field", &invalid.field), ("reason", &invalid.reason)],
            )
            .await;
            complete(inner, delivery, key).await;
            return;
        }
    }
    let Some(endpoint) = Endpoint::upgrade(inner) else {
        return; // shutting down: dropping the delivery puts it back
    };
    let result = (handler.call)(Request {
        message: delivery.shared_message(),
        endpoint,
    })
    .await;
    let id = &msg.id;
    match result {
        Ok(Outcome::Done) => complete(inner, delivery, key).await,
        Ok(Outcome::Reply(reply)) => match inner.transport.send(reply).await {
            Ok(()) => complete(inner, delivery, key).await,
            Err(e) if e.is_retryable() => {
                tracing::warn!(%id, error = %e, "reply not sent; the request will be handled again");
                settle(delivery.nack(true).await);
            }
            Err(e) => {
                tracing::warn!(%id, error = %e, "reply not sent");
                complete(inner, delivery, key).await;
            }
        },
        Ok(Outcome::Forward(to)) => {
            let (from, command, id) = (msg.from.clone(), msg.command.clone(), msg.id.clone());
            match inner.transport.forward(delivery, to).await {
                Ok(()) => {
                    lock(&inner.dedup).insert(key);
                }
                Err(e @ Error::HopLimit { .. }) => {
                    tracing::error!(%id, ?from, %command, error = %e, "forward dropped");
                    lock(&inner.dedup).insert(key);
                }
                Err(e) => {
                    tracing::warn!(%id, error = %e, "forward failed; the message will be delivered again")
                }
            }
        }
        Err(HandlerError::Retry(reason)) => {
            let attempts = {
                let mut a = lock(&inner.attempts);
                let n = a.entry(id.clone()).or_insert(0);
                *n += 1;
                *n
            };
            if attempts >= inner.max_attempts {
                tracing::error!(%id, attempts, %reason, "giving up on a message");
                let reason = format!("gave up after {attempts} attempts: {reason}");
                answer_error(inner, msg, commands::ERROR, &[("reason", &reason)]).await;
                complete(inner, delivery, key).await;
            } else {
                tracing::debug!(%id, attempts, %reason, "handler asked for redelivery");
                tokio::time::sleep(RETRY_PAUSE).await;
                settle(delivery.nack(true).await);
            }
        }
        Err(HandlerError::Failed(reason)) => {
            answer_error(inner, msg, commands::ERROR, &[("reason", &reason)]).await;
            complete(inner, delivery, key).await;
        }
        Err(HandlerError::Invalid(invalid)) => {
            answer_error(
                inner,
                msg,
                commands::INVALID,
                &[("field", &invalid.field), ("reason", &invalid.reason)],
            )
            .await;
            complete(inner, delivery, key).await;
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
