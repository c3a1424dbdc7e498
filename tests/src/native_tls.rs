//! The native backend over TLS (`cds:`) for the conformance suite: the same real `commsd`
//! processes as [`crate::native`], each also listening on a TLS port that requires a client
//! certificate (mutual TLS), and transports connecting with `cds://localhost:PORT?ca=..&
//! cert=..&key=..`. Certificates are made at start with `rcgen` (a CA, a server certificate
//! for `localhost`, a client certificate). A daemon keeps its TLS port across
//! `kill_and_restart` (first bound on port 0, then rebound on the port it got).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use comms_core::conformance::Backend;
use comms_core::{Capabilities, Error, Result, Transport};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::native::{commsd_binary, MAX_LINE, NODE, TEST_QUERY};

fn err(what: impl Into<String>) -> Error {
    Error::transport_msg("native", what, false)
}

/// PEM files of the test PKI.
#[derive(Debug, Clone)]
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> std::result::Result<Pki, String> {
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca.self_signed(&ca_key).map_err(e)?;
    let leaf = |san: &str| -> std::result::Result<(String, String), String> {
        let key = KeyPair::generate().map_err(e)?;
        let mut p = CertificateParams::new(vec![san.to_owned()]).map_err(e)?;
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &ca, &ca_key).map_err(e)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server, server_key) = leaf("localhost")?;
    let (client, client_key) = leaf("conformance.client")?;
    let pki = Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
    };
    for (path, text) in [
        (&pki.ca, ca.pem()),
        (&pki.server_cert, server),
        (&pki.server_key, server_key),
        (&pki.client_cert, client),
        (&pki.client_key, client_key),
    ] {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(pki)
}

/// One `commsd` with a Unix socket and a mutual-TLS listener.
#[derive(Debug)]
struct TlsCommsd {
    socket: PathBuf,
    tls: SocketAddr,
    child: Child,
}

impl TlsCommsd {
    async fn start(socket: &Path, tls: SocketAddr, pki: &Pki) -> Result<Self> {
        let ready = socket.with_extension("ready");
        let _ = std::fs::remove_file(&ready);
        let child = Command::new(commsd_binary()?)
            .args(["--name", NODE, "--no-tcp", "--no-udp"])
            .args(["--max-line", &MAX_LINE.to_string(), "--unix"])
            .arg(socket)
            .arg("--tls")
            .arg(tls.to_string())
            .arg("--tls-cert")
            .arg(&pki.server_cert)
            .arg("--tls-key")
            .arg(&pki.server_key)
            .arg("--tls-client-ca")
            .arg(&pki.ca)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("COMMSD_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| err(format!("spawn commsd: {e}")))?;
        let mut d = Self {
            socket: socket.to_path_buf(),
            tls,
            child,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                if let Some(a) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("commsd: listening tls "))
                {
                    d.tls = a.parse().map_err(|_| err(format!("bad tls line {a:?}")))?;
                    return Ok(d);
                }
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(err(format!("commsd exited: {status}")));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(err("commsd was not ready within 20 s"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn url(&self, pki: &Pki) -> String {
        format!(
            "cds://localhost:{}?node={NODE}&{TEST_QUERY}&ca={}&cert={}&key={}",
            self.tls.port(),
            pki.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display()
        )
    }
}

/// The native backend over `cds:` (see the module docs).
#[derive(Debug)]
pub struct NativeTlsBackend {
    dir: tempfile::TempDir,
    pki: Pki,
    daemons: Mutex<HashMap<String, TlsCommsd>>,
}

impl NativeTlsBackend {
    /// A backend with its own temp directory (sockets, certificates).
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("comms-native-tls-")
            .tempdir()
            .map_err(|e| err(format!("temp dir: {e}")))?;
        let pki = make_pki(dir.path()).map_err(|e| err(format!("test certificates: {e}")))?;
        Ok(Self {
            dir,
            pki,
            daemons: Mutex::new(HashMap::new()),
        })
    }
}

#[async_trait]
impl Backend for NativeTlsBackend {
    fn name(&self) -> String {
        "native-tls".into()
    }

    async fn connect(&self, namespace: &str, _slot: usize) -> Result<Box<dyn Transport>> {
        let url = {
            let mut daemons = self.daemons.lock().await;
            if !daemons.contains_key(namespace) {
                let socket = self.dir.path().join(format!("{}.sock", daemons.len()));
                let any = SocketAddr::from(([127, 0, 0, 1], 0));
                let d = TlsCommsd::start(&socket, any, &self.pki).await?;
                daemons.insert(namespace.to_owned(), d);
            }
            daemons
                .get(namespace)
                .map(|d| d.url(&self.pki))
                .ok_or_else(|| err("daemon vanished"))?
        };
        comms::connect_url(&url).await
    }

    fn capabilities(&self) -> Capabilities {
        crate::native::test_capabilities(&format!("cds://localhost:1?node={NODE}&{TEST_QUERY}"))
    }

    fn restart_unsupported(&self) -> Option<String> {
        None
    }

    fn single_node(&self) -> Option<String> {
        Some(format!("every slot is the one commsd of the namespace (node `{NODE}`); two instances of one service need two nodes (see the native-cluster backend)"))
    }

    async fn kill_and_restart(&self) -> Result<()> {
        let mut daemons = self.daemons.lock().await;
        for d in daemons.values_mut() {
            d.child
                .kill()
                .await
                .map_err(|e| err(format!("kill commsd: {e}")))?;
            // Same socket, same TLS port: clients reconnect to the URL they have.
            *d = TlsCommsd::start(&d.socket.clone(), d.tls, &self.pki).await?;
        }
        Ok(())
    }
}
