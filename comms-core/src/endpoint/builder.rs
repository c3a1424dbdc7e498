//! [`EndpointBuilder`]: handlers, advertisement fields, options; `start` connects.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::address::Address;
use crate::advertisement::{Advertisement, DEFAULT_TTL};
use crate::directory::Directory;
use crate::error::{Error, Result};
use crate::message::commands;
use crate::name::validate_command;
use crate::retry::RetryPolicy;
use crate::schema::{Schema, TypedMessage};
use crate::transport::Transport;

use super::attempts::Attempts;
use super::dedup::{DedupWindow, DEFAULT_DEDUP_CAPACITY};
use super::handler::{Batching, Handler, HandlerResult, Request};
use super::{dispatch, Endpoint, Inner};

/// Default [`EndpointBuilder::handler_timeout`].
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds an [`Endpoint`].
pub struct EndpointBuilder {
    transport: Arc<dyn Transport>,
    service: String,
    node: Option<String>,
    ad_groups: Vec<String>,
    labels: Vec<(String, String)>,
    facts: Vec<(String, String)>,
    ttl: Duration,
    handlers: HashMap<String, Handler>,
    directory: Option<Directory>,
    dedup_capacity: usize,
    lanes: usize,
    retry: RetryPolicy,
    handler_timeout: Duration,
    command_timeouts: Vec<(String, Duration)>,
    error: Option<Error>,
}

