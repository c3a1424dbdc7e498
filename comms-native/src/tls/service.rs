//! TLS for service connections (`cds:`): the daemon's secure listener ([`ServerTls`]) and the
//! client side of a `cds://host:port` URL ([`ClientTls`]).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::ServerName;

use super::error::TlsError;
use super::pem::{load_certs, load_key, load_roots, system_roots};
use super::{config_error, provider};

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

/// The client side of `cds:`: whom to trust (a CA file, else the system roots), an optional
/// client certificate, and the name the server certificate must carry (default: the URL host).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificates to trust instead of the system roots (`?ca=`).
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain (`?cert=`), with `key`.
    pub cert: Option<PathBuf>,
    /// PEM private key of the client certificate (`?key=`).
    pub key: Option<PathBuf>,
    /// The name to verify the server certificate against (`?tls_name=`; default: the host).
    pub server_name: Option<String>,
}

impl ClientTls {
    /// Reads the files and builds the rustls client configuration.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let roots = match &self.ca {
            Some(ca) => load_roots(ca)?,
            None => system_roots()?,
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certs(cert, "certificate")?, load_key(key)?)
                .map_err(|e| key_error(e, cert, key))?,
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(TlsError::CertWithoutKey),
        };
        Ok(Arc::new(config))
    }

    /// The name the server certificate must carry: `server_name` if set, else `host`.
    pub fn verify_name(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        let name = self.server_name.as_deref().unwrap_or(host);
        server_name(name)
    }
}

/// A DNS name or an IP address, as rustls verifies it.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|_| TlsError::BadServerName(name.to_owned()))
}

/// Maps rustls' refusal of a certificate + key pair, naming the files.
pub(super) fn key_error(
    e: rustls::Error,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> TlsError {
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
