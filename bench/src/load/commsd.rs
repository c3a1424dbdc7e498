//! A `commsd` child process on a Unix socket, sized for load; killed on drop.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// The daemon under load.
#[derive(Debug)]
pub struct Commsd {
    _dir: tempfile::TempDir,
    /// Its Unix socket.
    pub socket: PathBuf,
    child: Child,
}

impl Commsd {
    /// `commsd --name load --no-tcp --no-udp --unix SOCK --max-connections N` (and
    /// `--outbound-queue` left at its default), ready when it accepts.
    pub async fn start(max_connections: usize) -> anyhow::Result<Self> {
        let bin = crate::commsd_bin::commsd_binary()?;
        let dir = tempfile::Builder::new().prefix("comms-load-").tempdir()?;
        let socket = dir.path().join("commsd.sock");
        let child = Command::new(&bin)
            .args([
                "--name",
                "load",
                "--no-tcp",
                "--no-udp",
                "--max-connections",
            ])
            .arg(max_connections.to_string())
            .arg("--unix")
            .arg(&socket)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let mut d = Self {
            _dir: dir,
            socket,
            child,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::UnixStream::connect(&d.socket).await.is_err() {
            if let Some(status) = d.child.try_wait()? {
                bail!("commsd exited: {status}");
            }
            if tokio::time::Instant::now() > deadline {
                bail!("commsd did not accept connections within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(d)
    }

    /// The daemon's pid.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("commsd has exited")
    }

    /// `cd:///SOCK` for comms transports.
    pub fn url(&self) -> String {
        format!("cd://{}", self.socket.display())
    }
}
