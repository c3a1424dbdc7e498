//! The metrics of one transport, from its [`TransportStats`] (every backend counts the same
//! way: `comms_core::stats`). Labelled with the backend (`native`, `rabbitmq`, `kafka`,
//! `memory`).

use std::sync::Arc;

use comms_core::TransportStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

/// Reads a transport's [`TransportStats`] at each scrape. Register it with
/// `registry.register_collector(Box::new(TransportCollector::new(..)))`.
#[derive(Debug)]
pub struct TransportCollector {
    stats: Arc<TransportStats>,
    backend: String,
}

impl TransportCollector {
    /// The metrics of `stats`, labelled `backend`.
    pub fn new(stats: Arc<TransportStats>, backend: impl Into<String>) -> Self {
        Self {
            stats,
            backend: backend.into(),
        }
    }
}

impl Collector for TransportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let c = self.stats.snapshot();
        let labels = [("backend", self.backend.as_str())];
        let counters = [
            (
                "comms_transport_sent",
                "Messages given to send or submit (replies and forwards included).",
                c.sent,
            ),
            (
                "comms_transport_acknowledged",
                "Sent messages confirmed: the transport took responsibility (broker confirm, daemon outbox, delivery report).",
                c.acknowledged,
            ),
            (
                "comms_transport_failed",
                "Sent messages refused (backpressure, closed, connection lost) or not confirmed.",
                c.failed,
            ),
            (
                "comms_transport_resent",
                "Messages published again after a lost connection, a nack or a missing acknowledgement.",
                c.resent,
            ),
            (
                "comms_transport_dead_lettered",
                "Received messages given up (attempts exhausted, hop limit): answered with an error, not handled.",
                c.dead_lettered,
            ),
        ];
        for (name, help, value) in counters {
            crate::encode::counter(&mut encoder, name, help, &[(&labels, value)])?;
        }
        let in_flight = i64::try_from(c.in_flight()).unwrap_or(i64::MAX);
        crate::encode::gauge(
            &mut encoder,
            "comms_transport_in_flight",
            "Sent messages neither acknowledged nor failed yet.",
            &[(&labels, in_flight)],
        )?;
        Ok(())
    }
}
