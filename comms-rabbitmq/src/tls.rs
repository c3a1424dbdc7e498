//! TLS for `amqps:`: the CA chain, client certificate and key named in `[rabbitmq.tls]`, read
//! once and handed to lapin (rustls with the ring provider; the system roots are trusted when no
//! CA is given).

use std::path::Path;

use comms_core::{Error, Result};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};

use crate::options::TlsSection;

/// TLS material, already read from disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM CA chain to trust instead of the system roots.
    pub ca_pem: Option<String>,
    /// Client certificate (PEM) and key (PKCS#8 PEM) for certificate authentication.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsOptions {
    /// Read the files a `[rabbitmq.tls]` section names. A certificate without a key (or the
    /// reverse) is a configuration error.
    pub fn load(section: &TlsSection) -> Result<Self> {
        let ca_pem = match &section.ca {
            Some(p) => Some(String::from_utf8(read(p, "ca")?).map_err(|_| {
                Error::Config(format!("[rabbitmq.tls] ca {} is not PEM text", p.display()))
            })?),
            None => None,
        };
        let client = match (&section.cert, &section.key) {
            (Some(c), Some(k)) => Some((read(c, "cert")?, read(k, "key")?)),
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "[rabbitmq.tls] cert and key must be given together".into(),
                ))
            }
        };
        Ok(Self { ca_pem, client })
    }

    /// The lapin TLS configuration.
    pub fn to_lapin(&self) -> OwnedTLSConfig {
        OwnedTLSConfig {
            identity: self.client.as_ref().map(|(pem, key)| OwnedIdentity::PKCS8 {
                pem: pem.clone(),
                key: key.clone(),
            }),
            cert_chain: self.ca_pem.clone(),
        }
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::Config(format!(
            "[rabbitmq.tls] {what}: cannot read {}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::RabbitOptions;
    use comms_core::Config;

    #[test]
    fn files_are_read_and_applied() {
        let dir = std::env::temp_dir().join(format!("comms-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, cert, key) = (dir.join("ca.pem"), dir.join("c.pem"), dir.join("k.pem"));
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(&cert, "CERT").unwrap();
        std::fs::write(&key, "KEY").unwrap();
        let c = Config::from_toml(&format!(
            "[transport]\nurl = \"amqps://rabbit.example:5671/%2f\"\n[rabbitmq.tls]\n\
             ca = {:?}\ncert = {:?}\nkey = {:?}\n",
            ca.display().to_string(),
            cert.display().to_string(),
            key.display().to_string()
        ))
        .unwrap();
        let o = RabbitOptions::from_config(&c).unwrap();
        assert!(o.tls_enabled);
        let lapin = o.tls.to_lapin();
        assert!(lapin
            .cert_chain
            .as_deref()
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
        match lapin.identity {
            Some(OwnedIdentity::PKCS8 { pem, key }) => {
                assert_eq!(
                    (pem.as_slice(), key.as_slice()),
                    (&b"CERT"[..], &b"KEY"[..])
                );
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn half_an_identity_or_a_missing_file_is_refused() {
        let half = TlsSection {
            cert: Some("/nonexistent".into()),
            ..TlsSection::default()
        };
        assert!(matches!(TlsOptions::load(&half), Err(Error::Config(_))));
        let missing = TlsSection {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsSection::default()
        };
        let e = TlsOptions::load(&missing).unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
