//! The consumer task of a listening transport.
//!
//! On every session it opens a channel, sets `basic.qos(prefetch)` (the backpressure bound:
//! the broker stops delivering while `prefetch` deliveries per queue are unacknowledged) and
//! consumes three queues with manual acks: the instance queue, the service queue (competing
//! consumers) and the namespace's `expired` queue (for SERVICE_UNAVAILABLE reports, see
//! [`crate::reports`]). Deliveries go to the bounded inbox; when the session ends, it waits
//! for the next one and subscribes again.

use std::sync::Arc;
use std::time::Duration;

use comms_core::transport::NoAck;
use comms_core::{envelope, Address, Delivery, DeliveryMode};
use futures_util::stream::{select_all, StreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::acker::RabbitAcker;
use crate::error::amqp;
use crate::link::Link;
use crate::session::Session;
use crate::{dead_letter, reports};

const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Instance,
    Service,
    Expired,
}

/// Consume for `address` into `tx` until `cancel`.
pub(crate) async fn run(
    link: Link,
    address: Address,
    max_size: usize,
    tx: mpsc::Sender<Delivery>,
    cancel: CancellationToken,
) {
    let mut sessions = link.subscribe();
    let mut last_generation = 0;
    loop {
        let Some(session) = Link::next_session(&mut sessions, last_generation, &cancel).await
        else {
            return;
        };
        let Some(session) = session else { continue };
        match consume(&link, &session, &address, max_size, &tx, &cancel).await {
            Ok(Stop::Cancelled) => return,
            Ok(Stop::SessionEnded) => {
                tracing::debug!(
                    generation = session.generation,
                    "rabbitmq: consumer stream ended"
                );
            }
            Err(e) => tracing::warn!(error = %e, "rabbitmq: consuming failed; subscribing again"),
        }
        link.report_broken();
        // Next session, or the same one if it is still healthy (a channel-level failure).
        last_generation = if session.healthy() {
            session.generation
        } else {
            session.generation + 1
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RESUBSCRIBE_PAUSE) => {}
        }
    }
}

enum Stop {
    Cancelled,
    SessionEnded,
}

async fn consume(
    link: &Link,
    session: &Arc<Session>,
    address: &Address,
    max_size: usize,
    tx: &mpsc::Sender<Delivery>,
    cancel: &CancellationToken,
) -> comms_core::Result<Stop> {
    let names = link.names();
    // Idempotent: also brings back queues deleted behind our back while the session lived.
    if let Some(id) = link.identity() {
        session.declare_identity(link.opts(), names, &id).await?;
    }
    let channel = session
        .consuming_channel("consumer", link.opts().prefetch)
        .await?;
    let queues = [
        (Source::Instance, names.instance(address)),
        (Source::Service, names.service(address.service())),
        (Source::Expired, names.expired_queue()),
    ];
    let mut streams = Vec::new();
    for (source, queue) in queues {
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| amqp(format!("consume {queue}"), e))?;
        streams.push(consumer.map(move |d| (source, queue.clone(), d)).boxed());
    }
    let mut all = select_all(streams);
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return Ok(Stop::Cancelled),
            n = all.next() => n,
        };
        let Some((source, queue, delivery)) = next else {
            return Ok(Stop::SessionEnded);
        };
        let delivery = delivery.map_err(|e| amqp(format!("receive from {queue}"), e))?;
        if source == Source::Expired {
            reports::handle(link, delivery).await;
            continue;
        }
        let msg = match envelope::decode(&delivery.data, max_size) {
            Ok(m) => m,
            Err(e) => {
                dead_letter::park(link, session, &queue, delivery, &e.to_string()).await;
                continue;
            }
        };
        let redelivered = delivery.redelivered;
        let out = if msg.mode == DeliveryMode::AtMostOnce {
            if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                tracing::debug!(error = %e, "rabbitmq: ack of an at-most-once delivery failed");
            }
            Delivery::new(msg, redelivered, Box::new(NoAck))
        } else {
            Delivery::new(msg, redelivered, Box::new(RabbitAcker::new(delivery.acker)))
        };
        tokio::select! {
            _ = cancel.cancelled() => return Ok(Stop::Cancelled),
            r = tx.send(out) => if r.is_err() { return Ok(Stop::Cancelled) },
        }
    }
}
