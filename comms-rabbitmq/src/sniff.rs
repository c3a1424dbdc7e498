//! [`RabbitTransport::sniff`](crate::RabbitTransport): copies of every message published to
//! the namespace's topic exchange `comms.{ns}`.
//!
//! Per session, on a channel of its own: a server-named queue declared **exclusive** and
//! **auto-delete** (gone with the connection or the consumer), bounded by `x-max-length`
//! [`SNIFF_QUEUE_BOUND`] with `x-overflow = drop-head` (a sniffer that falls behind loses the
//! oldest copies inside the broker; publishers are never nacked or slowed by it), bound with
//! `#`. The copies in that private queue are acknowledged as soon as they are in the inbox
//! (never anything of a real receiver's queue), under `basic.qos(prefetch)`: a deliberate
//! choice over `no_ack`, with which the broker pushes the whole backlog into the client's
//! memory and the queue bound never applies. So a slow sniffer holds at most `prefetch`
//! copies in flight and the rest wait, bounded, in the broker. The broker routes one copy per
//! published message however many queues it reaches. Bodies that are not
//! envelopes are skipped (logged). After a reconnect a new queue is declared: what was published
//! in between is not seen.
//!
//! Caveat: while a sniffer is bound, a unicast to a routing key no other queue is bound to is
//! routed (to the sniffer), so the publisher's `mandatory` return does not happen. Senders
//! declare their destination queue before their first publish, so this only hides a return
//! when that queue was deleted behind the sender's back.
//!
//! Loss is not reported by the broker (drop-head is silent): it shows as the difference
//! between the exchange's publish rate and the sniffer's in the management UI.

use std::time::Duration;

use comms_core::transport::NoAck;
use comms_core::{envelope, Delivery};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::amqp;
use crate::link::Link;

/// Copies the sniffer queue holds before the broker drops the oldest.
pub const SNIFF_QUEUE_BOUND: i64 = 10_000;

const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(200);

/// Declares, binds and consumes the sniffer queue of one session.
pub(crate) async fn subscribe(
    link: &Link,
    session: &crate::session::Session,
) -> comms_core::Result<lapin::Consumer> {
    let channel = session
        .consuming_channel("sniffer", link.opts().prefetch)
        .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(SNIFF_QUEUE_BOUND),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from("drop-head")),
    );
    let opts = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        durable: false,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare("".into(), opts, args)
        .await
        .map_err(|e| amqp("declare the sniffer queue", e))?;
    let name = queue.name().to_string();
    let exchange = link.names().exchange();
    channel
        .queue_bind(
            name.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp(format!("bind the sniffer queue to {exchange}"), e))?;
    let consume = BasicConsumeOptions {
        exclusive: true,
        ..BasicConsumeOptions::default()
    };
    let consumer = channel
        .basic_consume(
            name.as_str().into(),
            "".into(),
            consume,
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp("consume the sniffer queue", e))?;
    tracing::info!(queue = %name, %exchange, "rabbitmq: sniffing");
    Ok(consumer)
}

/// Decodes copies from `first` into `tx`; after a session ends, subscribes again on the next.
pub(crate) async fn run(
    link: Link,
    first: lapin::Consumer,
    generation: u64,
    max_size: usize,
    tx: mpsc::Sender<Delivery>,
    cancel: CancellationToken,
) {
    let mut consumer = Some(first);
    let mut last_generation = generation;
    let mut sessions = link.subscribe();
    loop {
        if let Some(c) = consumer.take() {
            if forward(c, max_size, &tx, &cancel).await {
                return;
            }
            link.report_broken();
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RESUBSCRIBE_PAUSE) => {}
        }
        let Some(session) = Link::next_session(&mut sessions, last_generation, &cancel).await
        else {
            return;
        };
        let Some(session) = session else { continue };
        last_generation = session.generation;
        match subscribe(&link, &session).await {
            Ok(c) => consumer = Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "rabbitmq: sniffer subscription failed; trying again")
            }
        }
    }
}

/// Forwards one consumer's copies; true when the sniff is over (cancelled, inbox dropped).
async fn forward(
    mut consumer: lapin::Consumer,
    max_size: usize,
    tx: &mpsc::Sender<Delivery>,
    cancel: &CancellationToken,
) -> bool {
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return true,
            n = consumer.next() => n,
        };
        let delivery = match next {
            None => return false,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "rabbitmq: sniffer stream failed");
                return false;
            }
            Some(Ok(d)) => d,
        };
        let decoded = envelope::decode(&delivery.data, max_size);
        if let Ok(msg) = decoded.as_ref() {
            let copy = Delivery::new(msg.clone(), false, Box::new(NoAck));
            tokio::select! {
                _ = cancel.cancelled() => return true,
                r = tx.send(copy) => if r.is_err() { return true },
            }
        } else if let Err(e) = decoded {
            tracing::debug!(error = %e, key = %delivery.routing_key, "rabbitmq: sniffed body is not an envelope, skipped");
        }
        // Our private copy, in our exclusive queue: frees one prefetch slot.
        if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
            tracing::debug!(error = %e, "rabbitmq: sniffer ack failed");
            return false;
        }
    }
}
