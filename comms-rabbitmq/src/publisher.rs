//! Publishing with confirms: `send` returns `Ok` only once the broker confirmed the message.
//!
//! - Persistent (`delivery_mode = 2`) for at-least-once, transient and unconfirmed for
//!   at-most-once.
//! - `mandatory` for instance and service destinations: a return (no queue bound) is an error.
//!   The sender declares the destination queue first (idempotent, once per session), so a
//!   message to a service with no live instance waits in the service queue; after a return it
//!   declares the queue once more and retries once (the queue may have been deleted).
//! - A nack means a full queue (`x-overflow = reject-publish`): the publish is retried with a
//!   growing pause until `send_timeout`, then [`Error::Backpressure`].
//! - A lost connection or channel while publishing or waiting for the confirm: the message is
//!   published again, same id, on the next session (until `send_timeout`, then a retryable
//!   error). The receiver's dedup window absorbs the copy the broker may already hold.
//! - TTL: the message's own TTL (or `default_ttl`) becomes the AMQP `expiration`.

use std::time::Duration;

use comms_core::{envelope, Address, DeliveryMode, Destination, Error, Message, Result};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use lapin::Confirmation;
use tokio::time::Instant;

use crate::error::BACKEND;
use crate::link::Link;
use crate::topology;

const FULL_PAUSE_MIN: Duration = Duration::from_millis(20);
const FULL_PAUSE_MAX: Duration = Duration::from_millis(500);
const BROKEN_PAUSE: Duration = Duration::from_millis(50);

/// Publish `msg` (whose `from` is already stamped) and wait for the confirm.
pub(crate) async fn publish(link: &Link, msg: &Message) -> Result<()> {
    let from = msg.from.clone().ok_or(Error::NotAdvertised)?;
    let body = envelope::encode(msg)?;
    let key = match (&msg.to, msg.command.as_str()) {
        (_, comms_core::commands::ADVERTISE) => topology::advertise_key(&from),
        (to, command) => topology::routing_key(&from, to, command),
    };
    let opts = link.opts();
    let names = link.names();
    let exchange = names.exchange();
    let at_most_once = msg.mode == DeliveryMode::AtMostOnce;
    let mandatory = !matches!(msg.to, Destination::Broadcast(_)) && !at_most_once;
    let props = properties(msg, &from, opts.default_ttl);
    let destination = match &msg.to {
        Destination::Instance(a) => Some((names.instance(a), topology::instance_key(a))),
        Destination::Service(s) => Some((names.service(s), topology::service_key(s))),
        Destination::Broadcast(_) => None,
    };
    let deadline = Instant::now() + opts.send_timeout;
    let mut full_pause = FULL_PAUSE_MIN;
    let mut redeclared = false;
    loop {
        let session = link.session_until(deadline).await?;
        let attempt = async {
            if let Some((queue, key)) = &destination {
                session
                    .ensure_queue(opts, names, queue, std::slice::from_ref(key))
                    .await?;
            }
            let confirm = session
                .publish(&exchange, &key, mandatory, &body, props.clone())
                .await?;
            if at_most_once {
                return Ok(None);
            }
            confirm
                .await
                .map(Some)
                .map_err(|e| crate::error::amqp("wait for the publisher confirm", e))
        };
        match attempt.await {
            Ok(None) | Ok(Some(Confirmation::Ack(None))) => return Ok(()),
            Ok(Some(Confirmation::Ack(Some(returned)))) => {
                if let (Some((queue, _)), false) = (&destination, redeclared) {
                    // The queue was deleted since this session declared it (x-expires, an
                    // operator): declare it again and publish once more.
                    session.forget(queue);
                    redeclared = true;
                    continue;
                }
                return Err(Error::transport_msg(
                    BACKEND,
                    format!(
                        "message {} to {} was returned unroutable ({} {}): no queue is bound \
                         for routing key {key}",
                        msg.id, msg.to, returned.reply_code, returned.reply_text
                    ),
                    false,
                ));
            }
            Ok(Some(Confirmation::Nack(_))) => {
                if Instant::now() + full_pause > deadline {
                    return Err(Error::Backpressure(format!(
                        "the queue for {} is full (x-max-length {}, reject-publish); the broker \
                         refused message {} for {:?}; retry later",
                        msg.to, opts.queue_bound, msg.id, opts.send_timeout
                    )));
                }
                tokio::time::sleep(full_pause).await;
                full_pause = (full_pause * 2).min(FULL_PAUSE_MAX);
            }
            Ok(Some(Confirmation::NotRequested)) => {
                return Err(Error::transport_msg(
                    BACKEND,
                    "the publisher channel is not in confirm mode",
                    false,
                ));
            }
            Err(e) if e.is_retryable() => {
                tracing::debug!(error = %e, id = %msg.id, "rabbitmq: publish failed; resending on the next session");
                link.report_broken();
                if Instant::now() + BROKEN_PAUSE > deadline {
                    return Err(e);
                }
                tokio::time::sleep(BROKEN_PAUSE).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// AMQP properties of an envelope.
pub(crate) fn properties(
    msg: &Message,
    from: &Address,
    default_ttl: Option<Duration>,
) -> BasicProperties {
    let persistent = msg.mode == DeliveryMode::AtLeastOnce;
    let mut headers = FieldTable::default();
    headers.insert(
        "comms-from".into(),
        AMQPValue::LongString(LongString::from(from.to_string())),
    );
    let mut props = BasicProperties::default()
        .with_content_type(envelope::CONTENT_TYPE.into())
        .with_message_id(msg.id.as_str().into())
        .with_type(msg.command.as_str().into())
        .with_app_id("comms".into())
        .with_headers(headers)
        .with_delivery_mode(if persistent { 2 } else { 1 });
    if let Some(c) = &msg.correlation {
        props = props.with_correlation_id(c.as_str().into());
    }
    let ttl = msg.ttl.or(if persistent { default_ttl } else { None });
    if let Some(ttl) = ttl {
        props = props.with_expiration(ttl.as_millis().max(1).to_string().into());
    }
    props
}
