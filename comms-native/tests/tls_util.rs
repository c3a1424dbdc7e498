//! Helpers for the TLS tests: a throw-away PKI made with `rcgen` (CAs, server and client
//! certificates written as PEM files in a temp dir), a `commsd` process with a TLS listener,
//! and a raw line client over TLS. Included with `mod tls_util;`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub const WAIT: Duration = Duration::from_secs(10);

/// A certificate authority of the test PKI.
#[allow(missing_debug_implementations)]
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// Its certificate, PEM.
    pub pem: PathBuf,
}

/// A certificate + key pair written to disk.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A temp dir holding every file of the test PKI.
#[derive(Debug)]
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca(&self, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        let pem = self.path(&format!("{name}-ca.pem"));
        std::fs::write(&pem, cert.pem()).unwrap();
        Ca { cert, key, pem }
    }

    /// A leaf signed by `ca` for `sans` (DNS names or IPs), usable as server and client
    /// certificate, common name `name`.
    pub fn leaf(&self, ca: &Ca, name: &str, sans: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        let leaf = Leaf {
            cert: self.path(&format!("{name}.crt")),
            key: self.path(&format!("{name}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}

/// A rustls client configuration trusting `ca`, presenting `client` when given.
pub fn client_config(ca: &Path, client: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    comms_native::tls::ClientTls {
        ca: Some(ca.to_path_buf()),
        cert: client.map(|l| l.cert.clone()),
        key: client.map(|l| l.key.clone()),
        server_name: None,
    }
    .client_config()
    .unwrap()
}

/// A raw line client (a stock service's view) over TLS.
#[allow(missing_debug_implementations)]
pub struct TlsRaw {
    r: BufReader<Box<dyn AsyncRead + Unpin + Send>>,
    w: Box<dyn AsyncWrite + Unpin + Send>,
}

impl TlsRaw {
    /// TCP connect + handshake (as the client sees it: with TLS 1.3 a refused client
    /// certificate only shows on the first read).
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<TlsRaw> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let s = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        let (r, w) = tokio::io::split(s);
        Ok(TlsRaw {
            r: BufReader::new(Box::new(r)),
            w: Box::new(w),
        })
    }

    pub async fn send(&mut self, line: &str) -> std::io::Result<()> {
        self.w.write_all(format!("{line}\n").as_bytes()).await?;
        self.w.flush().await
    }

    /// The next line without `\n`; `Err` on EOF or a TLS/IO error.
    pub async fn line(&mut self) -> std::io::Result<String> {
        let mut s = String::new();
        let n = tokio::time::timeout(WAIT, self.r.read_line(&mut s))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(s.trim_end_matches('\n').to_owned())
    }

    /// REGISTER; the HELP and READY lines.
    pub async fn register(&mut self, service: &str) -> std::io::Result<(String, String)> {
        self.send(&format!("REGISTER service={service};version=1"))
            .await?;
        Ok((self.line().await?, self.line().await?))
    }
}

/// A `commsd` process with a Unix socket and a TLS listener on 127.0.0.1:0.
#[derive(Debug)]
pub struct TlsCommsd {
    pub socket: PathBuf,
    pub tls: SocketAddr,
    pub node: String,
    _child: Child,
}

impl TlsCommsd {
    pub async fn start(dir: &Path, node: &str, server: &Leaf, client_ca: Option<&Path>) -> Self {
        let socket = dir.join(format!("{node}.sock"));
        let ready = dir.join(format!("{node}.ready"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_commsd"));
        cmd.args(["--name", node, "--no-tcp", "--no-udp", "--unix"])
            .arg(&socket)
            .args(["--tls", "127.0.0.1:0", "--tls-cert"])
            .arg(&server.cert)
            .arg("--tls-key")
            .arg(&server.key)
            .arg("--ready-file")
            .arg(&ready);
        if let Some(ca) = client_ca {
            cmd.arg("--tls-client-ca").arg(ca);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn commsd");
        let deadline = tokio::time::Instant::now() + WAIT;
        let tls = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let addr = text
                    .lines()
                    .find_map(|l| l.strip_prefix("commsd: listening tls "))
                    .expect("a tls line in the ready file");
                break addr.parse().unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "commsd never became ready"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        TlsCommsd {
            socket,
            tls,
            node: node.to_owned(),
            _child: child,
        }
    }
}
