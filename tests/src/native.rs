//! The native backend for the conformance suite: real `commsd` **processes**.
//!
//! - **Which binary**: [`comms_test_support::commsd_binary`] — `$COMMSD_BIN` when set;
//!   otherwise built up to date in the test's own target dir; the process is
//!   [`comms_test_support::Commsd`].
//! - **One daemon per namespace**, each on its own Unix socket in a temp directory (a socket
//!   path is stable across restarts; no TCP or UDP port is used). commsd has no namespaces of
//!   its own: a deployment is a daemon, so case 4 runs and proves that two daemons share
//!   nothing. Daemons run with `--max-line` 4 MiB and transports with `max_message_size`
//!   1.5 MiB, so case 7 round-trips a real 1 MiB payload. Every slot of a namespace is the same daemon (one node), so two
//!   instances of one service cannot both be live; `single_node` says so, and the suite skips
//!   `service_anycast` with that reason (and `lookup` uses distinct services). The same suite
//!   on peering daemons is [`crate::native_cluster`].
//! - **kill_and_restart**: SIGKILL every live daemon, start each again on the same socket,
//!   return once each accepts connections.

use std::collections::hash_map::{Entry, HashMap};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use comms_conformance::Backend;
use comms_core::{Capabilities, Error, Result, Transport};
use comms_test_support::{Commsd, CommsdSpec};
use tokio::sync::Mutex;

/// The node name every test daemon gets (`--name`), given to transports as `?node=`.
pub const NODE: &str = "cnative";

/// Line limit the test daemons get (`--max-line`), so that 1 MiB payloads round-trip.
pub const MAX_LINE: usize = 4 * 1024 * 1024;

/// Query options of test transports: fast reconnects, payloads up to 1.5 MiB (escaped, that
/// stays under [`MAX_LINE`]).
pub const TEST_QUERY: &str = "retry=0.05,0.1,0.2,0.5&max_message_size=1572864";

/// The native transport's capabilities for `url` (a `cd:`/`cds:` URL with [`TEST_QUERY`]),
/// with namespaces on: each conformance backend gives every namespace its own daemon(s).
pub fn test_capabilities(url: &str) -> Capabilities {
    let mut caps = comms_core::TransportUrl::parse(url)
        .and_then(|u| comms_native::transport::NativeOptions::from_url(&u))
        .map(|o| comms_native::transport::capabilities(&o))
        .unwrap_or_else(|_| Capabilities::new("native"));
    caps.namespaces = true;
    caps
}

fn err(what: impl std::fmt::Display) -> Error {
    Error::transport_msg("native", what.to_string(), false)
}

/// What a backend runs for `namespace` in `running` (a daemon, a ring), started by
/// `start(n)` on first use, `n` being how many run already (the new one's index).
pub(crate) async fn for_namespace<'m, T, F>(
    running: &'m mut HashMap<String, T>,
    namespace: &str,
    start: impl FnOnce(usize) -> F,
) -> Result<&'m T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let n = running.len();
    Ok(match running.entry(namespace.to_owned()) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(start(n).await?),
    })
}

/// A backend's own temp directory (its sockets, certificates), named `PREFIX...`.
pub(crate) fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| err(format!("temp dir: {e}")))
}

/// Why one daemon per namespace is a single node (for [`Backend::single_node`]).
pub fn single_node() -> Option<String> {
    Some(format!("every slot is the one commsd of the namespace (node `{NODE}`); two instances of one service need two nodes (see the native-cluster backend)"))
}

/// One `commsd` child process on a Unix socket.
#[derive(Debug)]
pub struct CommsdProcess {
    socket: PathBuf,
    daemon: Commsd,
}

impl CommsdProcess {
    /// Start `commsd --name NODE --no-tcp --no-udp --unix SOCKET --max-line MAX_LINE` and wait
    /// until it accepts.
    pub async fn start(socket: &Path) -> Result<Self> {
        let daemon = CommsdSpec::find()
            .map_err(err)?
            .name(NODE)
            .unix_only(socket)
            .max_line(MAX_LINE)
            .start()
            .await
            .map_err(err)?;
        Ok(Self {
            socket: socket.to_path_buf(),
            daemon,
        })
    }

    /// The `cd:` URL of this daemon, with test options.
    pub fn url(&self) -> String {
        format!("cd://{}?node={NODE}&{TEST_QUERY}", self.socket.display())
    }

    /// SIGKILL, then start again on the same socket.
    pub async fn kill_and_restart(&mut self) -> Result<()> {
        self.daemon.restart().await.map_err(err)
    }
}

/// The native backend: one real `commsd` process per namespace.
#[derive(Debug)]
pub struct NativeBackend {
    dir: tempfile::TempDir,
    daemons: Mutex<HashMap<String, CommsdProcess>>,
}

impl NativeBackend {
    /// A backend with its own temp directory for sockets.
    pub fn new() -> Result<Self> {
        Ok(Self {
            dir: temp_dir("comms-native-")?,
            daemons: Mutex::new(HashMap::new()),
        })
    }

    /// The URL of the daemon serving `namespace` (started on first use).
    pub async fn url(&self, namespace: &str) -> Result<String> {
        let mut daemons = self.daemons.lock().await;
        let socket = |n: usize| self.dir.path().join(format!("{n}.sock"));
        let d = for_namespace(&mut daemons, namespace, |n| async move {
            CommsdProcess::start(&socket(n)).await
        })
        .await?;
        Ok(d.url())
    }
}

#[async_trait]
impl Backend for NativeBackend {
    fn name(&self) -> String {
        "native".into()
    }

    async fn connect(&self, namespace: &str, _slot: usize) -> Result<Box<dyn Transport>> {
        comms::connect_url(&self.url(namespace).await?).await
    }

    fn capabilities(&self) -> Capabilities {
        // Namespaces are separate daemons (see the module docs).
        test_capabilities(&format!("cd:///x.sock?node={NODE}&{TEST_QUERY}"))
    }

    fn restart_unsupported(&self) -> Option<String> {
        None
    }

    fn single_node(&self) -> Option<String> {
        single_node()
    }

    async fn kill_and_restart(&self) -> Result<()> {
        let mut daemons = self.daemons.lock().await;
        for d in daemons.values_mut() {
            d.kill_and_restart().await?;
        }
        Ok(())
    }
}
