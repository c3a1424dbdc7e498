//! The producer: idempotent, `acks=all`; [`Producer::deliver`] returns once the broker
//! acknowledged the record (the delivery report), with its partition and offset.
//! [`Producer::submit`] and [`Producer::acked`] are its two halves, so that a sender can
//! hand records over in order under a lock and wait for the acknowledgements without it.
//!
//! An idempotent producer can hit a fatal error (for example when a restarted broker lost its
//! producer state). The producer is then rebuilt and the send fails with a retryable error, so
//! the caller resends the same message (same id: the receiver deduplicates).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::logs::Quiet;
use comms_core::{Error, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};

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

/// Headers of an envelope record, with [`crate::replies::REPLY_TO_HEADER`] when the sender is
/// an ephemeral endpoint (`reply_to`: the replies topic).
pub fn envelope_headers(id: &str, reply_to: Option<&str>) -> OwnedHeaders {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: CONTENT_TYPE_HEADER,
            value: Some(comms_core::envelope::CONTENT_TYPE),
        })
        .insert(Header {
            key: ID_HEADER,
            value: Some(id),
        });
    match reply_to {
        Some(topic) => headers.insert(Header {
            key: crate::replies::REPLY_TO_HEADER,
            value: Some(topic),
        }),
        None => headers,
    }
}

/// A record handed to the producer, its acknowledgement still to come
/// ([`Producer::acked`]).
pub struct Queued {
    future: DeliveryFuture,
    producer: Arc<FutureProducer<Quiet>>,
    topic: String,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// How often a submit retries while the producer's local queue is full.
const QUEUE_FULL_POLL: Duration = Duration::from_millis(10);

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
        let queued = self.submit(&r, queue_wait).await?;
        self.acked(queued).await
    }

    /// Hand a record to the producer (waiting at most `queue_wait` for room in its local
    /// queue) without waiting for the broker. Records submitted one after the other are
    /// written in that order (idempotent producer), so a caller may keep many in flight and
    /// await each one's [`Producer::acked`] later.
    pub async fn submit(&self, r: &Record<'_>, queue_wait: Duration) -> Result<Queued> {
        let p = self.current();
        let deadline = tokio::time::Instant::now() + queue_wait;
        let mut fr = Self::future_record(r);
        loop {
            match p.send_result(fr) {
                Ok(future) => {
                    return Ok(Queued {
                        future,
                        producer: p,
                        topic: r.topic.to_owned(),
                    })
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if tokio::time::Instant::now() < deadline =>
                {
                    fr = back;
                    tokio::time::sleep(QUEUE_FULL_POLL).await;
                }
                Err((e, _)) => return Err(self.failure(&p, r.topic, e)),
            }
        }
    }

    /// The broker's acknowledgement of a submitted record: `(partition, offset)`.
    pub async fn acked(&self, q: Queued) -> Result<(i32, i64)> {
        match q.future.await {
            Ok(Ok(d)) => Ok((d.partition, d.offset)),
            Ok(Err((e, _))) => Err(self.failure(&q.producer, &q.topic, e)),
            Err(_) => Err(Error::transport(
                BACKEND,
                format!("writing to {}: the producer went away", q.topic),
                true,
                KafkaError::Canceled,
            )),
        }
    }

    /// Records handed to the producer and not yet acknowledged by the broker (or failed).
    pub fn in_flight(&self) -> i32 {
        self.current().in_flight_count()
    }

    /// The error for a failed write to `topic` with producer `p` (rebuilt when fatal).
    fn failure(&self, p: &Arc<FutureProducer<Quiet>>, topic: &str, e: KafkaError) -> Error {
        if self.rebuild_if_fatal(p) {
            return Error::transport(
                BACKEND,
                format!("writing to {topic} (producer rebuilt)"),
                true,
                e,
            );
        }
        let retryable = is_retryable(&e);
        Error::transport(BACKEND, format!("writing to {topic}"), retryable, e)
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
