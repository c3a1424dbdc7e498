//! [`ClientError`]: what the permanent client connection reports.

use comms_core::Error;

/// Failures of the permanent client connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The `cd:` URL or an option is wrong.
    #[error("cd: URL `{url}`: {reason}")]
    BadUrl {
        /// The URL as written.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// No registered connection to the daemon right now (the client keeps reconnecting).
    #[error("not connected to the daemon (reconnecting)")]
    NotConnected,
    /// The client was closed (or its task stopped).
    #[error("the client connection is closed")]
    Closed,
    /// The TLS settings of a `cds:` URL cannot be used (file missing, bad PEM...).
    #[error("cds: TLS settings: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A message cannot be written on the wire.
    #[error("message cannot be serialized: {0}")]
    Serialize(#[from] cd_wire::SerializeError),
}

impl ClientError {
    /// True when the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClientError::NotConnected)
    }
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::BadUrl { .. } | ClientError::Tls(_) => Error::Config(e.to_string()),
            ClientError::Closed => Error::Closed,
            other => {
                let retryable = other.is_retryable();
                Error::transport("native", "client connection", retryable, other)
            }
        }
    }
}
