//! The consumers: one poll thread each, feeding the transport's bounded inbox.
//!
//! - A **group** consumer subscribes to one topic in a consumer group (the service group, or
//!   the instance's own group). Offsets are committed by hand, never before the handler: only
//!   the acknowledged prefix of each partition ([`crate::offsets`]), every 20 ms (when it moved), on revoke
//!   ([`crate::rebalance`]) and on stop.
//! - A **tail** consumer reads the broadcast topic without a group, from its end at `listen`
//!   time (broadcasts reach the endpoints live when they are sent, as on every backend), and
//!   keeps only what this endpoint declared. An ephemeral endpoint reads the replies topic
//!   the same way, keeping what is addressed to it ([`crate::replies`]).
//!
//! Every consumer learns, from the records it reads, which senders are ephemeral
//! ([`ReplyRoutes::learn`]).
//!
//! The loop takes a prefetch slot before it polls, so at most `prefetch` deliveries are
//! unsettled at once; the slot is released when the delivery is settled. Waiting for a slot
//! or for inbox room blocks the poll thread on the transport's runtime (`Handle::block_on`
//! of channel and semaphore futures only, which need no runtime driver), woken by a settled
//! delivery, a requeue or `stop` — no sleep-polling, so the consumer moves at the handlers'
//! pace.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use comms_core::{envelope, Address, Delivery, DeliveryMode, Error, Message, Result, Scope};
use comms_core::{transport::NoAck, Destination};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::acker::KafkaAcker;
use crate::error::{map, BACKEND};
use crate::options::{KafkaOptions, MAX_MESSAGE_SIZE};
use crate::producer::Producer;
use crate::rebalance::{commit, GroupContext};
use crate::replies::ReplyRoutes;
use crate::shared::{Requeued, Shared};

const POLL: Duration = Duration::from_millis(100);
const COMMIT_EVERY: Duration = Duration::from_millis(20);

/// What a consumer reads.
#[derive(Debug, Clone)]
pub enum Source {
    /// `topic` as a member of `group`.
    Group {
        /// Consumer group.
        group: String,
        /// Topic.
        topic: String,
    },
    /// The end of `topic` (partition 0) onwards, without a group, keeping what `keep` says.
    Tail {
        /// Topic.
        topic: String,
        /// Which records this endpoint keeps.
        keep: Keep,
    },
}

/// What a tail consumer keeps.
#[derive(Debug, Clone)]
pub enum Keep {
    /// Broadcasts of the commands this endpoint declared (`.` ones only from `node`).
    Declared {
        /// This endpoint's node.
        node: String,
        /// The commands this endpoint declared.
        commands: Arc<RwLock<BTreeSet<String>>>,
    },
    /// Messages addressed to this one address (an ephemeral endpoint on the replies topic,
    /// [`crate::replies`]).
    AddressedTo(Address),
}

/// What every consumer of one transport shares.
#[derive(Debug, Clone)]
pub struct Sink {
    /// The inbox.
    pub inbox: mpsc::Sender<Delivery>,
    /// Prefetch slots.
    pub permits: Arc<Semaphore>,
    /// Stops the poll threads.
    pub stop: CancellationToken,
    /// For dead letters.
    pub producer: Arc<Producer>,
    /// The dead-letter topic.
    pub dead_letter: String,
    /// To block on the producer from the poll thread.
    pub runtime: tokio::runtime::Handle,
    /// Where the ephemeral senders seen are remembered.
    pub replies: Arc<ReplyRoutes>,
}

