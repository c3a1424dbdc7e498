//! The one error type of the comms contract.

use std::time::Duration;

/// Result alias used across the contract.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A field of a message that failed validation, and why.
///
/// Carried by [`Error::Invalid`] and sent back to the sender in an `INVALID` reply
/// (parameters `field` and `reason`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct Invalid {
    /// The parameter or envelope field at fault (`command`, `to`, a parameter name...).
    pub field: String,
    /// What is wrong with it, in words a person can act on.
    pub reason: String,
}

impl Invalid {
    /// An invalid-field report.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Everything that can go wrong in the contract, on any backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message, address or advertisement failed validation.
    #[error("invalid {0}")]
    Invalid(#[from] Invalid),

    /// A message is larger than the transport accepts.
    #[error("message too large: {size} bytes, the maximum for this transport is {max} bytes")]
    TooLarge {
        /// Encoded size of the message.
        size: usize,
        /// The transport's documented maximum.
        max: usize,
    },

    /// The configuration file or a URL is wrong.
    #[error("configuration: {0}")]
    Config(String),

    /// A URL names a scheme no backend serves.
    #[error("unsupported URL scheme `{scheme}`; accepted schemes: {accepted}")]
    UnsupportedScheme {
        /// The scheme as written.
        scheme: String,
        /// The accepted schemes, comma separated.
        accepted: &'static str,
    },

    /// A URL could not be parsed, or lacks what its scheme needs.
    #[error("malformed transport URL `{url}`: {reason} (accepted schemes: {accepted})")]
    MalformedUrl {
        /// The URL as written.
        url: String,
        /// What is wrong with it.
        reason: String,
        /// The accepted schemes, comma separated.
        accepted: &'static str,
    },

    /// The URL names a backend that this build does not contain.
    #[error("the `{backend}` backend is not available in this build: {reason}")]
    BackendUnavailable {
        /// Backend name (`native`, `rabbitmq`, `kafka`).
        backend: &'static str,
        /// Why (feature not enabled, not built yet...).
        reason: String,
    },

    /// The backend does not offer this operation (e.g. [`Transport::sniff`] on a backend
    /// that has no way to observe all of its traffic).
    ///
    /// [`Transport::sniff`]: crate::Transport::sniff
    #[error("{operation} is not supported by the `{backend}` backend")]
    Unsupported {
        /// Backend name ([`Capabilities::backend`](crate::Capabilities::backend)).
        backend: &'static str,
        /// The operation asked for (`sniff`...).
        operation: &'static str,
    },

    /// A request got no reply in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),

    /// The peer answered with an error reply (`UNKNOWN`, `INVALID`, `ERROR`, `SERVICE_UNAVAILABLE`).
    #[error("{command} from the peer: {reason}")]
    Remote {
        /// The error reply's command.
        command: String,
        /// Its reason, or the parameters that explain it.
        reason: String,
        /// The full reply, for callers that need its parameters.
        reply: Box<crate::Message>,
    },

    /// The transport or endpoint was closed.
    #[error("the transport is closed")]
    Closed,

    /// `send` or `listen` before the first `advertise`.
    #[error("not advertised: call advertise() first, it binds this transport's identity")]
    NotAdvertised,

    /// `advertise` with another identity than the one this transport is bound to.
    #[error("this transport is bound to `{bound}`; it cannot advertise as `{requested}`")]
    IdentityConflict {
        /// The identity bound by the first advertisement.
        bound: String,
        /// The identity asked for now.
        requested: String,
    },

    /// Another live endpoint already holds this address.
    #[error("address {0} is already live: one endpoint per address")]
    AddressInUse(String),

    /// `listen` called twice.
    #[error("listen() was already called on this transport")]
    AlreadyListening,

    /// A queue bound was reached and the sender waited past its send timeout.
    #[error("backpressure: {0}")]
    Backpressure(String),

    /// A forward would exceed the hop limit; the message was dropped.
    #[error("hop limit {limit} reached: message {id} dropped (a forwarding loop?)")]
    HopLimit {
        /// The limit.
        limit: u8,
        /// The dropped message's id.
        id: String,
    },

    /// Typed data could not be encoded or decoded.
    #[error("data (de)serialization: {0}")]
    Data(#[from] serde_json::Error),

    /// A backend-specific failure (connection, broker, protocol), with its source.
    #[error("{backend}: {message}")]
    Transport {
        /// Backend name.
        backend: &'static str,
        /// What was being done.
        message: String,
        /// Whether retrying the same call later may succeed.
        retryable: bool,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// True when the same call may succeed later (connection lost, broker restarting, queue full).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { retryable, .. } => *retryable,
            Error::Timeout(_) | Error::Backpressure(_) => true,
            _ => false,
        }
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }

    /// The error-reply command (`UNKNOWN`, `INVALID`...) when this is a [`Error::Remote`].
    pub fn remote_command(&self) -> Option<&str> {
        match self {
            Error::Remote { command, .. } => Some(command),
            _ => None,
        }
    }

    /// A backend failure with a source error.
    pub fn transport(
        backend: &'static str,
        message: impl Into<String>,
        retryable: bool,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Transport {
            backend,
            message: message.into(),
            retryable,
            source: Some(Box::new(source)),
        }
    }

    /// A backend failure described in words only.
    pub fn transport_msg(
        backend: &'static str,
        message: impl Into<String>,
        retryable: bool,
    ) -> Self {
        Error::Transport {
            backend,
            message: message.into(),
            retryable,
            source: None,
        }
    }

    /// An invalid-field error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid(Invalid::new(field, reason))
    }
}
