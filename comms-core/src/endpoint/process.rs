//! Running one delivery's handler and settling the delivery.
//!
//! The handler runs inside [`catch_unwind`](futures_util::FutureExt::catch_unwind) and under
//! its timeout ([`EndpointBuilder::handler_timeout`](super::EndpointBuilder::handler_timeout),
//! per command [`EndpointBuilder::command_timeout`](super::EndpointBuilder::command_timeout)).
//! A timed-out handler's future is dropped (cancelled at its next await point).
//!
//! # The failure path
//! A panic, a timeout and [`HandlerError::Retry`] are **failed attempts**: the attempt is
//! counted (durably where the transport has a state directory, see the `attempts` module),
//! and the handler runs again after the [`RetryPolicy`](crate::RetryPolicy)'s backoff, in
//! place: the delivery stays with its sender's lane, so that sender's later messages wait
//! (order kept) and other senders go on. After the last attempt the message is put in the
//! transport's dead-letter place ([`crate::dead_letter`]) — the delivery is acknowledged only
//! once the place has it — and a request gets an `ERROR` reply
//! (`dead-lettered after N attempts: <reason>`). [`HandlerError::Failed`] is the handler's
//! own verdict: answered `ERROR` at once, acknowledged, not dead-lettered.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use crate::dead_letter::DeadLetter;
use crate::error::{Error, Result};
use crate::message::{commands, Message};
use crate::transport::Delivery;

use super::dedup::Digest;
use super::handler::{Handler, HandlerError, HandlerResult, Outcome, Request};
use super::{lock, send_traced, Endpoint, Inner};
use opentelemetry::context::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Wait between two tries to put a dead letter in a place that refused it.
const PUT_AGAIN: Duration = Duration::from_secs(2);

/// A lane's share of the handlers that may run at once ([`EndpointBuilder::lanes`]): held
/// while its handler runs, given back while the lane waits out a retry's backoff, so that
/// senders whose messages are being retried never keep other senders' handlers waiting.
///
/// [`EndpointBuilder::lanes`]: super::EndpointBuilder::lanes
pub(crate) struct Slot {
    running: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Slot {
    pub(crate) fn new(running: Arc<Semaphore>) -> Self {
        Self {
            running,
            permit: None,
        }
    }

    /// Hold a share (waiting for one); `false` when the endpoint closes first.
    pub(crate) async fn take(&mut self, cancel: &CancellationToken) -> bool {
        if self.permit.is_some() {
            return true;
        }
        if cancel.is_cancelled() {
            return false;
        }
        // A free share is taken at once; only when every share is out does the lane wait.
        if let Ok(permit) = self.running.clone().try_acquire_owned() {
            self.permit = Some(permit);
            return true;
        }
        let permit = tokio::select! {
            biased;
            _ = cancel.cancelled() => return false,
            p = self.running.clone().acquire_owned() => p,
        };
        self.permit = permit.ok();
        self.permit.is_some()
    }

    /// Give the share back (a backoff, or the message is done).
    pub(crate) fn give_back(&mut self) {
        self.permit = None;
    }
}

pub(crate) fn settle(result: Result<()>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "settling a delivery failed; it may be delivered again");
    }
}

/// Counts a received message given up (the transport's stats, when it keeps them).
fn dead_lettered(inner: &Inner) {
    if let Some(stats) = &inner.stats {
        stats.dead_lettered();
    }
}

/// Whether `msg` may be answered with an error reply (never replies or error replies: no loops).
fn may_answer(msg: &Message) -> bool {
    msg.from.is_some() && !msg.is_reply() && !commands::is_error_reply(&msg.command)
}

