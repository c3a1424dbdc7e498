//! The contract every backend implements: [`Transport`], [`Delivery`] and [`Inbox`].

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::address::{Address, Destination};
use crate::advertisement::Advertisement;
use crate::capabilities::Capabilities;
use crate::dead_letter::{DeadLetters, FileDeadLetters};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::receipt::Receipt;
use crate::stats::TransportStats;

/// How every backend is constructed: `B::connect(&config).await` (the URL and settings of a
/// [`Config`](crate::Config)) or `B::connect_url(url).await` (a URL, every other setting at its
/// default), for `B` any of `MemoryTransport`, `NativeTransport`, `DatagramTransport`,
/// `RabbitTransport`, `KafkaTransport`. `comms::connect` picks the backend from the URL's scheme
/// and calls the same function. A URL of another backend's scheme fails with [`Error::Config`];
/// each backend's `with_options` stays for options built in code.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> comms_core::Result<()> {
/// use comms_core::Connect;
/// use comms_memory::MemoryTransport;
/// let transport = MemoryTransport::connect_url("memory://connect_doc?node=n1").await?;
/// assert!(MemoryTransport::connect_url("cd:///run/commsd.sock").await.is_err());
/// # drop(transport); Ok(()) }
/// ```
#[async_trait]
pub trait Connect: Transport + Sized {
    /// Connect with `config`'s URL and settings (`[transport]` and the backend's own section).
    async fn connect(config: &crate::Config) -> Result<Self>;

    /// Connect to `url` with every other setting at its default.
    async fn connect_url(url: &str) -> Result<Self> {
        Self::connect(&crate::Config::from_url(url)?).await
    }
}

/// Default number of forwards before a message is dropped as a loop.
pub const DEFAULT_HOP_LIMIT: u8 = 8;

/// A connection to one backend, owned by one endpoint.
///
/// The first [`Transport::advertise`] binds the transport's identity (its [`Address`]); later
/// calls are heartbeats and may change the accepted commands but not the address.
/// Object safe: binaries hold any backend as `Box<dyn Transport>` or `Arc<dyn Transport>`.
///
/// # Sniffing
/// [`Transport::sniff`] (a provided method: backends opt in) observes the **whole transport**,
/// not one endpoint: it yields a copy of every message the backend routes, whoever sends or
/// receives it, decoded into a [`Message`]. Its contract, on every backend that offers it:
/// - copies only: every delivery's acker is [`NoAck`]; a sniffer never consumes, acknowledges
///   or delays anything meant for a real receiver, and needs no `advertise` first;
/// - bounded: a sniffer that falls behind **loses copies** (counted and logged by the
///   backend), it never slows real traffic;
/// - what "every message" covers is the backend's routing point (the memory hub, the native
///   daemon's router, the RabbitMQ topic exchange of the namespace); see each backend's docs;
/// - the inbox ends when the transport closes or the backend connection is lost.
///
/// Backends without a way to observe all traffic return [`Error::Unsupported`].
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Declare who this endpoint is and the commands it accepts, and publish the advertisement
    /// (an at-most-once `ADVERTISE` broadcast, see [`Advertisement::to_message`]).
    async fn advertise(&self, ad: &Advertisement) -> Result<()>;

    /// Start receiving. Called once; the inbox yields deliveries until the transport closes.
    async fn listen(&self) -> Result<Inbox>;

    /// Hand a message over. `Ok` means the transport took responsibility for it (see the
    /// delivery guarantees in the crate docs). `from` is stamped with this transport's address.
    async fn send(&self, msg: Message) -> Result<()>;

    /// Hand a message over without waiting for its confirmation (pipelining; see
    /// [`crate::receipt`]). Returns once the transport has accepted the message into its
    /// bounded in-flight window, waiting while the window is full (backpressure, then
    /// [`Error::Backpressure`]); messages submitted one after the other keep their order per
    /// (sender, destination) pair, as sends do. The [`Receipt`] resolves with what `send` would
    /// have returned; an `Err` from `submit` itself means nothing was sent.
    ///
    /// The default waits for `send` (a transport whose `send` returns once the message is
    /// accepted, such as the native and memory ones); broker backends override it to keep
    /// many confirms outstanding.
    async fn submit(&self, msg: Message) -> Result<Receipt> {
        self.send(msg).await?;
        Ok(Receipt::ready(Ok(())))
    }

    /// Send a received message one hop further: `from` and `id` kept, `hops` incremented; the
    /// original delivery is acknowledged once the forward is accepted. Past the hop limit the
    /// message is dropped (acknowledged) and [`Error::HopLimit`] returned.
    async fn forward(&self, delivery: Delivery, to: Destination) -> Result<()>;

    /// Flush what was accepted, stop, release resources. Nothing accepted is lost.
    async fn close(&self) -> Result<()>;

    /// What this transport can do.
    fn capabilities(&self) -> Capabilities;

    /// The node name this transport's endpoints get (a host or daemon name).
    fn node(&self) -> String;

    /// The bound address, once advertised.
    fn local_address(&self) -> Option<Address>;

    /// Copies of every message on the transport (see [Sniffing](Transport#sniffing)).
    /// Deliveries carry [`NoAck`]; the inbox is bounded and a slow sniffer loses copies.
    /// The default: [`Error::Unsupported`].
    async fn sniff(&self) -> Result<Inbox> {
        Err(Error::Unsupported {
            backend: self.capabilities().backend,
            operation: "sniff",
        })
    }

    /// This transport's counters (sent, acknowledged, failed, resent, dead-lettered), shared
    /// by its clones and its endpoint; `None` for a transport that keeps none.
    fn stats(&self) -> Option<Arc<TransportStats>> {
        None
    }

    /// The local state directory of this transport ([`crate::state`]): endpoints keep the
    /// attempt counts of messages being retried there, so that a restarted receiver goes on
    /// counting. `None` (the default, and the memory backend's): counts stay in memory.
    fn state_dir(&self) -> Option<PathBuf> {
        None
    }

    /// Where messages given up by a handler go ([`crate::dead_letter`]). The default: one
    /// file per letter in `<state dir>/dead-letters` on this host ([`FileDeadLetters`]);
    /// broker backends override it with a queue or topic of the broker.
    fn dead_letters(&self) -> Result<Arc<dyn DeadLetters>> {
        match self.state_dir() {
            Some(dir) => Ok(Arc::new(FileDeadLetters::new(
                crate::state::dead_letter_dir(&dir),
            ))),
            None => Err(Error::Unsupported {
                backend: self.capabilities().backend,
                operation: "dead letters without a state directory",
            }),
        }
    }
}

