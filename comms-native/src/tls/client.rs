//! The client side of a `cds://host:port` URL ([`ClientTls`]), and the system's trust anchors
//! it falls back to.

use std::path::PathBuf;
use std::sync::Arc;

use cd_wire::tls::{
    config_error, key_error, load_certs, load_key, load_roots, provider, server_name, TlsError,
};
use rustls::RootCertStore;
use rustls_pki_types::ServerName;

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

/// The system's trust anchors (`/etc/ssl/certs` and the like, via `rustls-native-certs`).
pub fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "the system has no root certificates".into());
        return Err(TlsError::NoRoots(format!(
            "{why}; give a CA file (ca=PATH)"
        )));
    }
    Ok(roots)
}
