//! The producer: idempotent, `acks=all`; [`Producer::deliver`] returns once the broker
//! acknowledged the record (the delivery report), with its partition and offset.
//!
//! An idempotent producer can hit a fatal error (for example when a restarted broker lost its
//! producer state). The producer is then rebuilt and the send fails with a retryable error, so
//! the caller resends the same message (same id: the receiver deduplicates).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::logs::Quiet;
use comms_core::{Error, Result};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use crate::error::{is_retryable, map, BACKEND};
use crate::options::KafkaOptions;

/// Header carrying the envelope's content type.
pub const CONTENT_TYPE_HEADER: &str = "content-type";
/// Header carrying the message id (for tools that do not parse the envelope).
pub const ID_HEADER: &str = "comms-id";

/// One record to write.
#[derive(Debug)]
pub struct Record<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition; `None` = librdkafka's partitioner (by key).
    pub partition: Option<i32>,
    /// Key: the sender's address.
    pub key: &'a str,
    /// Value: the envelope.
    pub payload: &'a [u8],
    /// Headers.
    pub headers: OwnedHeaders,
}

/// Headers of an envelope record.
pub fn envelope_headers(id: &str) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: CONTENT_TYPE_HEADER,
            value: Some(comms_core::envelope::CONTENT_TYPE),
        })
        .insert(Header {
            key: ID_HEADER,
            value: Some(id),
        })
}

/// A rebuildable idempotent producer.
pub struct Producer {
    opts: KafkaOptions,
    current: RwLock<Arc<FutureProducer<Quiet>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl Producer {
    /// Create the producer.
    pub fn new(opts: &KafkaOptions) -> Result<Self> {
        let p = Self::build(opts)?;
        Ok(Self {
            opts: opts.clone(),
            current: RwLock::new(Arc::new(p)),
        })
    }

    fn build(opts: &KafkaOptions) -> Result<FutureProducer<Quiet>> {
        opts.producer()
            .create_with_context(Quiet)
            .map_err(|e| map("creating the producer", e))
    }

    /// The producer in use now.
    pub fn current(&self) -> Arc<FutureProducer<Quiet>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn rebuild_if_fatal(&self, used: &Arc<FutureProducer<Quiet>>) -> bool {
        let Some((code, reason)) = used.client().fatal_error() else {
            return false;
        };
        tracing::warn!(%code, %reason, "kafka: fatal producer error; rebuilding the producer");
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if Arc::ptr_eq(&cur, used) {
            match Self::build(&self.opts) {
                Ok(p) => *cur = Arc::new(p),
                Err(e) => tracing::error!(error = %e, "kafka: rebuilding the producer failed"),
            }
        }
        true
    }

    fn future_record<'a>(r: &Record<'a>) -> FutureRecord<'a, str, [u8]> {
        let mut fr = FutureRecord::to(r.topic)
            .key(r.key)
            .payload(r.payload)
            .headers(r.headers.clone());
        if let Some(p) = r.partition {
            fr = fr.partition(p);
        }
        fr
    }

    /// Write a record and wait for the broker's acknowledgement: `(partition, offset)`.
    pub async fn deliver(&self, r: Record<'_>, queue_wait: Duration) -> Result<(i32, i64)> {
        let p = self.current();
        match p
            .send(Self::future_record(&r), Timeout::After(queue_wait))
            .await
        {
            Ok(d) => Ok((d.partition, d.offset)),
            Err((e, _)) => {
                if self.rebuild_if_fatal(&p) {
                    return Err(Error::transport(
                        BACKEND,
                        format!("writing to {} (producer rebuilt)", r.topic),
                        true,
                        e,
                    ));
                }
                let retryable = is_retryable(&e);
                Err(Error::transport(
                    BACKEND,
                    format!("writing to {}", r.topic),
                    retryable,
                    e,
                ))
            }
        }
    }

    /// Queue a record without waiting for its acknowledgement (at-most-once). A full local
    /// queue drops it with a warning.
    pub fn enqueue(&self, r: Record<'_>) {
        let p = self.current();
        if let Err((e, _)) = p.send_result(Self::future_record(&r)) {
            self.rebuild_if_fatal(&p);
            tracing::warn!(topic = r.topic, error = %e, "kafka: at-most-once record dropped");
        }
        // The delivery future is dropped: nobody waits for the report.
    }

    /// Wait until every queued record is acknowledged. Blocking.
    pub fn flush_blocking(&self, timeout: Duration) -> Result<()> {
        self.current()
            .flush(timeout)
            .map_err(|e| map("flushing the producer", e))
    }
}
