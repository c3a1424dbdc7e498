//! Backend `native`: `NativeTransport` (`cd://` Unix socket) to a real `commsd` child process
//! (the product binary, single-threaded runtime). The `native-relay` rows (three peered
//! daemons) are in [`crate::native_relay`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use comms_core::Transport;
use comms_native::transport::NativeTransport;
use futures_util::future::BoxFuture;
use tokio::process::{Child, Command};

use crate::endpoint_driver::{self, Connector};
use crate::report::{Mode, Progress, Row};
use crate::scale::{Scale, PAYLOADS};

/// Node name of the bench daemon.
const NODE: &str = "bench";

/// A `commsd` child process on a Unix socket in a temp dir; killed on drop.
#[derive(Debug)]
pub struct Commsd {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    child: Child,
}

impl Commsd {
    /// Start `commsd --name bench --no-tcp --no-udp --unix SOCK` and wait until it accepts.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = crate::commsd_bin::commsd_binary()?;
        let dir = tempfile::Builder::new().prefix("comms-bench-").tempdir()?;
        let socket = dir.path().join("commsd.sock");
        let child = Command::new(&bin)
            .args(["--name", NODE, "--no-tcp", "--no-udp", "--unix"])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(crate::commsd_bin::commsd_stderr())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let mut d = Self {
            _dir: dir,
            socket,
            child,
        };
        d.wait_accepting().await?;
        Ok(d)
    }

    async fn wait_accepting(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::UnixStream::connect(&self.socket).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("commsd exited: {status}");
            }
            if tokio::time::Instant::now() > deadline {
                bail!("commsd did not accept connections within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The daemon's process id (for profilers).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Native transports: the sending side on `send`, the receiving side on `receive` (the same
/// daemon, or the far end of a relay).
pub struct Native {
    pub send: String,
    pub receive: String,
}

fn native(url: &str) -> anyhow::Result<Arc<dyn Transport>> {
    Ok(Arc::new(NativeTransport::connect(url)?))
}

impl Connector for Native {
    fn connect(&self) -> BoxFuture<'_, anyhow::Result<Arc<dyn Transport>>> {
        Box::pin(async { native(&self.send) })
    }

    fn connect_receiver(&self) -> BoxFuture<'_, anyhow::Result<Arc<dyn Transport>>> {
        Box::pin(async { native(&self.receive) })
    }
}

/// The native rows (one daemon for all of them).
pub async fn run(scale: &Scale, progress: &Progress) -> Vec<Row> {
    progress.step("native: start commsd");
    let daemon = match Commsd::start().await {
        Ok(d) => d,
        Err(e) => return skip_all("native", &format!("{e:#}")),
    };
    if let Some(pid) = daemon.pid() {
        eprintln!("           commsd pid {pid}");
    }
    let url = format!("cd://{}?node={NODE}", daemon.socket().display());
    let c = Native {
        send: url.clone(),
        receive: url,
    };
    endpoint_driver::rows("native", &c, scale, progress).await
}

/// Every (payload, mode) row of `backend`, skipped with `reason`.
pub fn skip_all(backend: &str, reason: &str) -> Vec<Row> {
    PAYLOADS
        .iter()
        .flat_map(|&p| {
            [Mode::AtMostOnce, Mode::AtLeastOnce].map(|m| Row::skipped(backend, p, m, reason))
        })
        .collect()
}