/// Start a consumer thread; returns its shared state (to wait for the assignment) and handle.
pub fn spawn(
    opts: &KafkaOptions,
    source: Source,
    sink: Sink,
) -> Result<(Arc<Shared>, JoinHandle<()>)> {
    let label = match &source {
        Source::Group { group, .. } => group.clone(),
        Source::Tail { topic, .. } => format!("{topic} (tail)"),
    };
    let shared = Arc::new(Shared::new(label.clone(), opts.section.prefetch));
    let config = match &source {
        Source::Group { group, .. } => opts.group_consumer(group),
        Source::Tail { topic, .. } => opts.plain_consumer(&format!("{topic}.tail")),
    };
    let consumer: BaseConsumer<GroupContext> = config
        .create_with_context(GroupContext {
            shared: shared.clone(),
            assign_grace: Duration::from_millis(opts.section.assign_grace_ms),
        })
        .map_err(|e| map("creating a consumer", e))?;
    if let Source::Group { topic, .. } = &source {
        consumer
            .subscribe(&[topic])
            .map_err(|e| map(format!("subscribing to {topic}"), e))?;
    }
    let worker = Worker {
        consumer,
        shared: shared.clone(),
        source,
        sink,
    };
    let handle = std::thread::Builder::new()
        .name(format!("comms-kafka {label}"))
        .spawn(move || worker.run())
        .map_err(|e| Error::transport(BACKEND, "starting a consumer thread", false, e))?;
    Ok((shared, handle))
}

struct Worker {
    consumer: BaseConsumer<GroupContext>,
    shared: Arc<Shared>,
    source: Source,
    sink: Sink,
}

