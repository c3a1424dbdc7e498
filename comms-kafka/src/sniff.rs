//! `sniff`: copies of every record of the namespace, for `commsctl sniff`.
//!
//! A consumer with a fresh group id that never commits (`enable.auto.commit=false`) subscribes
//! to the regex `^comms\.{ns}\..*` from the end of every partition, so it sees every message
//! of the deployment from now on and takes nothing from real consumers (their groups' offsets
//! are untouched). Topics created later are picked up at the next metadata refresh (1 s).
//! Records that are not envelopes (the dead-letter topic) are skipped. Bounded: the inbox holds
//! [`SNIFF_BUFFER`] copies; a sniffer that falls behind loses copies, counted and logged, and
//! never slows anyone.

use comms_core::transport::NoAck;
use comms_core::{envelope, Delivery, Inbox, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::names::Names;
use crate::options::{KafkaOptions, MAX_MESSAGE_SIZE};

/// Copies held for a slow sniffer before new ones are dropped.
pub const SNIFF_BUFFER: usize = 4096;

/// Start sniffing the namespace of `names`.
pub(crate) fn start(
    opts: &KafkaOptions,
    names: &Names,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> Result<Inbox> {
    let mut config = opts.base("sniff");
    config
        .set(
            "group.id",
            format!(
                "comms-sniff-{}",
                ulid::Ulid::generate().to_string().to_ascii_lowercase()
            ),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("topic.metadata.refresh.interval.ms", "1000");
    let consumer: StreamConsumer<crate::logs::Quiet> = config
        .create_with_context(crate::logs::Quiet)
        .map_err(|e| crate::error::map("creating the sniff consumer", e))?;
    // Names follow [A-Za-z0-9_], so `.` is the only regex character in the prefix.
    let pattern = format!("^{}\\..*", names.prefix().replace('.', "\\."));
    consumer
        .subscribe(&[pattern.as_str()])
        .map_err(|e| crate::error::map("subscribing the sniff consumer", e))?;
    let (tx, rx) = mpsc::channel(SNIFF_BUFFER);
    tasks.spawn(async move {
        let mut lost = 0u64;
        loop {
            let record = tokio::select! {
                _ = stop.cancelled() => break,
                r = consumer.recv() => r,
            };
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "kafka sniff: consumer error");
                    continue;
                }
            };
            let Some(payload) = record.payload() else {
                continue;
            };
            let Ok(msg) = envelope::decode(payload, MAX_MESSAGE_SIZE * 4) else {
                continue;
            };
            match tx.try_send(Delivery::new(msg, false, Box::new(NoAck))) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    lost += 1;
                    if lost.is_power_of_two() {
                        tracing::warn!(
                            lost,
                            "kafka sniff: the sniffer falls behind; copies dropped"
                        );
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    });
    Ok(Inbox::new(rx))
}
