//! [`KafkaTransport`]: the [`Transport`] contract over rdkafka.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use comms_core::backend::{Binding, DEFAULT_HOP_LIMIT};
use comms_core::{
    envelope, Address, Advertisement, Capabilities, Config, Delivery, DeliveryMode, Destination,
    Error, Inbox, Message, Receipt, Result, Transport,
};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::consumer::{self, Keep, Sink, Source};
use crate::error::BACKEND;
use crate::lag::Lag;
use crate::names::Names;
use crate::options::{KafkaOptions, MAX_MESSAGE_SIZE};
use crate::outbound::{Outbound, DRAIN_WAIT};
use crate::producer::{envelope_headers, Producer, Record};
use crate::replies::ReplyRoutes;
use crate::reports::{Reporter, Written};
use crate::topics::{partition_count_blocking, Topics};

/// How often a sender looks at its destinations' committed offsets while it has records there.
const REFRESH: Duration = Duration::from_millis(100);
/// How often a sender at a drain point looks whether its records are committed.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// How long `listen` waits for the consumer groups to assign partitions.
const ASSIGN_WAIT: Duration = Duration::from_secs(30);
/// How long the producer may wait for room in its local queue.
const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// How long `close` waits for the consumers to leave their groups.
const CLOSE_WAIT: Duration = Duration::from_secs(15);
/// Destinations tracked per sender before idle ones are forgotten.
const MAX_DESTINATIONS: usize = 1024;

type Dest = Arc<tokio::sync::Mutex<Outbound>>;

