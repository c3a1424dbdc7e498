//! The send path of [`super::KafkaTransport`]: which topic and partition a message goes to,
//! drain points and the consumer-lag bound of service destinations (see [`crate::outbound`]),
//! handing records to the producer in order, and the receipts and reports that follow.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use comms_core::{envelope, DeliveryMode, Destination, Error, Message, Receipt, Result};
use tokio::time::Instant;

use crate::error::BACKEND;
use crate::outbound::{Outbound, DRAIN_WAIT};
use crate::producer::{envelope_headers, Record};
use crate::reports::{Reporter, Written};
use crate::topics::partition_count_blocking;

use super::{lock, Dest, Inner};

/// How often a sender looks at its destinations' committed offsets while it has records there.
const REFRESH: Duration = Duration::from_millis(100);
/// How often a sender at a drain point looks whether its records are committed.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// How long the producer may wait for room in its local queue.
const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// Destinations tracked per sender before idle ones are forgotten.
const MAX_DESTINATIONS: usize = 1024;

impl Inner {
    async fn destination(&self, topic: &str, key: &str, rotate: bool) -> Result<Dest> {
        if let Some(d) = lock(&self.destinations).get(topic) {
            return Ok(d.clone());
        }
        let producer = self.producer.clone();
        let t = topic.to_owned();
        let partitions =
            tokio::task::spawn_blocking(move || partition_count_blocking(&producer, &t))
                .await
                .map_err(|e| Error::transport(BACKEND, "metadata task", true, e))??;
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let start = i32::try_from(h.finish() % partitions.max(1) as u64).unwrap_or(0);
        let mut map = lock(&self.destinations);
        if map.len() >= MAX_DESTINATIONS {
            map.retain(|_, d| {
                Arc::strong_count(d) > 1 || d.try_lock().map_or(true, |o| o.pending() > 0)
            });
        }
        Ok(map
            .entry(topic.to_owned())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Outbound::new(
                    partitions, start, rotate,
                )))
            })
            .clone())
    }

    /// Fetches the destination group's committed offsets for what `out` has pending, holding
    /// `out` (the sender waits at a drain point or a full bound anyway).
    async fn refresh(&self, topic: &str, out: &mut Outbound) {
        let Some(parts) = out.begin_refresh(std::time::Instant::now()) else {
            return;
        };
        if let Some(committed) = self.committed(topic, parts).await {
            out.committed_all(committed);
        }
    }

    /// The periodic look at committed offsets, in the background: concurrent senders to
    /// `dest` keep going meanwhile (with a frozen broker, the query waits its timeout).
    fn refresh_later(self: &Arc<Self>, topic: &str, dest: &Dest, out: &mut Outbound) {
        let Some(parts) = out.begin_refresh(std::time::Instant::now()) else {
            return;
        };
        let (me, topic, dest) = (self.clone(), topic.to_owned(), dest.clone());
        self.tasks.spawn(async move {
            let committed = tokio::select! {
                c = me.committed(&topic, parts) => c,
                _ = me.stop.cancelled() => None,
            };
            if let Some(committed) = committed {
                dest.lock().await.committed_all(committed);
            }
        });
    }

    async fn committed(&self, topic: &str, parts: Vec<i32>) -> Option<HashMap<i32, i64>> {
        match self
            .lag
            .committed(topic.to_owned(), topic.to_owned(), parts)
            .await
        {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::debug!(%topic, error = %e, "kafka: committed offsets unavailable");
                None
            }
        }
    }

    /// Route a stamped, validated message and wait for the broker's acknowledgement.
    pub(super) async fn route(self: &Arc<Self>, msg: Message) -> Result<()> {
        self.submit(msg).await?.await
    }

    /// Route a stamped, validated message: hand it to the producer in order and return; the
    /// receipt resolves with the broker's acknowledgement (awaited by a task of `tasks`, so a
    /// dropped receipt still gets its bookkeeping and its report watch).
    pub(super) async fn submit(self: &Arc<Self>, msg: Message) -> Result<Receipt> {
        self.binding.stats().refused(self.hand_over(msg).await)
    }

    /// [`Inner::submit`] without counting a refusal (its receipts are counted).
    async fn hand_over(self: &Arc<Self>, msg: Message) -> Result<Receipt> {
        let from = msg.from().cloned().ok_or(Error::NotAdvertised)?;
        let key = from.to_string();
        // A broadcast, or a message to an ephemeral endpoint: one partition nobody commits
        // on (no drain points, no consumer lag to wait for, no report to watch).
        let (topic, single) = if self.replies.routes(&msg.to) {
            (self.replies.topic().to_owned(), true)
        } else {
            let broadcast = matches!(msg.to, Destination::Broadcast(_));
            (self.names.topic(&msg.to), broadcast)
        };
        let reply_to = self.opts.ephemeral.then(|| self.replies.topic());
        let payload = envelope::encode(&msg)?;
        self.topics
            .ensure(&[(topic.clone(), single.then_some(1))])
            .await?;
        let record = |partition| Record {
            topic: &topic,
            partition,
            key: &key,
            payload: &payload,
            headers: envelope_headers(msg.id().as_str(), reply_to),
        };
        if msg.mode == DeliveryMode::AtMostOnce {
            self.producer.enqueue(record(single.then_some(0)));
            self.binding.stats().count(true);
            return Ok(Receipt::ready(Ok(())));
        }
        if single {
            let queued = self.producer.submit(&record(Some(0)), QUEUE_WAIT).await?;
            let (settle, receipt) = self.binding.receipt();
            let producer = self.producer.clone();
            self.tasks.spawn(async move {
                settle.settle(producer.acked(queued).await.map(|_| ()));
            });
            return Ok(receipt);
        }
        let rotate = matches!(msg.to, Destination::Service(_));
        let dest = self.destination(&topic, &key, rotate).await?;
        let mut out = dest.lock().await;
        if out.wants_drain(std::time::Instant::now()) {
            let until = Instant::now() + DRAIN_WAIT;
            loop {
                self.refresh(&topic, &mut out).await;
                if out.pending() == 0 {
                    tracing::debug!(%topic, from = out.current(), "kafka: drain point reached; moving to the next partition");
                    break;
                }
                if Instant::now() >= until {
                    tracing::debug!(%topic, partition = out.current(), pending = out.pending(), "kafka: drain point not reached; staying");
                    out.stay(std::time::Instant::now());
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(DRAIN_POLL) => {}
                    _ = self.stop.cancelled() => return Err(Error::Closed),
                }
            }
        }
        let bound = self.opts.section.queue_bound;
        let deadline = Instant::now() + self.opts.send_timeout();
        loop {
            let now = std::time::Instant::now();
            if out.pending() >= bound {
                self.refresh(&topic, &mut out).await;
            } else if out.wants_refresh(now, REFRESH) {
                self.refresh_later(&topic, &dest, &mut out);
            }
            if out.pending() < bound {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Backpressure(format!(
                    "{bound} messages sent to {} are not yet consumed by its consumer group (queue_bound), and none was within {:?}",
                    msg.to,
                    self.opts.send_timeout()
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = self.stop.cancelled() => return Err(Error::Closed),
            }
        }
        // Hand the record over in order under the lock; wait for the broker without it, so
        // concurrent sends to this destination are in flight together.
        let queued = self
            .producer
            .submit(&record(Some(out.choose())), QUEUE_WAIT)
            .await?;
        let in_flight = out.sending();
        drop(out);
        let (settle, receipt) = self.binding.receipt();
        let me = self.clone();
        self.tasks.spawn(async move {
            let acked = me.producer.acked(queued).await;
            let outcome = match acked {
                Ok((partition, offset)) => {
                    dest.lock().await.written(partition, offset);
                    me.watch_report(msg, topic, partition, offset);
                    Ok(())
                }
                Err(e) => Err(e),
            };
            drop(in_flight);
            settle.settle(outcome);
        });
        Ok(receipt)
    }

    /// Watch a written message that asked for a report (`SERVICE_UNAVAILABLE` when its
    /// destination's group does not consume it in time).
    fn watch_report(&self, msg: Message, topic: String, partition: i32, offset: i64) {
        if msg.report {
            let reporter = Reporter {
                lag: self.lag.clone(),
                producer: self.producer.clone(),
                names: self.names.clone(),
                stop: self.stop.clone(),
            };
            let at = Written {
                topic,
                partition,
                offset,
            };
            self.tasks.spawn(reporter.watch(msg, at));
        }
    }
}
