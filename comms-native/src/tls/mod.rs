//! TLS (rustls with the ring provider) for `cds:` service connections and for daemon peer
//! links. Every configuration is built from PEM files with errors that name the file
//! ([`TlsError`]): missing file, no certificate or key in it, a key that does not match the
//! certificate.
//!
//! - [`ServerTls`]: the daemon's secure service listener (cd-wire §2.1 `secure_listen`,
//!   port 4043): certificate + key, and an optional client CA that makes it **mutual TLS**.
//! - [`ClientTls`]: the client side of `cds://host:port?ca=..&cert=..&key=..&tls_name=..`.
//! - [`PeerTls`] / [`PeerTlsContext`]: daemon-to-daemon links with mutual TLS and an
//!   allow-list of peer names (see [`peer`] for the intended use).
//!
//! The provider is always passed explicitly (`ring`), so nothing depends on a process-wide
//! default provider being installed.

mod error;
pub mod peer;
mod pem;
mod service;

use std::sync::Arc;

pub use error::TlsError;
pub use peer::{PeerIdentity, PeerTls, PeerTlsContext, DEFAULT_PEER_HANDSHAKE_TIMEOUT};
pub use pem::{load_certs, load_key, load_roots, system_roots};
pub use service::{server_name, ClientTls, ServerTls};

/// The crypto provider of every configuration built here.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn config_error(e: rustls::Error) -> TlsError {
    TlsError::Config(e.to_string())
}

/// A handshake I/O error, with the rustls reason when there is one.
pub(crate) fn handshake_error(e: std::io::Error) -> TlsError {
    TlsError::Handshake(e)
}

/// The rustls reason inside an I/O error of a TLS stream, if it is a TLS failure.
pub fn tls_reason(e: &std::io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(ToString::to_string)
}
