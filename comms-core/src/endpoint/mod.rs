//! [`Endpoint`]: what every service uses, written once above [`Transport`].
//!
//! - **Handlers by command**, plain or typed ([`TypedMessage`]); typed and declared commands are
//!   validated before the handler runs, and failures are answered `INVALID` naming the field.
//! - **Error replies**: `UNKNOWN command=...` for a command with no handler, `INVALID` for a
//!   message that fails validation, `ERROR` when a handler fails. Error replies and replies
//!   (messages with a correlation) are never answered with an error, so no reply loops.
//! - **Request/reply**: [`Endpoint::request`] correlates the reply by message id and fails with
//!   [`Error::Timeout`] (distinct) or [`Error::Remote`] for an error reply.
//! - **Dedup window**: (id, hops) of completed messages (bounded, [`DEFAULT_DEDUP_CAPACITY`]);
//!   a redelivered message is acknowledged without running its handler again.
//! - **Order**: messages from one sender are handled one at a time, in arrival order (one lane
//!   per sender); different senders are handled concurrently (up to
//!   [`EndpointBuilder::lanes`] handlers at once). Replies to pending requests bypass the lanes,
//!   so a handler may itself make requests.
//! - **Isolation**: a slow or hung handler holds back only its own sender's later messages: the
//!   reader never waits for a lane (bounded by [`MAX_HELD`] held deliveries and the backend's
//!   prefetch). A handler that **panics** is contained: its message fails like
//!   [`HandlerError::Failed`] (a request gets an `ERROR` reply naming the panic), and every lane
//!   keeps serving. Should a dispatcher task end anyway, the endpoint logs an error and closes
//!   itself (advertisement withdrawn): it is never advertised while deaf.
//! - **Timeouts**: a handler running longer than its timeout ([`DEFAULT_HANDLER_TIMEOUT`], 60 s,
//!   set per endpoint with [`EndpointBuilder::handler_timeout`] and per command with
//!   [`EndpointBuilder::command_timeout`]) is dropped and its message fails the same way
//!   (`ERROR`, reason `handler timed out after N ms`). Long work belongs in a task the handler
//!   spawns.
//! - **Retries and dead letters**: a handler that asks for a retry, panics or times out has
//!   failed an attempt; it runs again after the [`RetryPolicy`](crate::RetryPolicy)'s backoff
//!   ([`EndpointBuilder::retry`]), in place (its sender's later messages wait, others do
//!   not), and after the last attempt the message goes to the transport's durable dead-letter
//!   place ([`crate::dead_letter`]) with the reason and the count; a request gets `ERROR`.
//!   Attempt counts outlive a restart where the transport has a state directory.
//! - **Batch handlers** ([`EndpointBuilder::handle_batch`]): a command may be handled a batch
//!   of messages per call (what has arrived, up to [`Batching::max_messages`]); each message
//!   is still settled on its own result, and one that fails, panics or times out takes the
//!   failure path alone (see the `batch` module).
//! - **Heartbeat**: the advertisement is repeated every TTL/3; an attached [`Directory`] is fed
//!   with every `ADVERTISE` received and swept for expiry.
//! - **Shutdown**: [`Endpoint::close`] withdraws the advertisement, stops taking deliveries (those
//!   not yet handled go back to the backend for redelivery), waits for running handlers, closes
//!   the transport. Dropping every handle without `close` stops abruptly (no withdraw), as a crash
//!   would.

mod attempts;
mod batch;
mod builder;
mod dedup;
mod dispatch;
mod handler;
mod process;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

pub use attempts::STALE_AFTER;
pub use builder::{EndpointBuilder, DEFAULT_HANDLER_TIMEOUT};
pub use dedup::{DedupWindow, Digest, DEFAULT_DEDUP_CAPACITY};
pub use dispatch::MAX_HELD;
pub use handler::{Batching, HandlerError, HandlerResult, Outcome, Request};

use crate::address::{Address, Destination};
use crate::advertisement::Advertisement;
use crate::directory::Directory;
use crate::error::{Error, Result};
use crate::message::{commands, Message, MessageId};
use crate::receipt::Receipt;
use crate::schema::TypedMessage;
use crate::transport::Transport;

use handler::Handler;

