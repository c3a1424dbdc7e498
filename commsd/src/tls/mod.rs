//! TLS (rustls with the ring provider) on the daemon's side, built from PEM files with errors
//! that name the file ([`TlsError`]: missing file, no certificate or key in it, a key that does
//! not match the certificate):
//!
//! - [`ServerTls`]: the secure service listener (cd-wire §2.1 `secure_listen`, port 4043):
//!   certificate + key, and an optional client CA that makes it **mutual TLS**;
//! - [`PeerTls`] / [`PeerTlsContext`]: daemon-to-daemon links with mutual TLS and an
//!   allow-list of peer names (see [`peer`]).
//!
//! The pieces shared with the client side (PEM loading, [`TlsError`], the provider) are
//! `cd_wire::tls`, re-exported here.

pub mod peer;
mod server;

pub use cd_wire::tls::{load_certs, load_key, load_roots, tls_reason, TlsError};
pub use peer::{PeerIdentity, PeerTls, PeerTlsContext, DEFAULT_PEER_HANDSHAKE_TIMEOUT};
pub use server::ServerTls;