impl std::fmt::Debug for EndpointBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointBuilder")
            .field("service", &self.service)
            .field("commands", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl EndpointBuilder {
    pub(crate) fn new(transport: Arc<dyn Transport>, service: String) -> Self {
        Self {
            transport,
            service,
            node: None,
            ad_groups: Vec::new(),
            labels: Vec::new(),
            facts: Vec::new(),
            ttl: DEFAULT_TTL,
            handlers: HashMap::new(),
            directory: None,
            dedup_capacity: DEFAULT_DEDUP_CAPACITY,
            lanes: 16,
            retry: RetryPolicy::default(),
            handler_timeout: DEFAULT_HANDLER_TIMEOUT,
            command_timeouts: Vec::new(),
            error: None,
        }
    }

    /// Node name (default: the transport's [`Transport::node`]).
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Join a group.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.ad_groups.push(group.into());
        self
    }

    /// Add a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Add a fact.
    pub fn fact(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.facts.push((key.into(), value.into()));
        self
    }

    /// Advertisement TTL (heartbeats every TTL/3). Default 10 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Remember this many completed ids for deduplication.
    pub fn dedup_capacity(mut self, n: usize) -> Self {
        self.dedup_capacity = n;
        self
    }

    /// How many handlers run at once (each sender has its own lane, and order is kept per
    /// sender). Default 16.
    pub fn lanes(mut self, n: usize) -> Self {
        self.lanes = n.max(1);
        self
    }

    /// How a failing handler is tried again before its message is dead-lettered (default
    /// [`RetryPolicy::default`]: 5 attempts, waits from 200 ms doubling, at most 30 s).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self.retry.max_attempts = self.retry.max_attempts.max(1);
        self
    }

    /// Dead-letter a message after this many failed attempts (the first run included); the
    /// backoff stays [`EndpointBuilder::retry`]'s.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.retry.max_attempts = n.max(1);
        self
    }

    /// How long a handler may run before it is dropped and its message fails (a request gets
    /// an `ERROR` reply naming the timeout). Default [`DEFAULT_HANDLER_TIMEOUT`] (60 s).
    /// A handler with long work to do hands it to a task of its own and returns.
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self
    }

    /// Override [`EndpointBuilder::handler_timeout`] for the handler of `command` (registered
    /// before or after this call; `start` fails when `command` has no handler).
    pub fn command_timeout(mut self, command: &str, timeout: Duration) -> Self {
        self.command_timeouts.push((command.to_owned(), timeout));
        self
    }

    /// Feed `directory` with the advertisements this endpoint receives (declares `ADVERTISE`).
    pub fn directory(mut self, directory: Directory) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Handle `command` with `f`.
    pub fn handle<F, Fut>(self, command: &str, f: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.insert(command, Handler::plain(None, f))
    }

    /// Handle a command whose parameters are declared by `schema` (validated first).
    pub fn handle_with_schema<F, Fut>(self, schema: Schema, f: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let command = schema.command();
        self.insert(command, Handler::plain(Some(schema), f))
    }

    /// Handle the typed message `T` (validated and decoded first).
    pub fn on<T, F, Fut>(self, f: F) -> Self
    where
        T: TypedMessage,
        F: Fn(Request, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.insert(T::COMMAND, Handler::typed::<T, F, Fut>(f))
    }

    /// Handle `command` a batch at a time: `f` gets the messages that have arrived for it (in
    /// arrival order, at most `batching.max_messages`) and returns one result per message, in
    /// the same order. Each message is settled on its own result as with [`Self::handle`]: a
    /// reply is sent to its sender, a failed attempt is retried alone after the backoff and
    /// dead-lettered after the last. A call that panics, times out or returns a wrong number
    /// of results is split: its messages run one at a time, so only the one at fault fails.
    ///
    /// ```
    /// # async fn f() -> comms_core::Result<()> {
    /// use comms_core::{Batching, Connect, Endpoint, Outcome};
    /// use comms_memory::MemoryTransport;
    /// let store = Endpoint::builder(MemoryTransport::connect_url("memory://doc_batch").await?, "store")
    ///     .handle_batch("PUT", Batching::up_to(500), |batch| async move {
    ///         // e.g. one database transaction for the whole batch
    ///         batch.iter().map(|_req| Ok(Outcome::Done)).collect()
    ///     })
    ///     .start()
    ///     .await?;
    /// # store.close().await }
    /// ```
    pub fn handle_batch<F, Fut>(self, command: &str, batching: Batching, f: F) -> Self
    where
        F: Fn(Vec<Request>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<HandlerResult>> + Send + 'static,
    {
        self.insert(command, Handler::batch(batching, f))
    }

    fn insert(mut self, command: &str, handler: Handler) -> Self {
        if let Err(e) = validate_command(command) {
            self.error.get_or_insert(e.into());
        } else if command == commands::ADVERTISE {
            self.error.get_or_insert(Error::invalid(
                "command",
                "ADVERTISE is reserved: attach a Directory instead",
            ));
        } else if self.handlers.insert(command.to_owned(), handler).is_some() {
            self.error.get_or_insert(Error::invalid(
                "command",
                format!("{command} has two handlers"),
            ));
        }
        self
    }

    /// Advertise, listen, and start dispatching.
    pub async fn start(self) -> Result<Endpoint> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut handlers = self.handlers;
        for (command, timeout) in self.command_timeouts {
            match handlers.get_mut(&command) {
                Some(h) => h.timeout = Some(timeout),
                None => {
                    return Err(Error::invalid(
                        "command",
                        format!("a timeout for {command}, which has no handler"),
                    ))
                }
            }
        }
        let node = self.node.unwrap_or_else(|| self.transport.node());
        let address = Address::new(node, &self.service)?;
        let mut ad = Advertisement::new(address.clone(), handlers.keys().cloned());
        if self.directory.is_some() {
            ad.commands.insert(commands::ADVERTISE.to_owned());
        }
        ad.groups.extend(self.ad_groups);
        ad.labels.extend(self.labels);
        ad.facts.extend(self.facts);
        ad.ttl = self.ttl;
        ad.validate()?;
        self.transport.advertise(&ad).await?;
        let inbox = self.transport.listen().await?;

        let attempts = Attempts::open(self.transport.state_dir().as_deref(), &address);
        let dead_letters = self.transport.dead_letters();
        if let Err(e) = &dead_letters {
            tracing::warn!(%address, error = %e, "no dead-letter place: a message whose handler fails for the last time will stay unacknowledged");
        }
        let cancel = CancellationToken::new();
        let guard = Arc::new(cancel.clone().drop_guard());
        let (closed_tx, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            stats: self.transport.stats(),
            transport: self.transport,
            address,
            ad: Mutex::new(ad),
            handlers,
            pending: Mutex::default(),
            dedup: Mutex::new(DedupWindow::new(self.dedup_capacity)),
            attempts,
            retry: self.retry,
            dead_letters,
            directory: self.directory,
            cancel,
            tracker: TaskTracker::new(),
            lanes: self.lanes,
            handler_timeout: self.handler_timeout,
            failed: AtomicBool::new(false),
            closed_tx,
            handle_guard: Mutex::new(Weak::new()),
        });
        *super::lock(&inner.handle_guard) = Arc::downgrade(&guard);
        dispatch::spawn(&inner, inbox);
        Ok(Endpoint::from_parts(inner, guard))
    }
}
