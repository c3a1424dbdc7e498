//! Bad input: a message on one of our queues that is not a valid envelope (published by another
//! tool) is parked in `comms.{ns}.dead` with the reason in the `x-comms-error` header and the
//! queue it came from in `x-comms-source-queue`, then acknowledged, so the consumer keeps going
//! and nothing blocks the queue. If parking fails, the message is rejected without requeue (it
//! then goes through the dead-letter exchange to `comms.{ns}.expired`, where it is logged).

use std::sync::Arc;

use lapin::options::{BasicAckOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::Confirmation;

use crate::link::Link;
use crate::session::Session;

/// Header carrying why a message was parked.
pub const ERROR_HEADER: &str = "x-comms-error";
/// Header carrying the queue a parked message came from.
pub const SOURCE_HEADER: &str = "x-comms-source-queue";

/// Park `delivery` (which failed to decode with `reason`) and acknowledge it.
pub(crate) async fn park(
    link: &Link,
    session: &Arc<Session>,
    queue: &str,
    delivery: lapin::message::Delivery,
    reason: &str,
) {
    tracing::warn!(
        queue,
        reason,
        "rabbitmq: not a comms envelope; parking it in the dead queue"
    );
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(
        ERROR_HEADER.into(),
        AMQPValue::LongString(LongString::from(reason)),
    );
    headers.insert(
        SOURCE_HEADER.into(),
        AMQPValue::LongString(LongString::from(queue)),
    );
    let props = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    let dead = link.names().dead_queue();
    let parked = match session
        .publish("", &dead, true, &delivery.data, props)
        .await
    {
        Ok(confirm) => matches!(confirm.await, Ok(Confirmation::Ack(None))),
        Err(_) => false,
    };
    let settled = if parked {
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
    } else {
        delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .map(|_| ())
    };
    if let Err(e) = settled {
        tracing::warn!(error = %e, "rabbitmq: settling a bad message failed; it will come back");
    }
}

/// The text of a header, if present.
pub fn header_text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}
