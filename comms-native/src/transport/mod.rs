//! [`NativeTransport`]: the comms [`Transport`] over a permanent Communicator connection
//! ([`crate::client::Client`]) to `commsd` (`cd:` Unix/TCP, or `cds:` TLS), with at-least-once
//! delivery **end to end**. `cdu:` (UDP, send-only) is [`DatagramTransport`] ([`datagram`]).
//!
//! The daemon keeps nothing on disk and never acts on `comms_*` parameters (it only reads a
//! line's stream number to pick among equally near instances, `docs/NATIVE.md`); reliability
//! lives in the two transports at the ends.
//!
//! # Sending (state: [`outbox`], behind a mutex shared with the tasks)
//! - At-least-once unicast (`Instance`, `Service`): `send` waits for one of `queue_bound`
//!   permits (then [`Error::Backpressure`] after `send_timeout`), keeps a copy in the outbox,
//!   numbers it in the **stream of its destination** — `comms_seq=EPOCH.STREAM.N` plus
//!   `comms_base=B` (lowest position still held) — and writes it if connected. `Ok` means the
//!   copy is kept. EPOCH is random per transport, so a restarted sender starts new streams.
//! - The copy goes when the receiver acknowledges it (`COMMS_ACK`, see [`ack`]) or when the
//!   daemon reports it undeliverable (`SERVICE_UNAVAILABLE` with `comms_corr` = its id).
//! - Resend: after every (re)registration, **everything** held, in stream order; otherwise
//!   an entry unacknowledged for `ack_timeout × 2^k` (k = resends so far, capped at 3).
//! - Replies (a correlation set) beyond [`outbox::REPLY_QUOTA`] held for one destination are
//!   written once, not kept: a peer that never acknowledges cannot wedge the outbox.
//! - At-most-once messages, broadcasts and messages to stock Communicator services (which
//!   never acknowledge; learnt from lines without `comms_id`, [`stock`]) are written once,
//!   nothing kept; while disconnected they are dropped (fire-and-forget). Broadcasts reach the
//!   services live at that moment (the daemon cannot know who else will come).
//!
//! # Receiving (state: [`streams`] and the ready queue, owned by the [`receiver`] task)
//! - Lines with `comms_seq` are ordered per sender stream: passed up when `N` is the next
//!   position, buffered when ahead (a resend after reconnect races with new sends), dropped
//!   when the buffer or the ready queue is full (the sender resends). A position already
//!   passed up is a duplicate: ignored while its handler runs, acknowledged again after. So
//!   per-(sender, destination) order survives resends and daemon restarts, and the endpoint's
//!   dedup window (by id) makes the handler run once even when one id is sent twice.
//! - `Delivery::ack` (after the handler) queues the position for the batched `COMMS_ACK` to
//!   the sender's stamped address (flushed every 5 ms or per 512); `nack(requeue)` and a
//!   dropped acker put the delivery back at the head of the local ready queue (the sender's
//!   copy still exists, so nothing is lost if this process dies meanwhile); deliveries
//!   already in the inbox come before it, as on the memory transport. `nack(false)` acks.
//! - Lines without `comms_id` (stock services) get a fresh id and are at-most-once.
//!
//! To a **service**, a sender's stream is capped (256 messages or 500 ms, [`outbox`]); the
//! next stream is held until every message of the previous one is acknowledged, and the
//! daemon gives each stream its turn among the equally near instances. So one sender's work
//! spreads over a service's instances in a cluster while its order holds, as on Kafka.
//!
//! # Sniffing
//! [`Transport::sniff`] needs no `advertise`: it opens one more, unregistered connection to
//! the daemon and sends `SNIFF` (a commsd extension, docs/NATIVE.md); see [`sniff`].
//!
//! # Lifecycle
//! The first `advertise` binds the address, starts the client (REGISTER as the service, with
//! the advertised commands plus `COMMS_ACK`), the receiver and the resend tasks, and waits up
//! to `register_timeout` for READY: a daemon that is down is not an error (the client keeps
//! trying), a daemon that keeps refusing the name is [`Error::AddressInUse`]. `close` waits
//! (up to `close_timeout`) until the outbox is empty, then UNREGISTERs and stops the tasks
//! (CancellationToken + TaskTracker); dropping the transport stops them abruptly.
//!
//! Size: over 450 lines (this guide, then `NativeTransport` with its send, resend and
//! `Transport` paths); left whole here because the throughput issue reshapes this contract
//! and the shared transport bookkeeping moves to `comms-core` then.

