//! The TLS pieces shared by both ends of `cds:` connections and by daemon peer links (feature
//! `tls`): reading PEM files, [`TlsError`], the crypto provider (rustls with `ring`, always
//! passed explicitly, so nothing depends on a process-wide default provider) and the mapping
//! of rustls errors. Kept here, below both `comms-native` (client side) and `commsd`
//! (listeners, peer links), so that each exists once; no configuration is built here.

mod error;
mod pem;

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::ServerName;

pub use error::TlsError;
pub use pem::{load_certs, load_key, load_roots};

/// The crypto provider of every configuration (rustls with `ring`).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls refused a configuration.
pub fn config_error(e: rustls::Error) -> TlsError {
    TlsError::Config(e.to_string())
}

/// A handshake I/O error, with the rustls reason when there is one.
pub fn handshake_error(e: std::io::Error) -> TlsError {
    TlsError::Handshake(e)
}

/// The rustls reason inside an I/O error of a TLS stream, if it is a TLS failure.
pub fn tls_reason(e: &std::io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(ToString::to_string)
}

/// A DNS name or an IP address, as rustls verifies it.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|_| TlsError::BadServerName(name.to_owned()))
}

/// Maps rustls' refusal of a certificate + key pair, naming the files.
pub fn key_error(e: rustls::Error, cert: &Path, key: &Path) -> TlsError {
    match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        },
        e => TlsError::Config(format!(
            "certificate {} / key {}: {e}",
            cert.display(),
            key.display()
        )),
    }
}