/// Sends `msg` through the endpoint's transport inside a send span ([`crate::trace`]).
pub(crate) async fn send_traced(inner: &Inner, mut msg: Message) -> Result<()> {
    let span = crate::trace::start_send(&mut msg);
    let sent = inner.transport.send(msg).await;
    crate::trace::end(span, sent.as_ref().err().map(ToString::to_string));
    sent
}

/// A service endpoint: cheap to clone; all clones share one connection and one dispatcher.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
    // Cancels the dispatcher when the last user handle goes (an abrupt stop, like a crash).
    _guard: Arc<DropGuard>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("address", &self.inner.address)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) transport: Arc<dyn Transport>,
    /// The transport's counters ([`Transport::stats`]), read once.
    pub(crate) stats: Option<Arc<crate::stats::TransportStats>>,
    pub(crate) address: Address,
    pub(crate) ad: Mutex<Advertisement>,
    pub(crate) handlers: HashMap<String, Handler>,
    pub(crate) pending: Mutex<HashMap<MessageId, oneshot::Sender<Message>>>,
    pub(crate) dedup: Mutex<DedupWindow>,
    pub(crate) attempts: attempts::Attempts,
    pub(crate) retry: crate::retry::RetryPolicy,
    /// Where given-up messages go ([`Transport::dead_letters`], resolved at start).
    pub(crate) dead_letters: Result<Arc<dyn crate::dead_letter::DeadLetters>>,
    pub(crate) directory: Option<Directory>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) lanes: usize,
    pub(crate) handler_timeout: Duration,
    /// A dispatcher task ended unexpectedly (reported once; the endpoint closes itself).
    pub(crate) failed: AtomicBool,
    pub(crate) closed_tx: watch::Sender<bool>,
    pub(crate) handle_guard: Mutex<Weak<DropGuard>>,
}

impl Endpoint {
    /// Start building an endpoint for `service` over `transport`: any transport — a backend's
    /// own type, `comms::connect`'s `Box<dyn Transport>`, or a shared `Arc<dyn Transport>`
    /// (taken as it is, not wrapped again).
    pub fn builder<T: Transport>(transport: T, service: impl Into<String>) -> EndpointBuilder {
        let any: &dyn std::any::Any = &transport;
        let transport: Arc<dyn Transport> = match any.downcast_ref::<Arc<dyn Transport>>() {
            Some(shared) => shared.clone(),
            None => Arc::new(transport),
        };
        EndpointBuilder::new(transport, service.into())
    }

    /// This endpoint's address.
    pub fn address(&self) -> &Address {
        &self.inner.address
    }

    /// The transport underneath.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// The transport's counters (sent, acknowledged, failed, resent, dead-lettered), for
    /// metrics; `None` when the transport keeps none.
    pub fn stats(&self) -> Option<crate::stats::TransportCounts> {
        self.inner.stats.as_ref().map(|s| s.snapshot())
    }

    /// Where this endpoint puts the messages it gives up ([`crate::dead_letter`]): to list,
    /// replay or purge them. An error when the transport has no place (no state directory).
    pub fn dead_letters(&self) -> Result<Arc<dyn crate::dead_letter::DeadLetters>> {
        match &self.inner.dead_letters {
            Ok(place) => Ok(place.clone()),
            Err(e) => Err(Error::Config(format!("no dead-letter place: {e}"))),
        }
    }

    /// The attached directory, if any.
    pub fn directory(&self) -> Option<&Directory> {
        self.inner.directory.as_ref()
    }

    /// The current advertisement.
    pub fn advertisement(&self) -> Advertisement {
        lock(&self.inner.ad).clone()
    }

    /// Send a message (at-least-once unless the message says otherwise).
    pub async fn send(&self, msg: Message) -> Result<()> {
        if self.inner.cancel.is_cancelled() {
            return Err(Error::Closed);
        }
        send_traced(&self.inner, msg).await
    }

    /// Send a message without waiting for its confirmation: returns once the transport
    /// accepted it into its bounded in-flight window; the [`Receipt`] resolves with what
    /// [`Endpoint::send`] would have returned. Order per destination is call order. See
    /// [`crate::receipt`] for an example keeping many messages in flight from one task.
    pub async fn submit(&self, mut msg: Message) -> Result<Receipt> {
        if self.inner.cancel.is_cancelled() {
            return Err(Error::Closed);
        }
        // The span covers the hand-over; the receipt's outcome is the transport's to count.
        let span = crate::trace::start_send(&mut msg);
        let submitted = self.inner.transport.submit(msg).await;
        crate::trace::end(span, submitted.as_ref().err().map(ToString::to_string));
        submitted
    }

