//! Reports: guarantee 3 ("never silently dropped") on RabbitMQ.
//!
//! A message with a TTL (its own, or `default_ttl`) carries it as the AMQP `expiration`. When it
//! expires in a service or instance queue nobody consumed it from in time, RabbitMQ dead-letters
//! it through `comms.{ns}.dlx` into `comms.{ns}.expired`. Every listening transport of the
//! namespace consumes that queue (competing consumers); for an expired message whose sender
//! asked for a report, it sends `SERVICE_UNAVAILABLE` to the sender's instance queue, with
//! `correlation` = the unsent message's id and the parameters `destination_service` and
//! `unsent_command`. Other dead letters (expired without a report, rejected by a handler) are
//! logged and acknowledged.

use comms_core::backend::service_unavailable_report;
use comms_core::{envelope, Address, Message};
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::AMQPValue;

use crate::link::Link;
use crate::publisher;

/// The `from` of reports.
pub const REPORTER_SERVICE: &str = "comms_broker";

/// Handle one dead letter.
pub(crate) async fn handle(link: &Link, delivery: lapin::message::Delivery) {
    let reason = death_reason(&delivery.properties).unwrap_or_else(|| "unknown".into());
    let msg = match envelope::decode(&delivery.data, usize::MAX) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, reason, "rabbitmq: dead letter that is not an envelope; dropped");
            ack(delivery).await;
            return;
        }
    };
    if reason != "expired" || !msg.report {
        tracing::warn!(id = %msg.id(), to = %msg.to, command = %msg.command, reason,
            "rabbitmq: message dead-lettered; no report was asked for");
        ack(delivery).await;
        return;
    }
    let Some(report) = unavailable(link, &msg) else {
        ack(delivery).await;
        return;
    };
    match publisher::publish(link, &report).await {
        Ok(()) => ack(delivery).await,
        Err(e) => {
            tracing::warn!(error = %e, id = %msg.id(), "rabbitmq: SERVICE_UNAVAILABLE report not sent; will retry");
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            if let Err(e) = delivery.acker.nack(requeue).await {
                tracing::debug!(error = %e, "rabbitmq: requeue of a dead letter failed");
            }
        }
    }
}

fn unavailable(link: &Link, expired: &Message) -> Option<Message> {
    let origin = expired.from().cloned()?;
    let reporter = Address::new(link.opts().node.clone(), REPORTER_SERVICE).ok();
    service_unavailable_report(expired, origin, reporter).ok()
}

async fn ack(delivery: lapin::message::Delivery) {
    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
        tracing::debug!(error = %e, "rabbitmq: ack of a dead letter failed");
    }
}

/// The reason of the first `x-death` entry (`expired`, `rejected`, `maxlen`...).
fn death_reason(props: &lapin::BasicProperties) -> Option<String> {
    let headers = props.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    crate::dead_letter::header_text(first, "reason")
}
