//! TLS (rustls with the ring provider) for the client side of `cds:` service connections:
//! [`ClientTls`], built from PEM files with errors that name the file ([`TlsError`]). The
//! daemon's listener and peer-link TLS are in `commsd::tls`; the pieces both sides share
//! (PEM loading, [`TlsError`], the provider) are `cd_wire::tls`, re-exported here.

mod client;

pub use cd_wire::tls::{load_certs, load_key, load_roots, server_name, tls_reason, TlsError};
pub use client::{system_roots, ClientTls};
