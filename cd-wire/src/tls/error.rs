//! [`TlsError`]: why TLS material could not be loaded, or a handshake failed.

use std::path::PathBuf;

/// Errors of loading certificates and keys, building rustls configurations, and handshakes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read the {what} file {path}: {source}")]
    Read {
        /// `certificate`, `private key`, `CA`...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file is malformed or holds nothing of the expected kind.
    #[error("the {what} file {path} is not usable PEM: {reason}")]
    BadPem {
        /// `certificate`, `private key`, `CA`...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("the private key {key} does not match the certificate {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A certificate and a key must be given together.
    #[error("a client certificate and its key must be given together (cert and key)")]
    CertWithoutKey,
    /// The name to verify the server against is not a DNS name or an IP address.
    #[error("`{0}` is not a valid TLS server name (a DNS name or an IP address)")]
    BadServerName(String),
    /// No trust anchor could be loaded (neither a CA file nor the system roots).
    #[error("no trusted root certificate: {0}")]
    NoRoots(String),
    /// rustls refused the configuration (unsupported key type, bad CA...).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The handshake did not finish in time.
    #[error("TLS handshake timed out after {0:?}")]
    HandshakeTimeout(std::time::Duration),
    /// The handshake failed (certificate refused, not TLS, connection lost...).
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
    /// The peer's certificate names none of the allowed peers.
    #[error("the peer certificate names none of the allowed peers ({allowed})")]
    PeerNotAllowed {
        /// The allow-list, comma-joined.
        allowed: String,
    },
}
