//! The in-memory transport (`memory://hub?node=n1`): the reference implementation of the
//! contract, used by tests and by single-process deployments.
//!
//! - Every transport naming the same hub (the URL's host, `default` when absent) in one process
//!   shares one set of queues; `node` (query parameter, default: the hostname) is the node name.
//! - One bounded queue per instance and one per service (competing consumers). A consumer
//!   takes from both, up to `prefetch` unacknowledged deliveries.
//! - At-least-once: a delivery stays counted until acked; nack or drop puts it back at the head.
//! - Backpressure: `send` waits up to `send_timeout` (default 30 s) for room in a full queue,
//!   then fails with [`Error::Backpressure`], whatever the delivery mode: an at-most-once
//!   message is never dropped silently at a full queue (it is not redelivered once handed to
//!   a consumer).
//! - A message waiting in a queue nobody consumes expires after its TTL (default 60 s); with
//!   `report` set, the sender gets `SERVICE_UNAVAILABLE` (correlated to the message).
//! - Nothing survives the process: the hub is memory.
//! - [`Transport::sniff`]: copies of every message the hub routes (sends, forwards,
//!   advertisements, the hub's own `SERVICE_UNAVAILABLE` reports), from a bounded tap
//!   (`broadcast`, 4096 copies): a sniffer that falls behind loses the oldest copies
//!   (counted, logged), senders never wait for it. No `advertise` needed.

mod hub;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use comms_core::address::{Address, Destination};
use comms_core::advertisement::Advertisement;
use comms_core::backend::{
    service_unavailable_report, Acker, Binding, NoAck, WireFields, DEFAULT_HOP_LIMIT,
};
use comms_core::capabilities::Capabilities;
use comms_core::config::{Scheme, TransportUrl};
use comms_core::error::{Error, Result};
use comms_core::message::{DeliveryMode, Message};
use comms_core::stats::TransportStats;
use comms_core::transport::{Delivery, Inbox, Transport};

use hub::{Hub, Route};
use queue::{Item, Queue};

/// Largest payload the memory transport accepts.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Default bound of every queue.
pub const DEFAULT_QUEUE_BOUND: usize = 10_000;
/// Default prefetch (unacknowledged deliveries per consumer).
pub const DEFAULT_PREFETCH: usize = 64;
/// Default time a message may wait for a consumer.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// Options of a memory transport.
#[derive(Debug, Clone)]
pub struct MemoryOptions {
    /// Hub name.
    pub hub: String,
    /// Node name.
    pub node: String,
    /// Bound of each queue (ready + unacknowledged).
    pub queue_bound: usize,
    /// Unacknowledged deliveries per consumer.
    pub prefetch: usize,
    /// How long `send` waits for room in a full queue.
    pub send_timeout: Duration,
    /// Hop limit for `forward`.
    pub hop_limit: u8,
}

impl MemoryOptions {
    /// Options from a configuration: its `memory:` URL, and `[transport] node` where the URL
    /// names none.
    pub fn from_config(config: &comms_core::Config) -> Result<Self> {
        let url = config.url()?;
        let mut opts = Self::from_url(&url)?;
        opts.node = config.node_for(&url).unwrap_or(opts.node);
        Ok(opts)
    }

    /// Options from a `memory:` URL.
    pub fn from_url(url: &TransportUrl) -> Result<Self> {
        if url.scheme() != Scheme::Memory {
            return Err(Error::Config(format!("{url} is not a memory: URL")));
        }
        let host = url.url().host_str().unwrap_or("");
        let node = url.node()?;
        let number = |name: &str, default: usize| -> Result<usize> {
            match url.query(name) {
                None => Ok(default),
                Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::Config(format!("{url}: `{name}` must be a positive integer"))
                }),
            }
        };
        Ok(Self {
            hub: if host.is_empty() {
                "default".into()
            } else {
                host.into()
            },
            node,
            queue_bound: number("queue_bound", DEFAULT_QUEUE_BOUND)?,
            prefetch: number("prefetch", DEFAULT_PREFETCH)?,
            send_timeout: Duration::from_millis(number("send_timeout_ms", 30_000)? as u64),
            hop_limit: DEFAULT_HOP_LIMIT,
        })
    }
}

/// The in-memory transport.
#[derive(Debug)]
pub struct MemoryTransport {
    hub: Arc<Hub>,
    opts: MemoryOptions,
    binding: Binding,
    stop: CancellationToken,
}

