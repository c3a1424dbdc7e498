//! `SERVICE_UNAVAILABLE`: a message with `report` set that its destination's consumer group has
//! not consumed (committed past) within its TTL is reported back to the sender, correlated to
//! the message, with `destination_service` and `unsent_command`. The receiving side skips such
//! a message when it finally reads it after its TTL, so the sender's report stays true.

use std::sync::Arc;
use std::time::Duration;

use comms_core::backend::service_unavailable_report;
use comms_core::{envelope, Address, Message};
use tokio_util::sync::CancellationToken;

use crate::lag::Lag;
use crate::names::Names;
use crate::producer::{envelope_headers, Producer, Record};

/// TTL of a message that asked for a report without giving one.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// Where a reported message was written.
#[derive(Debug, Clone)]
pub struct Written {
    /// Destination topic (also its group).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// What the watcher needs.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// For committed offsets.
    pub lag: Arc<Lag>,
    /// For the report.
    pub producer: Arc<Producer>,
    /// Topic names.
    pub names: Names,
    /// Stops waiting watchers (transport closed).
    pub stop: CancellationToken,
}

impl Reporter {
    /// Wait for `msg`'s TTL, then report it unless it was consumed.
    pub async fn watch(self, msg: Message, at: Written) {
        let ttl = msg.ttl.unwrap_or(DEFAULT_TTL);
        tokio::select! {
            _ = tokio::time::sleep(ttl) => {}
            _ = self.stop.cancelled() => return,
        }
        let consumed = self
            .lag
            .committed(at.topic.clone(), at.topic.clone(), vec![at.partition])
            .await
            .map(|c| c.get(&at.partition).is_some_and(|c| *c > at.offset));
        match consumed {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(id = %msg.id(), error = %e, "kafka: cannot tell whether the message was consumed; reporting it unavailable")
            }
        }
        let Some(origin) = msg.from().cloned() else {
            return;
        };
        if let Err(e) = self.report(&msg, &origin).await {
            tracing::warn!(id = %msg.id(), error = %e, "kafka: SERVICE_UNAVAILABLE report not sent");
        }
    }

    async fn report(&self, msg: &Message, origin: &Address) -> comms_core::Result<()> {
        tracing::info!(id = %msg.id(), to = %msg.to, "kafka: no consumer within the TTL; reporting SERVICE_UNAVAILABLE");
        let reporter = Address::new("kafka", "broker").ok();
        let report = service_unavailable_report(msg, origin.clone(), reporter)?;
        let payload = envelope::encode(&report)?;
        let topic = self.names.instance(origin);
        let key = origin.to_string();
        self.producer
            .deliver(
                Record {
                    topic: &topic,
                    partition: None,
                    key: &key,
                    payload: &payload,
                    headers: envelope_headers(report.id().as_str(), None),
                },
                Duration::from_secs(5),
            )
            .await
            .map(|_| ())
    }
}
