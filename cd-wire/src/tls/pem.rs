//! Reading PEM files: certificate chains, private keys (PKCS#8, PKCS#1, SEC1) and trust
//! anchors (a CA file). Every failure names the file.

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::TlsError;

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn bad(path: &Path, what: &'static str, reason: impl Into<String>) -> TlsError {
    TlsError::BadPem {
        what,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Every certificate of a PEM file, in order (leaf first for a chain). At least one.
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, what, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(path, what, "no CERTIFICATE section"));
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const WHAT: &str = "private key";
    let bytes = read(path, WHAT)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => bad(
            path,
            WHAT,
            "no PRIVATE KEY section (PKCS#8, RSA or EC PEM expected)",
        ),
        e => bad(path, WHAT, e.to_string()),
    })
}

/// The trust anchors of a CA PEM file (every certificate in it).
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    const WHAT: &str = "CA";
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, WHAT)? {
        roots
            .add(cert)
            .map_err(|e| bad(path, WHAT, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}