    /// Send a typed message to `to`, validated against its schema first.
    pub async fn send_typed<T: TypedMessage>(
        &self,
        to: impl Into<Destination>,
        value: &T,
    ) -> Result<()> {
        self.send(value.to_message(to)?).await
    }

    /// Send `msg` and wait for the reply correlated with it.
    ///
    /// Fails with [`Error::Timeout`] when no reply arrives within `timeout` (sending included),
    /// and with [`Error::Remote`] when the reply is `UNKNOWN`, `INVALID`, `ERROR` or
    /// `SERVICE_UNAVAILABLE`.
    pub async fn request(&self, msg: Message, timeout: Duration) -> Result<Message> {
        let (tx, rx) = oneshot::channel();
        let id = msg.id.clone();
        lock(&self.inner.pending).insert(id.clone(), tx);
        let _cleanup = PendingGuard {
            inner: &self.inner,
            id,
        };
        let exchange = async {
            self.send(msg).await?;
            rx.await.map_err(|_| Error::Closed)
        };
        let reply = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Error::Timeout(timeout))??;
        if commands::is_error_reply(&reply.command) {
            return Err(remote_error(reply));
        }
        Ok(reply)
    }

    /// A typed request: send `value`, wait for the reply.
    pub async fn request_typed<T: TypedMessage>(
        &self,
        to: impl Into<Destination>,
        value: &T,
        timeout: Duration,
    ) -> Result<Message> {
        self.request(value.to_message(to)?, timeout).await
    }

    /// Change facts or labels and re-advertise now.
    pub async fn update_advertisement(
        &self,
        change: impl FnOnce(&mut Advertisement),
    ) -> Result<()> {
        let ad = {
            let mut ad = lock(&self.inner.ad);
            change(&mut ad);
            ad.address = self.inner.address.clone();
            ad.clone()
        };
        self.inner.transport.advertise(&ad).await
    }

    /// Graceful stop: withdraw the advertisement, stop taking deliveries (unhandled ones go back
    /// for redelivery), wait for running handlers, close the transport (which flushes).
    /// Do not call from inside a handler (it waits for handlers): use [`Endpoint::stop`].
    pub async fn close(&self) -> Result<()> {
        dispatch::close(&self.inner).await
    }

    /// Begin a graceful stop without waiting for it (usable from a handler).
    /// [`Endpoint::closed`] resolves when it is over.
    pub fn stop(&self) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = dispatch::close(&inner).await {
                tracing::warn!(error = %e, "endpoint stop");
            }
        });
    }

    /// Resolves once the endpoint is closed.
    pub async fn closed(&self) {
        let mut rx = self.inner.closed_tx.subscribe();
        let _ = rx.wait_for(|closed| *closed).await;
    }

    pub(crate) fn from_parts(inner: Arc<Inner>, guard: Arc<DropGuard>) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }

    /// A handle for a dispatcher task, if any user handle is still alive.
    pub(crate) fn upgrade(inner: &Arc<Inner>) -> Option<Endpoint> {
        let guard = lock(&inner.handle_guard).upgrade()?;
        Some(Self::from_parts(inner.clone(), guard))
    }
}

struct PendingGuard<'a> {
    inner: &'a Inner,
    id: MessageId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.inner.pending).remove(&self.id);
    }
}

/// Turn an error reply into [`Error::Remote`] with a readable reason.
pub(crate) fn remote_error(reply: Message) -> Error {
    let p = |k: &str| reply.param(k).unwrap_or("?").to_owned();
    let reason = match reply.command.as_str() {
        commands::UNKNOWN => format!("no handler for command {}", p("command")),
        commands::INVALID => format!(
            "{} rejected: field `{}`: {}",
            p("command"),
            p("field"),
            p("reason")
        ),
        commands::SERVICE_UNAVAILABLE => format!(
            "no live instance of {} took {} in time",
            p("destination_service"),
            p("unsent_command")
        ),
        _ => format!("{} failed: {}", p("command"), p("reason")),
    };
    Error::Remote {
        command: reply.command.clone(),
        reason,
        reply: Box::new(reply),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