pub mod ack;
pub mod datagram;
pub(crate) mod encode;
pub mod mapping;
mod options;
pub(crate) mod outbox;
pub mod probe;
mod receiver;
pub mod sniff;
pub mod stock;
pub mod streams;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use comms_core::backend::Binding;
use comms_core::{
    Address, Advertisement, Capabilities, Config, Connect, Delivery, DeliveryMode, Destination,
    Error, Inbox, Message, MessageId, Result, Transport,
};

pub use datagram::{DatagramOptions, DatagramTransport};
pub use options::{AdminToken, NativeOptions, DEFAULT_PREFETCH, DEFAULT_QUEUE_BOUND};
pub use receiver::{READY_BOUND, READY_PAUSE};

use crate::client::{Client, ClientConfig, ClientError, ConnectionState};
use encode::Encoded;
use mapping::{destination_key, ACK_COMMAND};
use outbox::Outbox;
use receiver::ReceiverParts;
use stock::StockPeers;

/// Default largest payload ([`Message::payload_size`]) accepted. commsd reads lines of up to
/// 64 KiB by default; escaping can double a value and the `comms_*` parameters add ~200 bytes,
/// so this default stays well inside. `?max_message_size=` raises it for a daemon started with
/// a larger `max_line` (keep `max_message_size × 2 + 1 KiB` under it).
pub const MAX_MESSAGE_SIZE: usize = 30 * 1024;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the first `advertise` starts (the address itself is in the [`Binding`]).
struct Bound {
    client: Client,
    commands: BTreeSet<String>,
    inbox_tx: Option<oneshot::Sender<mpsc::Sender<Delivery>>>,
    flush_tx: mpsc::Sender<receiver::FlushRequest>,
    cancel: CancellationToken,
}

/// The native transport. See the module docs.
pub struct NativeTransport {
    opts: NativeOptions,
    outbox: Arc<Mutex<Outbox>>,
    permits: Arc<Semaphore>,
    /// Notified when a send waits for a permit (the receiver must read the acks).
    wanted: Arc<Notify>,
    stock: Arc<Mutex<StockPeers>>,
    binding: Binding,
    /// Set together with the binding's address, under this lock.
    bound: Mutex<Option<Bound>>,
    /// Replies written once over [`outbox::REPLY_QUOTA`] (for the rate-limited warning).
    unkept_replies: AtomicU64,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for NativeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeTransport")
            .field("url", &self.opts.url)
            .field("node", &self.opts.node)
            .field("address", &self.local_address())
            .finish_non_exhaustive()
    }
}

/// Nothing connects before the first `advertise`.
#[async_trait]
impl Connect for NativeTransport {
    async fn connect(config: &Config) -> Result<Self> {
        Ok(Self::with_options(NativeOptions::from_config(config)?))
    }
}