/// The Kafka transport. See the crate docs for the mapping.
#[derive(Debug)]
pub struct KafkaTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    opts: KafkaOptions,
    names: Names,
    producer: Arc<Producer>,
    topics: Arc<Topics>,
    lag: Arc<Lag>,
    destinations: Mutex<HashMap<String, Dest>>,
    replies: Arc<ReplyRoutes>,
    binding: Binding,
    commands: Arc<RwLock<BTreeSet<String>>>,
    stop: CancellationToken,
    tasks: TaskTracker,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KafkaTransport {
    /// Connect with the settings of a configuration whose URL is `kafka://...`.
    pub fn connect(config: &Config) -> Result<Self> {
        Self::with_options(KafkaOptions::from_config(config)?)
    }

    /// Connect with explicit options. Clients connect lazily; nothing is sent yet.
    pub fn with_options(opts: KafkaOptions) -> Result<Self> {
        let producer = Arc::new(Producer::new(&opts)?);
        let topics = Arc::new(Topics::new(&opts)?);
        let replies = Arc::new(ReplyRoutes::new(Names::new(&opts.namespace).replies()));
        Ok(Self {
            inner: Arc::new(Inner {
                names: Names::new(&opts.namespace),
                lag: Arc::new(Lag::new(opts.clone())),
                binding: Binding::new(opts.node.clone()),
                opts,
                producer,
                topics,
                destinations: Mutex::new(HashMap::new()),
                replies,
                commands: Arc::new(RwLock::new(BTreeSet::new())),
                stop: CancellationToken::new(),
                tasks: TaskTracker::new(),
                threads: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The topic and group names of this transport's namespace.
    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    /// Records handed to the producer and not yet acknowledged by the broker: how many of
    /// this transport's sends are in flight together (a health figure; 0 when idle).
    pub fn records_in_flight(&self) -> usize {
        usize::try_from(self.inner.producer.in_flight()).unwrap_or(0)
    }
}

impl Inner {
    /// The topics an endpoint at `address` reads or may need: every endpoint makes sure the
    /// namespace's shared ones exist (so the first `commsctl` call creates none); an
    /// ephemeral endpoint has no topic of its own ([`crate::replies`]).
    fn own_topics(&self, address: &Address) -> Vec<(String, Option<i32>)> {
        let mut topics = vec![
            (self.names.broadcast(), Some(1)),
            (self.names.replies(), Some(1)),
            (self.names.dead_letter(), Some(1)),
        ];
        if !self.opts.ephemeral {
            topics.push((self.names.instance(address), None));
            topics.push((self.names.service(address.service()), None));
        }
        topics
    }

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
    async fn route(self: &Arc<Self>, msg: Message) -> Result<()> {
        self.submit(msg).await?.await
    }

    /// Route a stamped, validated message: hand it to the producer in order and return; the
    /// receipt resolves with the broker's acknowledgement (awaited by a task of `tasks`, so a
    /// dropped receipt still gets its bookkeeping and its report watch).
    async fn submit(self: &Arc<Self>, msg: Message) -> Result<Receipt> {
        self.binding.stats().refused(self.hand_over(msg).await)
    }

    /// [`Inner::submit`] without counting a refusal (its receipts are counted).
    async fn hand_over(self: &Arc<Self>, msg: Message) -> Result<Receipt> {
        let from = msg.from.clone().ok_or(Error::NotAdvertised)?;
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
            headers: envelope_headers(msg.id.as_str(), reply_to),
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

#[async_trait]
impl Transport for KafkaTransport {
    async fn advertise(&self, ad: &Advertisement) -> Result<()> {
        let inner = &self.inner;
        inner.binding.bind(ad)?;
        if inner.opts.ephemeral {
            inner.replies.insert(ad.address.clone());
        }
        inner.topics.ensure(&inner.own_topics(&ad.address)).await?;
        *inner.commands.write().unwrap_or_else(|p| p.into_inner()) = ad.commands.clone();
        let mut msg = ad.to_message()?;
        msg.from = Some(ad.address.clone());
        inner.route(msg).await
    }

    async fn listen(&self) -> Result<Inbox> {
        let inner = &self.inner;
        let address = inner.binding.start_listening()?;
        let prefetch = inner.opts.section.prefetch;
        let (tx, rx) = mpsc::channel(prefetch);
        let sink = Sink {
            inbox: tx,
            permits: Arc::new(Semaphore::new(prefetch)),
            stop: inner.stop.clone(),
            producer: inner.producer.clone(),
            dead_letter: inner.names.dead_letter(),
            runtime: tokio::runtime::Handle::current(),
            replies: inner.replies.clone(),
        };
        let mut sources = vec![Source::Tail {
            topic: inner.names.broadcast(),
            keep: Keep::Declared {
                node: address.node().to_owned(),
                commands: inner.commands.clone(),
            },
        }];
        if inner.opts.ephemeral {
            sources.push(Source::Tail {
                topic: inner.replies.topic().to_owned(),
                keep: Keep::AddressedTo(address.clone()),
            });
        } else {
            let instance = inner.names.instance(&address);
            let service = inner.names.service(address.service());
            sources.push(Source::Group {
                group: instance.clone(),
                topic: instance,
            });
            sources.push(Source::Group {
                group: service.clone(),
                topic: service,
            });
        }
        let mut waits = Vec::new();
        for source in sources {
            let (shared, thread) = consumer::spawn(&inner.opts, source, sink.clone())?;
            lock(&inner.threads).push(thread);
            waits.push((shared.label.clone(), shared.assigned()));
        }
        for (label, mut assigned) in waits {
            let ok = tokio::time::timeout(ASSIGN_WAIT, assigned.wait_for(|a| *a)).await;
            if !matches!(ok, Ok(Ok(_))) {
                tracing::warn!(consumer = %label, "kafka: no partition assignment yet; listening anyway");
            }
        }
        Ok(Inbox::new(rx))
    }

    async fn send(&self, msg: Message) -> Result<()> {
        let msg = self.inner.binding.prepare_send(msg, MAX_MESSAGE_SIZE)?;
        self.inner.route(msg).await
    }

    async fn submit(&self, msg: Message) -> Result<Receipt> {
        let msg = self.inner.binding.prepare_send(msg, MAX_MESSAGE_SIZE)?;
        self.inner.submit(msg).await
    }

    async fn forward(&self, delivery: Delivery, to: Destination) -> Result<()> {
        let inner = &self.inner;
        inner
            .binding
            .forward(delivery, to, DEFAULT_HOP_LIMIT, |fwd| inner.route(fwd))
            .await
    }

    async fn sniff(&self) -> Result<Inbox> {
        crate::sniff::start(
            &self.inner.opts,
            &self.inner.names,
            self.inner.stop.child_token(),
            &self.inner.tasks,
        )
    }

    async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if !inner.binding.close() {
            return Ok(());
        }
        let producer = inner.producer.clone();
        let flushed =
            tokio::task::spawn_blocking(move || producer.flush_blocking(Duration::from_secs(30)))
                .await
                .map_err(|e| Error::transport(BACKEND, "flush task", false, e))?;
        inner.stop.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
        let threads: Vec<JoinHandle<()>> = lock(&inner.threads).drain(..).collect();
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("kafka: a consumer thread panicked");
                }
            }
        });
        // Leaving a group needs the broker; when it is unreachable the threads finish later
        // on their own (their last commit is already done or impossible anyway).
        if tokio::time::timeout(CLOSE_WAIT, joined).await.is_err() {
            tracing::warn!("kafka: consumers still closing after {CLOSE_WAIT:?}; not waiting");
        }
        flushed
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::new("kafka");
        caps.max_message_size = MAX_MESSAGE_SIZE;
        caps.queue_bound = self.inner.opts.section.queue_bound;
        caps.at_most_once = true;
        caps.namespaces = true;
        caps.survives_restart = true;
        caps.hop_limit = DEFAULT_HOP_LIMIT;
        caps
    }

    fn node(&self) -> String {
        self.inner.opts.node.clone()
    }

    fn local_address(&self) -> Option<Address> {
        self.inner.binding.address()
    }

    fn stats(&self) -> Option<std::sync::Arc<comms_core::TransportStats>> {
        Some(self.inner.binding.stats().clone())
    }

    /// Attempt counts stay on this host ([`KafkaOptions::state_dir`]).
    fn state_dir(&self) -> Option<std::path::PathBuf> {
        self.inner.opts.state_dir.clone()
    }

    /// The topic `comms.{ns}.dead-letters` ([`crate::dead_letters`]).
    fn dead_letters(&self) -> Result<Arc<dyn comms_core::DeadLetters>> {
        Ok(Arc::new(crate::dead_letters::TopicDeadLetters::new(
            &self.inner.opts,
            &self.inner.names,
            self.inner.producer.clone(),
            self.inner.topics.clone(),
        )))
    }
}

/// Check that a broker of `config`'s URL answers a metadata request within `within`
/// (the transport itself connects lazily and librdkafka retries for ever; a short-lived
/// client such as `commsctl` calls this first to fail in bounded time).
pub async fn probe(config: &Config, within: Duration) -> Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let opts = KafkaOptions::from_config(config)?;
    let client: BaseConsumer<crate::logs::Quiet> = opts
        .base("probe")
        .create_with_context(crate::logs::Quiet)
        .map_err(|e| crate::error::map("creating the probe client", e))?;
    let bootstrap = opts.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        client.fetch_metadata(None, within).map(drop).map_err(|e| {
            Error::transport(
                BACKEND,
                format!(
                    "no broker at {bootstrap} answered within {} s",
                    within.as_secs()
                ),
                true,
                e,
            )
        })
    })
    .await
    .map_err(|e| Error::transport(BACKEND, "probe task", true, e))?
}
