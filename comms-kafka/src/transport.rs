//! [`KafkaTransport`]: the [`Transport`] contract over rdkafka.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use comms_core::backend::{Binding, WireFields, DEFAULT_HOP_LIMIT};
use comms_core::{
    Address, Advertisement, Capabilities, Config, Connect, Delivery, Destination, Error, Inbox,
    Message, Receipt, Result, Transport,
};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod send;

use crate::consumer::{self, Keep, Sink, Source};
use crate::error::BACKEND;
use crate::lag::Lag;
use crate::names::Names;
use crate::options::{KafkaOptions, MAX_MESSAGE_SIZE};
use crate::outbound::Outbound;
use crate::producer::Producer;
use crate::replies::ReplyRoutes;
use crate::topics::Topics;

/// How long `listen` waits for the consumer groups to assign partitions.
const ASSIGN_WAIT: Duration = Duration::from_secs(30);
/// How long `close` waits for the consumers to leave their groups.
const CLOSE_WAIT: Duration = Duration::from_secs(15);

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

/// Clients connect lazily: nothing is sent yet (`comms::probe` checks the broker answers).
#[async_trait]
impl Connect for KafkaTransport {
    async fn connect(config: &Config) -> Result<Self> {
        Self::with_options(KafkaOptions::from_config(config)?)
    }
}

impl KafkaTransport {
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
        msg.set_from(Some(ad.address.clone()));
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
