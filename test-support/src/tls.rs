//! A throw-away PKI for TLS tests, made with `rcgen`: certificate authorities, leaves usable as
//! server and client certificates, every file written as PEM in the PKI's own temp directory;
//! a rustls client configuration trusting a CA (optionally presenting a client certificate),
//! as a stock TLS peer would use; and [`LineClient::tls`](crate::LineClient::tls), a raw
//! line client over TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Result};

fn failed(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |e| Error::Failed(format!("{what}: {e}"))
}

/// A certificate authority of a [`Pki`].
#[allow(missing_debug_implementations)] // rcgen's certificate and key are not Debug
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// Its certificate, PEM.
    pub pem: PathBuf,
}

/// A certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

/// A temp directory holding every file of a test PKI (removed when dropped).
#[derive(Debug)]
pub struct Pki {
    /// The directory.
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// An empty PKI in a fresh temp directory.
    pub fn new() -> Result<Pki> {
        let dir = tempfile::Builder::new()
            .prefix("pki-")
            .tempdir()
            .map_err(Error::io("temp dir"))?;
        Ok(Pki { dir })
    }

    /// A fresh PKI with a CA `main` and its [`Pki::localhost`] certificate: what a test
    /// daemon serving TLS on loopback needs.
    pub fn with_localhost() -> Result<(Pki, Ca, Leaf)> {
        let pki = Pki::new()?;
        let ca = pki.ca("main")?;
        let server = pki.localhost(&ca)?;
        Ok((pki, ca, server))
    }

    /// `name` in the PKI's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A self-signed CA, common name `NAME test CA`, its certificate in `NAME-ca.pem`.
    pub fn ca(&self, name: &str) -> Result<Ca> {
        let key = KeyPair::generate().map_err(failed("CA key"))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(failed("CA params"))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(failed("CA"))?;
        let pem = self.path(&format!("{name}-ca.pem"));
        write(&pem, cert.pem())?;
        Ok(Ca { cert, key, pem })
    }

    /// A leaf signed by `ca` for `sans` (DNS names or IPs), usable as server and client
    /// certificate, common name `name`, in `NAME.crt` and `NAME.key`.
    pub fn leaf(&self, ca: &Ca, name: &str, sans: &[&str]) -> Result<Leaf> {
        let key = KeyPair::generate().map_err(failed("leaf key"))?;
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).map_err(failed("leaf names"))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &ca.cert, &ca.key)
            .map_err(failed("leaf"))?;
        let leaf = Leaf {
            cert: self.path(&format!("{name}.crt")),
            key: self.path(&format!("{name}.key")),
        };
        write(&leaf.cert, cert.pem())?;
        write(&leaf.key, key.serialize_pem())?;
        Ok(leaf)
    }

    /// [`Pki::leaf`] `server` for `localhost` and `127.0.0.1`: a local daemon's certificate.
    pub fn localhost(&self, ca: &Ca) -> Result<Leaf> {
        self.leaf(ca, "server", &["localhost", "127.0.0.1"])
    }
}

fn write(path: &Path, text: String) -> Result<()> {
    std::fs::write(path, text).map_err(Error::io(path.display().to_string()))
}

/// A rustls client configuration (ring provider) trusting the CA certificates in the PEM
/// file `ca`, presenting `client` when given.
pub fn client_config(ca: &Path, client: Option<&Leaf>) -> Result<Arc<rustls::ClientConfig>> {
    let pem = |e: rustls_pki_types::pem::Error| Error::Failed(format!("PEM: {e}"));
    let tls = |e: rustls::Error| Error::Failed(format!("TLS config: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(pem)? {
        roots.add(cert.map_err(pem)?).map_err(tls)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(tls)?
    .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(leaf) => {
            let chain = CertificateDer::pem_file_iter(&leaf.cert)
                .map_err(pem)?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(pem)?;
            let key = PrivateKeyDer::from_pem_file(&leaf.key).map_err(pem)?;
            builder.with_client_auth_cert(chain, key).map_err(tls)?
        }
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_loads_into_a_client_config() {
        let pki = Pki::new().expect("pki");
        let ca = pki.ca("t").expect("ca");
        let leaf = pki.leaf(&ca, "c", &["c.test", "127.0.0.1"]).expect("leaf");
        assert!(client_config(&ca.pem, Some(&leaf)).is_ok());
        assert!(client_config(&ca.pem, None).is_ok());
        assert!(client_config(&pki.path("missing.pem"), None).is_err());
    }
}