/// `Box<dyn Transport>` and `Arc<dyn Transport>` are transports too.
macro_rules! forward_transport {
    ($($wrapper:ident),*) => {$(
        #[async_trait]
        impl<T: Transport + ?Sized> Transport for $wrapper<T> {
            async fn advertise(&self, ad: &Advertisement) -> Result<()> {
                (**self).advertise(ad).await
            }
            async fn listen(&self) -> Result<Inbox> {
                (**self).listen().await
            }
            async fn send(&self, msg: Message) -> Result<()> {
                (**self).send(msg).await
            }
            async fn submit(&self, msg: Message) -> Result<Receipt> {
                (**self).submit(msg).await
            }
            async fn forward(&self, delivery: Delivery, to: Destination) -> Result<()> {
                (**self).forward(delivery, to).await
            }
            async fn close(&self) -> Result<()> {
                (**self).close().await
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            fn node(&self) -> String {
                (**self).node()
            }
            fn local_address(&self) -> Option<Address> {
                (**self).local_address()
            }
            async fn sniff(&self) -> Result<Inbox> {
                (**self).sniff().await
            }
            fn stats(&self) -> Option<Arc<TransportStats>> {
                (**self).stats()
            }
            fn state_dir(&self) -> Option<PathBuf> {
                (**self).state_dir()
            }
            fn dead_letters(&self) -> Result<Arc<dyn DeadLetters>> {
                (**self).dead_letters()
            }
        }
    )*};
}

forward_transport!(Box, Arc);

/// Moved to [`crate::backend`]; this path stays.
pub use crate::backend::prepare_forward;

/// How a backend settles a delivery. Dropping an acker without settling it must behave as
/// `nack(requeue = true)`: the message is delivered again.
#[async_trait]
pub trait Acker: Send + Sync + 'static {
    /// The handler is done with it: never deliver it again.
    async fn ack(self: Box<Self>) -> Result<()>;
    /// The handler failed: deliver it again (`requeue`) or drop it.
    async fn nack(self: Box<Self>, requeue: bool) -> Result<()>;
}

/// An acker for deliveries that need no settling (at-most-once).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAck;

#[async_trait]
impl Acker for NoAck {
    async fn ack(self: Box<Self>) -> Result<()> {
        Ok(())
    }
    async fn nack(self: Box<Self>, _requeue: bool) -> Result<()> {
        Ok(())
    }
}

/// A received message and the means to settle it.
///
/// The message is shared ([`Arc`]): the endpoint hands it to the handler, and a backend whose
/// acker must keep it (to put it back on a `nack`) keeps it too, without copying it.
pub struct Delivery {
    message: Arc<Message>,
    redelivered: bool,
    acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// A delivery (used by backends).
    pub fn new(message: Message, redelivered: bool, acker: Box<dyn Acker>) -> Self {
        Self::shared(Arc::new(message), redelivered, acker)
    }

    /// A delivery of a message the acker shares (used by backends that keep it for a `nack`).
    pub fn shared(message: Arc<Message>, redelivered: bool, acker: Box<dyn Acker>) -> Self {
        Self {
            message,
            redelivered,
            acker,
        }
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The message, shared (a pointer copy).
    pub fn shared_message(&self) -> Arc<Message> {
        self.message.clone()
    }

    /// True when the backend knows this was delivered before (a hint: dedup uses the id).
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// Split into message and acker (used by `forward` implementations). Copies the message
    /// only when something else still shares it.
    pub fn into_parts(self) -> (Message, Box<dyn Acker>) {
        (Arc::unwrap_or_clone(self.message), self.acker)
    }

    /// Settle: done.
    pub async fn ack(self) -> Result<()> {
        self.acker.ack().await
    }

    /// Settle: failed; deliver again when `requeue`.
    pub async fn nack(self, requeue: bool) -> Result<()> {
        self.acker.nack(requeue).await
    }
}

/// The stream of deliveries for one listening transport. Bounded: the backend stops taking
/// messages off its queue while the inbox is full (that bound is the prefetch).
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Delivery>,
}

impl Inbox {
    /// An inbox over a bounded channel (used by backends).
    pub fn new(rx: mpsc::Receiver<Delivery>) -> Self {
        Self { rx }
    }

    /// The next delivery; `None` once the transport is closed.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// Wait for a delivery, then take every delivery waiting, up to `limit`, into `buf`: one
    /// wake-up for a burst. Returns how many were taken; 0 once the transport is closed (or
    /// for a `limit` of 0). Cancel-safe: nothing is lost if the future is dropped.
    pub async fn recv_many(&mut self, buf: &mut Vec<Delivery>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }
}

impl futures_core::Stream for Inbox {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.rx.poll_recv(cx)
    }
}