async fn answer_error(inner: &Inner, msg: &Message, command: &str, params: &[(&str, &str)]) {
    if !may_answer(msg) {
        if commands::is_error_reply(&msg.command) {
            tracing::warn!(from = %crate::address::or_dash(msg.from.as_ref()), command = %msg.command, params = ?msg.params, "error reply received");
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
        Ok(r) => send_traced(inner, r).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(to = %crate::address::or_dash(msg.from.as_ref()), command, error = %e, "could not send an error reply");
    }
}

async fn complete(inner: &Inner, delivery: Delivery, key: Digest) {
    inner.attempts.clear(&delivery.message().id);
    lock(&inner.dedup).insert(key);
    settle(delivery.ack().await);
}

/// Runs the handler of one delivery and settles it. The handler's [`Request`] shares the
/// delivery's message (no copy).
pub(crate) async fn process(inner: &Arc<Inner>, delivery: Delivery, slot: &mut Slot) {
    // With tracing on, everything below (the handler, its sends, the reply) runs inside the
    // `process` span ([`crate::trace`]).
    match crate::trace::start_process(delivery.message()) {
        None => process_untraced(inner, delivery, slot).await,
        Some(cx) => {
            process_untraced(inner, delivery, slot)
                .with_context(cx.clone())
                .await;
            crate::trace::end(Some(cx), None);
        }
    }
}

async fn process_untraced(inner: &Arc<Inner>, delivery: Delivery, slot: &mut Slot) {
    if let Some((delivery, key, handler)) = admit(inner, delivery).await {
        attempts(inner, delivery, key, handler, slot, None).await;
    }
}

/// The checks before a handler runs: a duplicate is acknowledged, an unknown command answered
/// `UNKNOWN`, a message its schema refuses answered `INVALID` (each settled here, `None`);
/// otherwise the delivery, its dedup key and its handler.
pub(crate) async fn admit(
    inner: &Inner,
    delivery: Delivery,
) -> Option<(Delivery, Digest, &Handler)> {
    let msg = delivery.message();
    let (key, seen) = {
        let dedup = lock(&inner.dedup);
        let key = dedup.digest(&msg.id, msg.hops);
        (key, dedup.contains(key))
    };
    if seen {
        tracing::debug!(id = %msg.id, "duplicate delivery acknowledged without running the handler");
        settle(delivery.ack().await);
        return None;
    }
    let Some(handler) = inner.handlers.get(&msg.command) else {
        answer_error(inner, msg, commands::UNKNOWN, &[]).await;
        complete(inner, delivery, key).await;
        return None;
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
            return None;
        }
    }
    Some((delivery, key, handler))
}

/// Runs the handler of an admitted delivery until it is settled: done, answered, forwarded,
/// or — after failed attempts, each followed by the backoff, in place — dead-lettered.
/// `first`: the result of an attempt already made (a batch call's result for this message).
pub(crate) async fn attempts(
    inner: &Arc<Inner>,
    delivery: Delivery,
    key: Digest,
    handler: &Handler,
    slot: &mut Slot,
    mut first: Option<HandlerResult>,
) {
    let msg = delivery.message();
    let Some(endpoint) = Endpoint::upgrade(inner) else {
        return; // shutting down: dropping the delivery puts it back
    };
    let request = Request {
        message: delivery.shared_message(),
        endpoint,
    };
    let id = &msg.id;
    let reason = loop {
        let result = match first.take() {
            Some(result) => result,
            None => {
                if !slot.take(&inner.cancel).await {
                    return; // closing: the delivery goes back
                }
                run(inner, handler, request.clone()).await
            }
        };
        let reason = match result {
            Ok(Outcome::Done) => return complete(inner, delivery, key).await,
            Ok(Outcome::Reply(reply)) => {
                return match send_traced(inner, reply).await {
                    Ok(()) => complete(inner, delivery, key).await,
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(%id, error = %e, "reply not sent; the request will be handled again");
                        settle(delivery.nack(true).await);
                    }
                    Err(e) => {
                        tracing::warn!(%id, error = %e, "reply not sent");
                        complete(inner, delivery, key).await;
                    }
                };
            }
            Ok(Outcome::Forward(to)) => return forward(inner, delivery, key, to).await,
            Err(HandlerError::Failed(reason)) => {
                answer_error(inner, msg, commands::ERROR, &[("reason", &reason)]).await;
                return complete(inner, delivery, key).await;
            }
            Err(HandlerError::Invalid(invalid)) => {
                let params = [("field", &*invalid.field), ("reason", &*invalid.reason)];
                answer_error(inner, msg, commands::INVALID, &params).await;
                return complete(inner, delivery, key).await;
            }
            Err(HandlerError::Retry(reason)) => reason,
        };
        let attempts = inner.attempts.failed(id).await;
        if inner.retry.exhausted(attempts) {
            break (reason, attempts);
        }
        let wait = inner.retry.jittered_backoff(attempts);
        tracing::debug!(%id, attempts, %reason, ?wait, "handler failed; trying again after the backoff");
        slot.give_back();
        tokio::select! {
            biased;
            // Closing: the delivery goes back to the backend; the count is kept.
            _ = inner.cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    };
    slot.give_back();
    give_up(inner, delivery, key, reason).await;
}

