//! Running one delivery's handler and settling the delivery.
//!
//! The handler runs inside [`catch_unwind`](futures_util::FutureExt::catch_unwind) and under
//! its timeout ([`EndpointBuilder::handler_timeout`](super::EndpointBuilder::handler_timeout),
//! per command [`EndpointBuilder::command_timeout`](super::EndpointBuilder::command_timeout)).
//! A panic or a timeout is a permanent failure, exactly as [`HandlerError::Failed`]: a request
//! gets an `ERROR` reply whose `reason` names the panic or the timeout, and the message is
//! acknowledged. A timed-out handler's future is dropped (cancelled at its next await point).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use crate::error::{Error, Result};
use crate::message::{commands, Message};
use crate::transport::Delivery;

use super::dedup::Digest;
use super::handler::{Handler, HandlerError, HandlerResult, Outcome, Request};
use super::{lock, send_traced, Endpoint, Inner};
use opentelemetry::context::FutureExt as _;

const RETRY_PAUSE: Duration = Duration::from_millis(10);

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
pub(crate) async fn process(inner: &Arc<Inner>, delivery: Delivery) {
    // With tracing on, everything below (the handler, its sends, the reply) runs inside the
    // `process` span ([`crate::trace`]).
    match crate::trace::start_process(delivery.message()) {
        None => process_untraced(inner, delivery).await,
        Some(cx) => {
            process_untraced(inner, delivery)
                .with_context(cx.clone())
                .await;
            crate::trace::end(Some(cx), None);
        }
    }
}

async fn process_untraced(inner: &Arc<Inner>, delivery: Delivery) {
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
    let request = Request {
        message: delivery.shared_message(),
        endpoint,
    };
    let result = run(inner, handler, request).await;
    let id = &msg.id;
    match result {
        Ok(Outcome::Done) => complete(inner, delivery, key).await,
        Ok(Outcome::Reply(reply)) => match send_traced(inner, reply).await {
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
                    tracing::error!(%id, from = %crate::address::or_dash(from.as_ref()), %command, error = %e, "forward dropped");
                    dead_lettered(inner);
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
                dead_lettered(inner);
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

/// Run a handler: a panic or a timeout becomes [`HandlerError::Failed`] naming it.
async fn run(inner: &Inner, handler: &Handler, request: Request) -> HandlerResult {
    let limit = handler.timeout.unwrap_or(inner.handler_timeout);
    let (id, command) = (request.message.id.clone(), request.message.command.clone());
    let from = request.message.from.clone();
    // The call itself (not only its future) may panic: both run inside catch_unwind.
    let call = AssertUnwindSafe(async move { (handler.call)(request).await }).catch_unwind();
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            let what = panic_message(panic.as_ref());
            tracing::error!(%id, from = %crate::address::or_dash(from.as_ref()), %command, panic = %what, "handler panicked; the message failed");
            Err(HandlerError::Failed(format!("handler panicked: {what}")))
        }
        Err(_) => {
            tracing::warn!(%id, from = %crate::address::or_dash(from.as_ref()), %command, ?limit, "handler timed out and was dropped; the message failed");
            Err(HandlerError::Failed(format!(
                "handler timed out after {} ms",
                limit.as_millis()
            )))
        }
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
