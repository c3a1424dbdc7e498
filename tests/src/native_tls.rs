//! The native backend over TLS (`cds:`) for the conformance suite: the same real `commsd`
//! processes as [`crate::native`], each also listening on a TLS port that requires a client
//! certificate (mutual TLS), and transports connecting with `cds://localhost:PORT?ca=..&
//! cert=..&key=..`. Certificates are made at start with `comms_test_support::Pki` (a CA, a server certificate
//! for `localhost`, a client certificate). A daemon keeps its TLS port across
//! `kill_and_restart` (first bound on port 0, then rebound on the port it got).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use comms_conformance::Backend;
use comms_core::{Capabilities, Error, Result, Transport};
use comms_test_support::{Commsd, CommsdSpec, Leaf};
use tokio::sync::Mutex;

use crate::native::{for_namespace, MAX_LINE, NODE, TEST_QUERY};

fn err(what: impl std::fmt::Display) -> Error {
    Error::transport_msg("native", what.to_string(), false)
}

/// PEM files of the test PKI (made with [`comms_test_support::Pki`]).
#[derive(Debug)]
struct Pki {
    ca: PathBuf,
    server: Leaf,
    client: Leaf,
    _files: comms_test_support::Pki,
}

fn make_pki() -> comms_test_support::Result<Pki> {
    let files = comms_test_support::Pki::new()?;
    let ca = files.ca("conformance")?;
    Ok(Pki {
        server: files.leaf(&ca, "server", &["localhost"])?,
        client: files.leaf(&ca, "client", &["conformance.client"])?,
        ca: ca.pem,
        _files: files,
    })
}

/// One `commsd` with a Unix socket and a mutual-TLS listener.
#[derive(Debug)]
struct TlsCommsd {
    daemon: Commsd,
}

impl TlsCommsd {
    async fn start(socket: &Path, pki: &Pki) -> Result<Self> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let daemon = CommsdSpec::find()
            .map_err(err)?
            .name(NODE)
            .unix_only(socket)
            .max_line(MAX_LINE)
            .tls(any, &pki.server.cert, &pki.server.key, Some(&pki.ca))
            .start()
            .await
            .map_err(err)?;
        Ok(Self { daemon })
    }

    fn url(&self, pki: &Pki) -> Result<String> {
        let tls = self
            .daemon
            .listeners()
            .tls
            .ok_or_else(|| err("commsd announced no tls listener"))?;
        Ok(format!(
            "cds://localhost:{}?node={NODE}&{TEST_QUERY}&ca={}&cert={}&key={}",
            tls.port(),
            pki.ca.display(),
            pki.client.cert.display(),
            pki.client.key.display()
        ))
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
        let dir = crate::native::temp_dir("comms-native-tls-")?;
        let pki = make_pki().map_err(|e| err(format!("test certificates: {e}")))?;
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
            let socket = |n: usize| self.dir.path().join(format!("{n}.sock"));
            for_namespace(&mut daemons, namespace, |n| async move {
                TlsCommsd::start(&socket(n), &self.pki).await
            })
            .await?
            .url(&self.pki)?
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
        crate::native::single_node()
    }

    async fn kill_and_restart(&self) -> Result<()> {
        let mut daemons = self.daemons.lock().await;
        for d in daemons.values_mut() {
            // SIGKILL; same socket, same TLS port: clients reconnect to the URL they have.
            d.daemon.restart().await.map_err(err)?;
        }
        Ok(())
    }
}
