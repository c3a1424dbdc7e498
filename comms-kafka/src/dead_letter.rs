//! The dead-letter topic: a record that is not a valid envelope is copied, unchanged, to
//! `comms.{ns}.deadletter` with headers saying why and where it came from, then skipped, so the
//! consumer keeps going.

use std::time::Duration;

use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use tokio_util::sync::CancellationToken;

use crate::producer::{Producer, Record};

/// Why the record was dead-lettered.
pub const REASON_HEADER: &str = "comms-dead-letter-reason";
/// Topic it was read from.
pub const TOPIC_HEADER: &str = "comms-dead-letter-topic";
/// Partition it was read from.
pub const PARTITION_HEADER: &str = "comms-dead-letter-partition";
/// Offset it was read at.
pub const OFFSET_HEADER: &str = "comms-dead-letter-offset";

/// Copy `record` to `topic` with `reason`; retried until written or `stop`. Blocking (runs on
/// a consumer's poll thread). Returns whether it was written.
pub fn send_blocking(
    runtime: &tokio::runtime::Handle,
    producer: &Producer,
    topic: &str,
    record: &rdkafka::message::BorrowedMessage<'_>,
    reason: &str,
    stop: &CancellationToken,
) -> bool {
    let mut headers = OwnedHeaders::new();
    if let Some(h) = record.headers() {
        for h in h.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let partition = record.partition().to_string();
    let offset = record.offset().to_string();
    headers = headers
        .insert(Header {
            key: REASON_HEADER,
            value: Some(reason),
        })
        .insert(Header {
            key: TOPIC_HEADER,
            value: Some(record.topic()),
        })
        .insert(Header {
            key: PARTITION_HEADER,
            value: Some(&partition),
        })
        .insert(Header {
            key: OFFSET_HEADER,
            value: Some(&offset),
        });
    let key = record
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    let payload = record.payload().unwrap_or_default();
    loop {
        let r = Record {
            topic,
            partition: None,
            key: &key,
            payload,
            headers: headers.clone(),
        };
        match runtime.block_on(producer.deliver(r, Duration::from_secs(5))) {
            Ok(_) => {
                tracing::warn!(from = record.topic(), offset = record.offset(), %reason, "kafka: invalid record moved to the dead-letter topic");
                return true;
            }
            Err(e) if e.is_retryable() && !stop.is_cancelled() => {
                tracing::debug!(error = %e, "kafka: dead-letter write failed; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                tracing::error!(error = %e, "kafka: dead-letter write failed");
                return false;
            }
        }
    }
}