#[async_trait]
impl comms_core::transport::Connect for MemoryTransport {
    async fn connect(config: &comms_core::Config) -> Result<Self> {
        Ok(Self::with_options(MemoryOptions::from_config(config)?))
    }
}

impl MemoryTransport {
    /// Connect with explicit options.
    pub fn with_options(opts: MemoryOptions) -> Self {
        Self {
            hub: Hub::named(&opts.hub, opts.queue_bound),
            binding: Binding::new(opts.node.clone()),
            opts,
            stop: CancellationToken::new(),
        }
    }

    async fn enqueue(&self, msg: Message) -> Result<()> {
        let from = msg.from().cloned().ok_or(Error::NotAdvertised)?;
        self.hub.copy_to_sniffers(&msg);
        match self.hub.route(&from, &msg.to, &msg.command) {
            Route::One(q) => self.push(&q, msg).await,
            Route::Many(queues) => {
                for q in queues {
                    self.push(&q, msg.clone()).await?;
                }
                Ok(())
            }
        }
    }

    async fn push(&self, q: &Arc<Queue>, msg: Message) -> Result<()> {
        // Only a message nobody consumes yet is watched for expiry (what that needs is copied
        // before the message moves into the queue; nothing is copied otherwise).
        let expiry = (q.consumers() == 0).then(|| {
            let ttl = msg.ttl.unwrap_or(DEFAULT_TTL);
            (msg.id().clone(), ttl, msg.report, msg.to.clone())
        });
        let item = Item {
            msg: Arc::new(msg),
            redelivered: false,
        };
        // Either mode waits for room (backpressure, as on native): at-most-once means no
        // redelivery once handed to a consumer, not a silent drop at a full queue.
        q.push(item, self.opts.send_timeout).await?;
        if let Some((id, ttl, wants_report, to)) = expiry {
            let (hub, q) = (Arc::downgrade(&self.hub), q.clone());
            tokio::spawn(async move {
                tokio::time::sleep(ttl).await;
                if q.consumers() > 0 {
                    return;
                }
                let Some(expired) = q.remove(&id) else { return };
                let Some(hub) = hub.upgrade() else { return };
                tracing::info!(id = %id, to = %to, "memory: message expired without a consumer");
                if wants_report {
                    send_unavailable(&hub, &expired.msg);
                }
                hub.collect_idle();
            });
        }
        Ok(())
    }

    fn spawn_consumer(&self, address: Address, tx: mpsc::Sender<Delivery>) {
        let instance = self.hub.instance_queue(&address);
        let service = self.hub.service_queue(address.service());
        let prefetch = Arc::new(Semaphore::new(self.opts.prefetch));
        let stop = self.stop.clone();
        instance.add_consumer();
        service.add_consumer();
        tokio::spawn(async move {
            let queues = [instance, service];
            let mut turn = 0usize;
            'outer: loop {
                if stop.is_cancelled() {
                    break;
                }
                // The fast paths below never wait: yield to the scheduler when this task's
                // budget is spent, as an awaited channel operation would.
                tokio::task::consume_budget().await;
                // A free prefetch slot is taken at once; only a full prefetch waits.
                let permit = match prefetch.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => tokio::select! {
                        p = prefetch.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                        _ = stop.cancelled() => break,
                    },
                };
                // Alternate between the two queues so that neither starves the other.
                let mut pop = || {
                    turn = turn.wrapping_add(1);
                    (0..2)
                        .map(|k| &queues[(turn + k) % 2])
                        .find_map(|q| q.try_pop().map(|i| (q.clone(), i)))
                };
                let (queue, item) = loop {
                    // While messages wait, take them without registering for a wake-up.
                    if let Some(found) = pop() {
                        break found;
                    }
                    let mut a = std::pin::pin!(queues[0].ready_signal().notified());
                    let mut b = std::pin::pin!(queues[1].ready_signal().notified());
                    a.as_mut().enable();
                    b.as_mut().enable();
                    // Registered: a push from now on wakes us, so look once more first.
                    if let Some(found) = pop() {
                        break found;
                    }
                    tokio::select! {
                        _ = a => {}
                        _ = b => {}
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop.cancelled() => break 'outer,
                    }
                };
                let delivery = if item.msg.mode == DeliveryMode::AtMostOnce {
                    queue.settle(None);
                    drop(permit);
                    Delivery::shared(item.msg, item.redelivered, Box::new(NoAck))
                } else {
                    let (msg, redelivered) = (item.msg.clone(), item.redelivered);
                    Delivery::shared(
                        msg,
                        redelivered,
                        Box::new(MemoryAcker {
                            queue,
                            item: Some(item),
                            _permit: permit,
                        }),
                    )
                };
                // Room in the inbox: handed over at once; a full inbox waits (backpressure).
                let delivery = match tx.try_send(delivery) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                    Err(mpsc::error::TrySendError::Full(delivery)) => delivery,
                };
                tokio::select! {
                    r = tx.send(delivery) => if r.is_err() { break },
                    _ = stop.cancelled() => break,
                }
            }
            for q in &queues {
                q.remove_consumer();
            }
        });
    }

    fn release(&self) {
        self.stop.cancel();
        if let Some(addr) = self.binding.address() {
            self.hub.unregister(&addr);
        }
    }
}