impl NativeTransport {
    /// A transport with explicit options. Without `node=` (`opts.node_given` false), the
    /// daemon is asked its name first ([`probe`], bounded, blocking: a Unix socket or loopback
    /// port answers at once) and `opts.node` becomes it; the host name stays when it cannot
    /// be asked.
    pub fn with_options(mut opts: NativeOptions) -> Self {
        if !opts.node_given {
            match probe::daemon_node(&opts.url) {
                Some(node) => {
                    if node != opts.node {
                        tracing::info!(daemon = %node, host = %opts.node, "native: node learnt from the daemon");
                    }
                    opts.node = node;
                }
                None => {
                    tracing::debug!(url = %opts.url, node = %opts.node, "native: the daemon could not be asked its name; using the host name")
                }
            }
        }
        let epoch = format!("{:x}", ulid::Ulid::generate().random() as u64);
        Self {
            permits: Arc::new(Semaphore::new(opts.queue_bound.max(1))),
            wanted: Arc::default(),
            outbox: Arc::new(Mutex::new(Outbox::new(epoch))),
            stock: Arc::default(),
            binding: Binding::new(opts.node.clone()),
            opts,
            bound: Mutex::new(None),
            unkept_replies: AtomicU64::new(0),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// The options in use.
    pub fn options(&self) -> &NativeOptions {
        &self.opts
    }

    /// The connection state, once advertised.
    pub fn connection_state(&self) -> Option<tokio::sync::watch::Receiver<ConnectionState>> {
        lock(&self.bound).as_ref().map(|b| b.client.watch())
    }

    /// At-least-once messages kept, waiting for an acknowledgement.
    pub fn unacknowledged(&self) -> usize {
        lock(&self.outbox).len()
    }

    /// The client, once advertised (what `send` and `forward` need: the daemon stamps the
    /// sender, so the message's `from` is not written).
    fn client(&self) -> Result<Client> {
        lock(&self.bound)
            .as_ref()
            .map(|b| b.client.clone())
            .ok_or(Error::NotAdvertised)
    }

    /// The checks of `advertise` and the binding ([`Binding::bind`]); on the first, start
    /// the client and return it to wait on.
    fn bind(&self, ad: &Advertisement) -> Result<Option<Client>> {
        let mut commands = ad.commands.clone();
        commands.insert(ACK_COMMAND.to_owned());
        let mut bound = lock(&self.bound);
        let first = self.binding.bind(ad)?;
        if !first {
            let Some(b) = bound.as_mut() else {
                return Ok(None);
            };
            if b.commands != commands {
                b.commands = commands.clone();
                let client = b.client.clone();
                self.tracker.spawn(async move {
                    let _ = client.set_commands(commands).await;
                });
            }
            return Ok(None);
        }
        let cfg = match ClientConfig::from_url(&self.opts.url, ad.address.service()) {
            Ok(cfg) => cfg
                .with_commands(commands.iter().cloned())
                .with_retry(self.opts.retry.clone()),
            Err(e) => {
                self.binding.unbind();
                return Err(e.into());
            }
        };
        let cancel = self.cancel.child_token();
        let (client, incoming) = Client::spawn_raw(cfg, &self.tracker, cancel.clone());
        let (inbox_tx, inbox_rx) = oneshot::channel();
        let (flush_tx, flush_rx) = mpsc::channel(1);
        let released = Arc::new(Notify::new());
        self.tracker.spawn(receiver::run(
            ReceiverParts {
                local: ad.address.clone(),
                client: client.clone(),
                outbox: self.outbox.clone(),
                permits: self.permits.clone(),
                wanted: self.wanted.clone(),
                stock: self.stock.clone(),
                incoming,
                inbox: inbox_rx,
                released: released.clone(),
                cancel: cancel.clone(),
            },
            flush_rx,
        ));
        self.tracker.spawn(resend(
            client.clone(),
            self.outbox.clone(),
            released,
            self.opts.ack_timeout,
            cancel.clone(),
            self.binding.stats().clone(),
        ));
        *bound = Some(Bound {
            client: client.clone(),
            commands,
            inbox_tx: Some(inbox_tx),
            flush_tx,
            cancel,
        });
        Ok(Some(client))
    }

    /// Wait for the first READY (bounded); refuse when the daemon keeps refusing the name.
    async fn wait_registered(&self, client: &Client, address: &Address) -> Result<()> {
        let mut rx = client.watch();
        let deadline = Instant::now() + self.opts.register_timeout;
        let mut refused: Option<String> = None;
        let mut tls_failed: Option<String> = None;
        loop {
            let state = rx.borrow_and_update().clone();
            match state {
                ConnectionState::Connected { node, .. } => {
                    if node != self.opts.node {
                        tracing::error!(daemon = %node, configured = %self.opts.node,
                            "native: the daemon's name differs from this transport's node; addresses will not match the stamps (set ?node={node})");
                    }
                    return Ok(());
                }
                ConnectionState::Refused { reason } => refused = Some(reason),
                ConnectionState::TlsFailed { reason } => {
                    tls_failed = Some(reason);
                    break;
                }
                ConnectionState::Closed => return Err(Error::Closed),
                ConnectionState::Disconnected => {}
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        if let Some(reason) = tls_failed {
            // The client keeps retrying (a certificate may be fixed on either side), but a
            // TLS failure is a configuration problem the caller must see now.
            self.unbind();
            return Err(Error::transport_msg(
                "native",
                format!(
                    "{}: TLS handshake with the daemon failed: {reason}",
                    self.opts.url
                ),
                false,
            ));
        }
        match refused {
            Some(reason) => {
                tracing::warn!(%address, %reason, "native: REGISTER refused until the register timeout");
                self.unbind();
                Err(Error::AddressInUse(address.to_string()))
            }
            None => {
                tracing::info!(%address, url = %self.opts.url, "native: daemon not reachable yet; the client keeps trying");
                Ok(())
            }
        }
    }

    /// Undo a first `advertise` that failed: stop its client, forget the address.
    fn unbind(&self) {
        let mut bound = lock(&self.bound);
        if let Some(b) = bound.take() {
            b.cancel.cancel();
        }
        self.binding.unbind();
    }

    /// The synchronous part of a send: serialize, and for an at-least-once message take a
    /// permit and keep the copy when one is free. Consumes the message, so that the future
    /// awaiting the rest ([`NativeTransport::enqueue`]) stays small.
    fn prepare(&self, msg: Message, origin: Option<&Address>) -> Result<Step> {
        let line = Encoded::new(&msg, origin).map_err(ClientError::from)?;
        let unicast = !matches!(msg.to, Destination::Broadcast(_));
        let stock = msg
            .to
            .service_name()
            .is_some_and(|s| lock(&self.stock).contains(s));
        if !unicast || msg.mode == DeliveryMode::AtMostOnce || stock {
            return Ok(Step::Once(line.plain()));
        }
        let (key, id) = (destination_key(&msg.to), msg.id().clone());
        if msg.correlation.is_some() && lock(&self.outbox).held_for(key) >= outbox::REPLY_QUOTA {
            let n = self.unkept_replies.fetch_add(1, Ordering::Relaxed);
            if n % 1000 == 0 {
                tracing::warn!(to = %key, quota = outbox::REPLY_QUOTA, unkept = n + 1, "native: replies to a destination that does not acknowledge are over quota; written once, not kept");
            }
            return Ok(Step::Once(line.plain()));
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(Step::Kept(self.keep(key, line, id, permit))),
            Err(TryAcquireError::Closed) => Err(Error::Closed),
            Err(TryAcquireError::NoPermits) => Ok(Step::Wait {
                key: key.to_owned(),
                line,
                id,
            }),
        }
    }

    /// Keep a copy in the outbox; the line to write now, if its stream is open.
    fn keep(
        &self,
        key: &str,
        line: Encoded,
        id: MessageId,
        permit: OwnedSemaphorePermit,
    ) -> Option<Bytes> {
        lock(&self.outbox).push(key, line, id, Some(permit), Instant::now())
    }

    /// The rest of a send: write what [`NativeTransport::prepare`] made, after waiting for a
    /// permit if none was free.
    async fn enqueue(&self, client: &Client, step: Step) -> Result<()> {
        let line = match step {
            Step::Once(line) => return write_once(client, line).await,
            Step::Kept(line) => line,
            // The slow path, boxed so that the fast one stays small.
            Step::Wait { key, line, id } => {
                let permit = Box::pin(self.wait_permit()).await?;
                self.keep(&key, line, id, permit)
            }
        };
        // None: kept in a held stream, written when its predecessor drains.
        let Some(line) = line else { return Ok(()) };
        match client.send_raw(line).await {
            Ok(()) | Err(ClientError::NotConnected) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Wait up to `send_timeout` for an outbox permit ([`Error::Backpressure`] after).
    async fn wait_permit(&self) -> Result<OwnedSemaphorePermit> {
        self.wanted.notify_one();
        tokio::time::timeout(
            self.opts.send_timeout,
            self.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| {
            Error::Backpressure(format!(
                "{} at-least-once messages await acknowledgement (queue_bound) and none was acknowledged within {:?}",
                self.opts.queue_bound, self.opts.send_timeout
            ))
        })?
        .map_err(|_| Error::Closed)
    }
}

/// What is left of a send after [`NativeTransport::prepare`].
enum Step {
    /// Write once, keep nothing (at-most-once, a broadcast, a stock peer).
    Once(Bytes),
    /// Kept in the outbox; the line to write now, if its stream is open.
    Kept(Option<Bytes>),
    /// No outbox permit was free: wait for one, then keep the copy.
    Wait {
        key: String,
        line: Encoded,
        id: MessageId,
    },
}

async fn write_once(client: &Client, line: Bytes) -> Result<()> {
    match client.send_raw(line).await {
        Ok(()) => Ok(()),
        Err(ClientError::NotConnected) => {
            tracing::debug!("native: not connected, at-most-once message dropped");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Resend everything after each registration, and what waits too long for its ack; write
/// the lines of streams that open (`released`).
async fn resend(
    client: Client,
    outbox: Arc<Mutex<Outbox>>,
    released: Arc<Notify>,
    ack_timeout: Duration,
    cancel: CancellationToken,
    stats: Arc<comms_core::TransportStats>,
) {
    let mut state = client.watch();
    let mut session = 0u64;
    let mut tick = tokio::time::interval((ack_timeout / 4).max(Duration::from_millis(20)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let lines = tokio::select! {
            _ = cancel.cancelled() => break,
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = state.borrow_and_update().clone();
                match now {
                    ConnectionState::Connected { session: s, .. } if s != session => {
                        session = s;
                        let lines = lock(&outbox).everything(Instant::now());
                        stats.resent(lines.len() as u64);
                        lines
                    }
                    _ => continue,
                }
            }
            _ = released.notified() => lock(&outbox).take_released(),
            _ = tick.tick() => {
                if !client.state().is_connected() {
                    continue;
                }
                let lines = lock(&outbox).due(Instant::now(), ack_timeout);
                stats.resent(lines.len() as u64);
                lines
            }
        };
        if !lines.is_empty() {
            tracing::debug!(
                count = lines.len(),
                "native: writing kept messages (resend, or a stream that opened)"
            );
        }
        for line in lines {
            if client.send_raw(line).await.is_err() {
                break;
            }
        }
    }
}

#[async_trait]
impl Transport for NativeTransport {
    async fn advertise(&self, ad: &Advertisement) -> Result<()> {
        if let Some(client) = self.bind(ad)? {
            self.wait_registered(&client, &ad.address).await?;
        }
        let msg = ad.to_message()?;
        let client = self.client()?;
        let step = self.prepare(msg, None)?;
        self.enqueue(&client, step).await
    }

    async fn listen(&self) -> Result<Inbox> {
        let inbox_tx = {
            let mut bound = lock(&self.bound);
            self.binding.start_listening()?;
            bound.as_mut().and_then(|b| b.inbox_tx.take())
        };
        let (tx, rx) = mpsc::channel(self.opts.prefetch.max(1));
        if let Some(inbox_tx) = inbox_tx {
            let _ = inbox_tx.send(tx);
        }
        Ok(Inbox::new(rx))
    }

    // Written out (not `async fn`): async-trait would keep two copies of the message in the
    // boxed future, over the 1 KiB where the allocator's fast path ends (hot path).
    fn send<'life0, 'async_trait>(
        &'life0 self,
        msg: Message,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            // The daemon stamps the sender: `from` is not written.
            self.binding
                .check_message(&msg, self.opts.max_message_size)?;
            let sent = async {
                let client = self.client()?;
                let step = self.prepare(msg, None)?;
                self.enqueue(&client, step).await
            };
            self.binding.counted(sent.await)
        })
    }

    async fn forward(&self, delivery: Delivery, to: Destination) -> Result<()> {
        let hop_limit = self.opts.hop_limit;
        self.binding
            .forward(delivery, to, hop_limit, |fwd| async move {
                let sent = async {
                    let origin = fwd.from().cloned();
                    let client = self.client()?;
                    let step = self.prepare(fwd, origin.as_ref())?;
                    self.enqueue(&client, step).await
                };
                self.binding.counted(sent.await)
            })
            .await
    }

    async fn close(&self) -> Result<()> {
        if !self.binding.close() {
            return Ok(());
        }
        let deadline = Instant::now() + self.opts.close_timeout;
        let mut left = self.unacknowledged();
        while left > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            left = self.unacknowledged();
        }
        // Acknowledge what our handlers finished before leaving, or the senders keep those
        // messages (and their own close waits for acks that never come).
        let flush = lock(&self.bound).as_ref().map(|b| b.flush_tx.clone());
        if let Some(flush) = flush {
            let (done, written) = oneshot::channel();
            if flush.send(done).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(2), written).await;
            }
        }
        let client = lock(&self.bound).as_ref().map(|b| b.client.clone());
        if let Some(client) = client {
            if let Err(e) = client.close(Duration::from_secs(5)).await {
                tracing::debug!(error = %e, "native: UNREGISTER not written");
            }
        }
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
        if left > 0 {
            return Err(Error::transport_msg(
                "native",
                format!(
                    "closed with {left} at-least-once messages unacknowledged after {:?}",
                    self.opts.close_timeout
                ),
                false,
            ));
        }
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        capabilities(&self.opts)
    }

    fn node(&self) -> String {
        self.opts.node.clone()
    }

    fn local_address(&self) -> Option<Address> {
        self.binding.address()
    }

    fn stats(&self) -> Option<std::sync::Arc<comms_core::TransportStats>> {
        Some(self.binding.stats().clone())
    }

    /// Attempt counts and dead letters (the default place: files in `<state>/dead-letters`,
    /// on this host) live in [`NativeOptions::state_dir`].
    fn state_dir(&self) -> Option<std::path::PathBuf> {
        self.opts.state_dir.clone()
    }

    async fn sniff(&self) -> Result<Inbox> {
        self.binding.check_open()?;
        sniff::open(&self.opts, &self.tracker, self.cancel.child_token()).await
    }
}

/// The capabilities of native transports made with `opts`.
pub fn capabilities(opts: &NativeOptions) -> Capabilities {
    let mut caps = Capabilities::new("native");
    caps.max_message_size = opts.max_message_size;
    caps.queue_bound = opts.queue_bound;
    caps.at_most_once = true;
    caps.namespaces = false;
    caps.survives_restart = true;
    caps.hop_limit = opts.hop_limit;
    // The daemon stamps every origin and refuses a second live registration of a name.
    caps.exclusive_names = true;
    caps
}

impl Drop for NativeTransport {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