async fn forward(inner: &Inner, delivery: Delivery, key: Digest, to: crate::Destination) {
    let msg = delivery.message();
    let (from, command, id) = (msg.from.clone(), msg.command.clone(), msg.id.clone());
    match inner.transport.forward(delivery, to).await {
        Ok(()) => {
            lock(&inner.dedup).insert(key);
        }
        Err(e @ Error::HopLimit { .. }) => {
            tracing::error!(%id, from = %crate::address::or_dash(from.as_ref()), %command, error = %e, "forward dropped");
            dead_lettered(inner);
            lock(&inner.dedup).insert(key);
        }
        Err(e) => {
            tracing::warn!(%id, error = %e, "forward failed; the message will be delivered again")
        }
    }
}

/// The last attempt failed: into the dead-letter place (retried until it is there, or until
/// the endpoint closes: then the delivery goes back), then answered and acknowledged.
async fn give_up(
    inner: &Inner,
    delivery: Delivery,
    key: Digest,
    (reason, attempts): (String, u32),
) {
    let msg = delivery.message();
    let letter = DeadLetter::new(msg, inner.address.clone(), &reason, attempts);
    loop {
        let put = match &inner.dead_letters {
            Ok(place) => place.put(&letter).await.map(|()| place.place()),
            Err(e) => Err(Error::Config(format!("no dead-letter place: {e}"))),
        };
        match put {
            Ok(place) => {
                tracing::error!(id = %msg.id, from = %crate::address::or_dash(msg.from.as_ref()), command = %msg.command, attempts, %reason, %place, "message dead-lettered");
                break;
            }
            Err(e) => {
                tracing::error!(id = %msg.id, error = %e, "could not dead-letter a message; it stays unacknowledged and is tried again");
            }
        }
        tokio::select! {
            biased;
            _ = inner.cancel.cancelled() => return,
            _ = tokio::time::sleep(PUT_AGAIN) => {}
        }
    }
    dead_lettered(inner);
    let reason = format!("dead-lettered after {attempts} attempts: {reason}");
    answer_error(inner, msg, commands::ERROR, &[("reason", &reason)]).await;
    complete(inner, delivery, key).await;
}

/// Run a handler: a panic or a timeout becomes a failed attempt ([`HandlerError::Retry`])
/// naming it.
async fn run(inner: &Inner, handler: &Handler, request: Request) -> HandlerResult {
    let limit = handler.timeout.unwrap_or(inner.handler_timeout);
    // The message is shared, not copied: its fields are read only on the failure path.
    let msg = request.message.clone();
    let failure = match guarded(limit, async move { (handler.call)(request).await }).await {
        Ok(result) => return result,
        Err(failure) => failure,
    };
    let (id, command) = (&msg.id, &msg.command);
    let from = crate::address::or_dash(msg.from.as_ref());
    match &failure {
        CallFailure::Panicked(what) => {
            tracing::error!(%id, %from, %command, panic = %what, "handler panicked; the attempt failed")
        }
        CallFailure::TimedOut(limit) => {
            tracing::warn!(%id, %from, %command, ?limit, "handler timed out and was dropped; the attempt failed")
        }
    }
    Err(HandlerError::Retry(failure.to_string()))
}

/// How a handler call failed as a whole ([`guarded`]); displayed as the failed attempt's
/// reason.
#[derive(Debug)]
pub(crate) enum CallFailure {
    /// It panicked (the panic's message).
    Panicked(String),
    /// It ran past this limit and was dropped.
    TimedOut(Duration),
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Panicked(what) => write!(f, "handler panicked: {what}"),
            CallFailure::TimedOut(limit) => {
                write!(f, "handler timed out after {} ms", limit.as_millis())
            }
        }
    }
}

/// Runs a handler call inside `catch_unwind` and under `limit` (a timed-out call is dropped).
/// `call` should make the call itself inside the future (`async move { f(x).await }`), so that
/// a panic in the call, not only in its future, is caught too.
pub(crate) async fn guarded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = T>,
) -> Result<T, CallFailure> {
    match tokio::time::timeout(limit, AssertUnwindSafe(call).catch_unwind()).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(panic)) => Err(CallFailure::Panicked(panic_message(panic.as_ref()))),
        Err(_) => Err(CallFailure::TimedOut(limit)),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}
