//! What handlers receive and return.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::address::Destination;
use crate::error::{Error, Invalid};
use crate::message::Message;
use crate::schema::{Schema, TypedMessage};

use super::Endpoint;

/// What a handler gets: the message and the endpoint (to send, request or reply).
#[derive(Debug, Clone)]
pub struct Request {
    /// Shared with the delivery until it is settled (no copy is made to run a handler).
    pub(crate) message: Arc<Message>,
    /// The endpoint that received it.
    pub endpoint: Endpoint,
}

impl Request {
    /// The message being handled.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The message, owned (copied if the delivery still shares it, as it does until the
    /// handler's outcome settles it).
    pub fn into_message(self) -> Message {
        Arc::unwrap_or_clone(self.message)
    }

    /// A reply to the message being handled (addressed to its origin, correlated).
    pub fn reply(&self, command: &str) -> Result<Message, Error> {
        self.message.reply(command)
    }
}

/// How a handler finished.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// Done; acknowledge.
    Done,
    /// Done; send this reply, then acknowledge.
    Reply(Message),
    /// Pass the message on to another destination (`from` and `id` kept, `hops` + 1).
    Forward(Destination),
}

/// How a handler failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandlerError {
    /// Transient failure: a failed attempt. The handler runs again after the endpoint's
    /// [`RetryPolicy`](crate::RetryPolicy) backoff (the sender's later messages wait); after
    /// the last attempt the message is dead-lettered ([`crate::dead_letter`]) and a request
    /// gets an `ERROR` reply. A panic or a timeout counts the same way.
    Retry(String),
    /// Permanent failure, the handler's own verdict: the sender gets an `ERROR` reply; the
    /// message is acknowledged (not retried, not dead-lettered).
    Failed(String),
    /// The message is not acceptable: the sender gets an `INVALID` reply naming the field.
    Invalid(Invalid),
}

impl From<Error> for HandlerError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(i) => HandlerError::Invalid(i),
            other if other.is_retryable() => HandlerError::Retry(other.to_string()),
            other => HandlerError::Failed(other.to_string()),
        }
    }
}

impl From<Invalid> for HandlerError {
    fn from(i: Invalid) -> Self {
        HandlerError::Invalid(i)
    }
}

/// A handler's result.
pub type HandlerResult = Result<Outcome, HandlerError>;

type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type BatchFuture = Pin<Box<dyn Future<Output = Vec<HandlerResult>> + Send>>;

/// How the batches of a batch handler are formed
/// ([`EndpointBuilder::handle_batch`](super::EndpointBuilder::handle_batch)).
///
/// A batch is what has arrived for the command, in arrival order: the first message waiting,
/// then those already queued behind it, up to `max_messages`; with a `linger`, the batch
/// also waits that long after its first message for more to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Most messages in one call of the handler (at least 1).
    pub max_messages: usize,
    /// How long a batch waits for more messages after its first (zero: take only what is
    /// already there; the lowest latency).
    pub linger: std::time::Duration,
}

impl Default for Batching {
    /// 256 messages at most, no linger.
    fn default() -> Self {
        Self {
            max_messages: 256,
            linger: std::time::Duration::ZERO,
        }
    }
}

impl Batching {
    /// At most `max_messages` a call, no linger.
    pub fn up_to(max_messages: usize) -> Self {
        Self {
            max_messages: max_messages.max(1),
            ..Self::default()
        }
    }

    /// Wait up to `linger` after a batch's first message for more.
    pub fn linger(mut self, linger: std::time::Duration) -> Self {
        self.linger = linger;
        self
    }
}

/// A batch handler's function and its batching.
#[derive(Clone)]
pub(crate) struct BatchCall {
    pub(crate) batching: Batching,
    pub(crate) call: Arc<dyn Fn(Vec<Request>) -> BatchFuture + Send + Sync>,
}

/// A registered handler: the function and, for typed or declared commands, its schema.
#[derive(Clone)]
pub(crate) struct Handler {
    pub(crate) schema: Option<Schema>,
    /// This command's timeout, when it overrides the endpoint's.
    pub(crate) timeout: Option<std::time::Duration>,
    /// One message at a time (for a batch handler: a batch of one).
    pub(crate) call: Arc<dyn Fn(Request) -> BoxFuture + Send + Sync>,
    /// The batch form, for a batch handler.
    pub(crate) batch: Option<BatchCall>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Handler {
    pub(crate) fn plain<F, Fut>(schema: Option<Schema>, f: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        Self {
            schema,
            timeout: None,
            call: Arc::new(move |req| Box::pin(f(req))),
            batch: None,
        }
    }

    /// A batch handler: `f` gets a batch and returns one result per message, in order. Alone
    /// (a retry, a split batch) a message is a batch of one.
    pub(crate) fn batch<F, Fut>(batching: Batching, f: F) -> Self
    where
        F: Fn(Vec<Request>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<HandlerResult>> + Send + 'static,
    {
        let f = Arc::new(f);
        let single = f.clone();
        Self {
            schema: None,
            timeout: None,
            call: Arc::new(move |req| {
                let fut = single(vec![req]);
                Box::pin(async move {
                    let results = fut.await;
                    let n = results.len();
                    match <[HandlerResult; 1]>::try_from(results) {
                        Ok([result]) => result,
                        Err(_) => Err(HandlerError::Retry(format!(
                            "the batch handler returned {n} results for 1 message"
                        ))),
                    }
                })
            }),
            batch: Some(BatchCall {
                batching,
                call: Arc::new(move |reqs| Box::pin(f(reqs))),
            }),
        }
    }

    pub(crate) fn typed<T, F, Fut>(f: F) -> Self
    where
        T: TypedMessage,
        F: Fn(Request, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let f = Arc::new(f);
        Self {
            schema: Some(T::schema()),
            timeout: None,
            batch: None,
            call: Arc::new(move |req: Request| {
                let f = f.clone();
                Box::pin(async move {
                    let value = T::from_message(&req.message)?;
                    f(req, value).await
                })
            }),
        }
    }
}
