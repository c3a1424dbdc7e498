//! The daemon's secure service listener for `cds:` clients ([`ServerTls`]).

use std::path::PathBuf;
use std::sync::Arc;

use cd_wire::tls::{config_error, key_error, load_certs, load_key, load_roots, provider, TlsError};
use rustls::server::WebPkiClientVerifier;

/// The daemon side: the certificate chain and key it presents, and optionally the CA that
/// client certificates must chain to (set: **mutual TLS**, a client without a certificate
/// signed by it is refused during the handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates client certificates must chain to (`None`: no client certificate
    /// asked).
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    /// Reads the files and builds the rustls server configuration.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let chain = load_certs(&self.cert, "certificate")?;
        let key = load_key(&self.key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let roots = Arc::new(load_roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| key_error(e, &self.cert, &self.key))?;
        Ok(Arc::new(config))
    }
}