impl Worker {
    fn run(self) {
        if let Source::Tail { topic, .. } = &self.source {
            if !self.start_tail(topic) {
                return;
            }
        }
        let mut last_commit = Instant::now();
        while !self.sink.stop.is_cancelled() {
            for r in self.shared.take_requeued() {
                self.redeliver(r);
            }
            if self.is_group() && last_commit.elapsed() >= COMMIT_EVERY {
                commit(&self.consumer, &self.shared, None, CommitMode::Async);
                last_commit = Instant::now();
            }
            let permit = match self.sink.permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => match self.wait_for_slot() {
                    Some(p) => p,
                    None => continue,
                },
            };
            match self.consumer.poll(POLL) {
                None => {}
                Some(Ok(record)) => self.handle(&record, permit),
                Some(Err(e)) => {
                    tracing::debug!(consumer = %self.shared.label, error = %e, "kafka: consumer error")
                }
            }
        }
        self.shared.set_closing();
        if self.is_group() {
            commit(&self.consumer, &self.shared, None, CommitMode::Sync);
        }
        tracing::debug!(consumer = %self.shared.label, "kafka: consumer stopped");
        // Dropping the consumer leaves the group.
    }

    fn is_group(&self) -> bool {
        matches!(self.source, Source::Group { .. })
    }

    fn start_tail(&self, topic: &str) -> bool {
        loop {
            match self
                .consumer
                .fetch_watermarks(topic, 0, Duration::from_secs(5))
            {
                Ok((_, high)) => {
                    let mut tpl = TopicPartitionList::new();
                    let ok = tpl
                        .add_partition_offset(topic, 0, Offset::Offset(high))
                        .and_then(|()| self.consumer.assign(&tpl));
                    match ok {
                        Ok(()) => {
                            self.shared.offsets().assign((topic.to_owned(), 0));
                            self.shared.set_assigned();
                            return true;
                        }
                        Err(e) => {
                            tracing::warn!(%topic, error = %e, "kafka: assigning a tail consumer's topic")
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(%topic, error = %e, "kafka: reading the end of a tail consumer's topic")
                }
            }
            if self.sink.stop.is_cancelled() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `fut` to completion on the transport's runtime from this poll thread, unless
    /// `stop` comes first (None). Only for futures that need no IO or timer driver.
    fn block_on<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        let stop = self.sink.stop.clone();
        self.sink.runtime.block_on(async move {
            tokio::select! {
                biased;
                _ = stop.cancelled() => None,
                v = fut => Some(v),
            }
        })
    }

    /// Waits for a prefetch slot; None when a delivery was requeued first (take it) or when
    /// stopping.
    fn wait_for_slot(&self) -> Option<OwnedSemaphorePermit> {
        let permits = self.sink.permits.clone();
        let shared = self.shared.clone();
        self.block_on(async move {
            tokio::select! {
                p = permits.acquire_owned() => p.ok(),
                () = shared.requeued() => None,
            }
        })
        .flatten()
    }

    /// Put a delivery in the inbox, waiting for room; false when stopping.
    fn hand_over(&self, d: Delivery) -> bool {
        let d = match self.sink.inbox.try_send(d) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return self.inbox_gone(),
            Err(mpsc::error::TrySendError::Full(d)) => d,
        };
        let inbox = self.sink.inbox.clone();
        match self.block_on(async move { inbox.send(d).await }) {
            Some(Ok(())) => true,
            Some(Err(_)) => self.inbox_gone(),
            None => false,
        }
    }

    /// Nobody reads the inbox any more: stop handing deliveries back, so the unsettled ones
    /// simply stay uncommitted.
    fn inbox_gone(&self) -> bool {
        self.shared.set_closing();
        false
    }

    fn redeliver(&self, r: Requeued) {
        if !self.shared.offsets().is_current(&r.key) {
            return; // the partition moved to another consumer, which will deliver it
        }
        let acker = KafkaAcker::new(self.shared.clone(), r.key, r.message.clone(), r.permit);
        self.hand_over(Delivery::shared(r.message, true, Box::new(acker)));
    }

    fn handle(&self, record: &BorrowedMessage<'_>, permit: OwnedSemaphorePermit) {
        let tp = (record.topic().to_owned(), record.partition());
        let offset = record.offset();
        let payload = record.payload().unwrap_or_default();
        let msg = match envelope::decode(payload, MAX_MESSAGE_SIZE * 4) {
            Ok(m) => m,
            Err(e) => {
                let reason = e.to_string();
                let written = crate::dead_letter::send_blocking(
                    &self.sink.runtime,
                    &self.sink.producer,
                    &self.sink.dead_letter,
                    record,
                    &reason,
                    &self.sink.stop,
                );
                // Not written (stopping): leave it in flight, so it is never committed past and
                // is read again later.
                self.shared.offsets().received(&tp, offset, !written);
                drop(permit);
                return;
            }
        };
        if let Some(from) = &msg.from() {
            self.sink.replies.learn(record, from);
        }
        if let Some(why) = self.skip_reason(&msg, record) {
            tracing::debug!(id = %msg.id(), why, "kafka: record skipped");
            self.shared.offsets().received(&tp, offset, false);
            return;
        }
        if msg.mode == DeliveryMode::AtMostOnce {
            self.shared.offsets().received(&tp, offset, false);
            drop(permit);
            self.hand_over(Delivery::new(msg, false, Box::new(NoAck)));
            return;
        }
        let key = self.shared.offsets().received(&tp, offset, true);
        let msg = Arc::new(msg);
        let acker = KafkaAcker::new(self.shared.clone(), key, msg.clone(), permit);
        self.hand_over(Delivery::shared(msg, false, Box::new(acker)));
    }

    /// Why a valid envelope is not delivered, if it is not.
    fn skip_reason(&self, msg: &Message, record: &BorrowedMessage<'_>) -> Option<&'static str> {
        match &self.source {
            Source::Tail {
                keep: Keep::Declared { node, commands },
                ..
            } => {
                let declared = commands
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&msg.command);
                if !declared {
                    return Some("broadcast of a command this endpoint did not declare");
                }
                let local_only = matches!(msg.to, Destination::Broadcast(Scope::Node));
                if local_only && msg.from().is_none_or(|f| f.node() != node) {
                    return Some("node-scoped broadcast from another node");
                }
            }
            Source::Tail {
                keep: Keep::AddressedTo(me),
                ..
            } => {
                if !matches!(&msg.to, Destination::Instance(a) if a == me) {
                    return Some("a reply to another ephemeral endpoint");
                }
            }
            Source::Group { .. } => {}
        }
        if let (Some(ttl), Some(ts)) = (msg.ttl, record.timestamp().to_millis()) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            if now.saturating_sub(ts) > ttl_ms {
                return Some("expired: older than its TTL (the sender was told when it asked)");
            }
        }
        None
    }
}