fn send_unavailable(hub: &Hub, expired: &Message) {
    let Some(origin) = expired.from().cloned() else {
        return;
    };
    let hub_address = Address::new("memory", "hub").ok();
    let Ok(report) = service_unavailable_report(expired, origin.clone(), hub_address) else {
        return;
    };
    hub.copy_to_sniffers(&report);
    if !hub.instance_queue(&origin).try_push(Item {
        msg: Arc::new(report),
        redelivered: false,
    }) {
        tracing::warn!(to = %origin, "memory: SERVICE_UNAVAILABLE report dropped: sender's queue is full");
    }
}

struct MemoryAcker {
    queue: Arc<Queue>,
    item: Option<Item>,
    _permit: OwnedSemaphorePermit,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        self.item.take();
        self.queue.settle(None);
        Ok(())
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<()> {
        let item = self.item.take();
        self.queue.settle(if requeue { item } else { None });
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.queue.settle(Some(item));
        }
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn advertise(&self, ad: &Advertisement) -> Result<()> {
        let rebind = !self.binding.bind(ad)?;
        if let Err(e) = self.hub.register(&ad.address, ad.commands.clone(), rebind) {
            self.binding.unbind();
            return Err(e);
        }
        let mut msg = ad.to_message()?;
        msg.set_from(Some(ad.address.clone()));
        self.enqueue(msg).await
    }

    async fn listen(&self) -> Result<Inbox> {
        let address = self.binding.start_listening()?;
        let (tx, rx) = mpsc::channel(self.opts.prefetch);
        self.spawn_consumer(address, tx);
        Ok(Inbox::new(rx))
    }

    async fn send(&self, msg: Message) -> Result<()> {
        let msg = self.binding.prepare_send(msg, MAX_MESSAGE_SIZE)?;
        self.binding.counted(self.enqueue(msg).await)
    }

    async fn forward(&self, delivery: Delivery, to: Destination) -> Result<()> {
        self.binding
            .forward(delivery, to, self.opts.hop_limit, |fwd| async move {
                self.binding.counted(self.enqueue(fwd).await)
            })
            .await
    }

    async fn close(&self) -> Result<()> {
        self.binding.close();
        self.release();
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::new("memory");
        caps.max_message_size = MAX_MESSAGE_SIZE;
        caps.queue_bound = self.opts.queue_bound;
        caps.survives_restart = false;
        caps.hop_limit = self.opts.hop_limit;
        caps
    }

    fn node(&self) -> String {
        self.opts.node.clone()
    }

    fn local_address(&self) -> Option<Address> {
        self.binding.address()
    }

    fn stats(&self) -> Option<Arc<TransportStats>> {
        Some(self.binding.stats().clone())
    }

    fn dead_letters(&self) -> Result<Arc<dyn comms_core::dead_letter::DeadLetters>> {
        Ok(self.hub.dead_letters.clone())
    }

    async fn sniff(&self) -> Result<Inbox> {
        self.binding.check_open()?;
        let mut tap = self.hub.tap();
        let (tx, rx) = mpsc::channel(self.opts.prefetch.max(1));
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let mut lost = 0u64;
            loop {
                let msg = tokio::select! {
                    r = tap.recv() => r,
                    _ = stop.cancelled() => break,
                };
                let msg = match msg {
                    Ok(m) => m,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        lost += n;
                        tracing::warn!(
                            lost = n,
                            total_lost = lost,
                            "memory: sniffer fell behind, copies lost"
                        );
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let copy = Delivery::new(msg, false, Box::new(NoAck));
                tokio::select! {
                    r = tx.send(copy) => if r.is_err() { break },
                    _ = stop.cancelled() => break,
                }
            }
        });
        Ok(Inbox::new(rx))
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comms_core::message::commands;

