//! [`DaemonError`]: why the daemon could not start.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of [`Daemon::start`](super::Daemon::start).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The node name is not a valid Communicator name (`[A-Za-z_][A-Za-z0-9_]*`).
    #[error("invalid node name {0:?}: must match [A-Za-z_][A-Za-z0-9_]*")]
    InvalidName(String),
    /// The plain TCP service listener must be on a loopback address.
    #[error(
        "tcp listener {0} is not a loopback address (the plain service listener is local only)"
    )]
    NonLoopbackTcp(SocketAddr),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Binding a TCP or UDP listener failed.
    #[error("cannot bind {what} {addr}: {source}")]
    Bind {
        /// `tcp` or `udp`.
        what: &'static str,
        /// The requested address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The secure listener's certificate, key or client CA cannot be used.
    #[error("secure listener: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// Binding the Unix socket failed (or another live daemon owns it).
    #[error("cannot bind unix socket {path}: {source}")]
    BindUnix {
        /// The requested path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl DaemonError {
    /// True when the cause is an address or socket path already in use.
    pub fn is_addr_in_use(&self) -> bool {
        match self {
            Self::Bind { source, .. } | Self::BindUnix { source, .. } => {
                source.kind() == std::io::ErrorKind::AddrInUse
            }
            _ => false,
        }
    }
}