    fn transport(hub: &str, prefetch: usize) -> MemoryTransport {
        let mut opts = MemoryOptions::from_url(
            &TransportUrl::parse(&format!("memory://{hub}?node=n1")).unwrap(),
        )
        .unwrap();
        opts.prefetch = prefetch;
        MemoryTransport::with_options(opts)
    }

    async fn advertised(hub: &str, service: &str) -> MemoryTransport {
        let t = transport(hub, 8);
        let ad = Advertisement::new(Address::new("n1", service).unwrap(), ["PING"]);
        t.advertise(&ad).await.unwrap();
        t
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_once_to_a_full_queue_waits_for_room_and_loses_nothing() {
        let mut opts =
            MemoryOptions::from_url(&TransportUrl::parse("memory://amo_full?node=n1").unwrap())
                .unwrap();
        opts.queue_bound = 16;
        opts.prefetch = 1;
        let b = MemoryTransport::with_options(opts.clone());
        b.advertise(&Advertisement::new(
            Address::new("n1", "b").unwrap(),
            ["PING"],
        ))
        .await
        .unwrap();
        let mut inbox = b.listen().await.unwrap();
        let a = MemoryTransport::with_options(opts);
        a.advertise(&Advertisement::new(
            Address::new("n1", "a").unwrap(),
            ["PONG"],
        ))
        .await
        .unwrap();
        const N: usize = 2_000;
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < N {
                let d = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
                    .await
                    .expect("a delivery within 10 s")
                    .expect("inbox open");
                if d.message().command == "PING" {
                    got.push(d.message().param("i").unwrap_or_default().to_owned());
                }
                d.ack().await.unwrap();
                if got.len() % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            got
        });
        for i in 0..N {
            let m = Message::new("PING", Destination::Service("b".into()))
                .unwrap()
                .with_param("i", i.to_string())
                .at_most_once();
            a.send(m).await.unwrap();
        }
        let got = reader.await.unwrap();
        let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
        assert_eq!(got, want, "all {N} at-most-once messages, in order");
    }

    #[tokio::test]
    async fn sniff_sees_copies_and_takes_nothing_from_receivers() {
        let sniffer = transport("sniff_copies", 8);
        let mut copies = sniffer.sniff().await.unwrap();
        let a = advertised("sniff_copies", "a").await;
        let b = advertised("sniff_copies", "b").await;
        let mut inbox = b.listen().await.unwrap();
        let msg = Message::new("PING", Destination::Service("b".into()))
            .unwrap()
            .with_param("n", "1");
        a.send(msg).await.unwrap();
        // The receiver still gets it, and must acknowledge it itself.
        let got = loop {
            let d = inbox.recv().await.unwrap();
            if d.message().command == "PING" {
                break d;
            }
            d.ack().await.unwrap();
        };
        assert_eq!(got.message().param("n"), Some("1"));
        got.ack().await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let c = tokio::time::timeout(Duration::from_secs(5), copies.recv())
                .await
                .unwrap()
                .unwrap();
            seen.push((c.message().command.clone(), c.message().from().cloned()));
        }
        assert_eq!(seen[0].0, commands::ADVERTISE);
        assert_eq!(seen[1].0, commands::ADVERTISE);
        assert_eq!(
            seen[2],
            ("PING".to_owned(), Some(Address::new("n1", "a").unwrap()))
        );
    }

    #[tokio::test]
    async fn a_slow_sniffer_loses_copies_and_never_blocks_senders() {
        let sniffer = transport("sniff_slow", 1);
        let mut copies = sniffer.sniff().await.unwrap();
        let a = advertised("sniff_slow", "a").await;
        let n = hub::TAP_BOUND * 2;
        let sent = tokio::time::timeout(Duration::from_secs(10), async {
            for i in 0..n {
                let m = Message::new("PING", Destination::Service("nobody".into()))
                    .unwrap()
                    .with_param("i", i.to_string())
                    .at_most_once();
                a.send(m).await.unwrap();
            }
        })
        .await;
        assert!(sent.is_ok(), "senders never wait for a sniffer");
        let mut got = 0usize;
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(200), copies.recv()).await
        {
            got += 1;
        }
        assert!(got > 0 && got < n, "got {got} of {n} copies");
    }
}
