//! Backend `native-relay`: the native rows **through an intermediate daemon**. Three real
//! `commsd` processes peer in a line A – B – C over 127.0.0.1 (`--allow-loopback-peers`);
//! senders and request clients connect to A, sinks and echo endpoints to C, so every message
//! crosses B (and every reply crosses it back). Each daemon is single-threaded, as in the
//! `native` rows; the rows are measured by the same [`endpoint_driver`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::endpoint_driver;
use crate::native::{skip_all, Native};
use crate::report::{Progress, Row};
use crate::scale::Scale;

/// How long the line may take to form (links up, services announced).
const CONVERGE: Duration = Duration::from_secs(20);

/// One peered `commsd` child process; killed on drop.
#[derive(Debug)]
struct Peer {
    name: String,
    socket: PathBuf,
    peer: SocketAddr,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Peer {
    /// Starts `commsd --name NAME` on a Unix socket with a peer listener on 127.0.0.1:0,
    /// dialing `neighbor`; returns once it printed its peer address.
    async fn start(name: &str, neighbor: Option<SocketAddr>) -> anyhow::Result<Self> {
        let bin = crate::commsd_bin::commsd_binary()?;
        let dir = tempfile::Builder::new().prefix("comms-bench-").tempdir()?;
        let socket = dir.path().join("commsd.sock");
        let mut cmd = Command::new(&bin);
        cmd.args(["--name", name, "--no-tcp", "--no-udp", "--unix"])
            .arg(&socket)
            .args(["--remote-listen", "127.0.0.1:0", "--allow-loopback-peers"])
            .args(["--peer-retry-secs", "1"]);
        if let Some(n) = neighbor {
            cmd.arg("--neighbors").arg(n.to_string());
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(crate::commsd_bin::commsd_stderr())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let stdout = child.stdout.take().context("commsd stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let peer = loop {
            let line = tokio::time::timeout(CONVERGE, lines.next_line())
                .await
                .context("commsd did not print its peer listener")??
                .context("commsd exited before listening")?;
            if let Some(a) = line.strip_prefix("commsd: listening peer ") {
                break a.parse().context("peer address")?;
            }
        };
        // Keep reading stdout so the daemon never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            name: name.to_owned(),
            socket,
            peer,
            _child: child,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("cd://{}?node={}", self.socket.display(), self.name)
    }

    /// This daemon's `CLUSTER_MAP` reply line (asked as an unregistered client).
    async fn cluster_map(&self) -> anyhow::Result<String> {
        let s = tokio::net::UnixStream::connect(&self.socket).await?;
        let (r, mut w) = s.into_split();
        w.write_all(b"CLUSTER_MAP\n").await?;
        let mut lines = BufReader::new(r).lines();
        loop {
            let line = lines.next_line().await?.context("daemon closed")?;
            if line.contains("CLUSTER_MAP") {
                return Ok(line);
            }
        }
    }
}

/// A, B (neighbour A), C (neighbour B); returns once A sees both links.
async fn line_of_three() -> anyhow::Result<[Peer; 3]> {
    let tag = std::process::id();
    let a = Peer::start(&format!("relaya{tag}"), None).await?;
    let b = Peer::start(&format!("relayb{tag}"), Some(a.peer)).await?;
    let c = Peer::start(&format!("relayc{tag}"), Some(b.peer)).await?;
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let map = a.cluster_map().await.unwrap_or_default();
        let links = [
            format!("{}-{}", a.name, b.name),
            format!("{}-{}", b.name, c.name),
        ];
        if links.iter().all(|l| map.contains(l.as_str())) {
            return Ok([a, b, c]);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the line A-B-C did not form within {CONVERGE:?} (last CLUSTER_MAP: {map})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The native-relay rows (one line of three daemons for all of them).
pub async fn run(scale: &Scale, progress: &Progress) -> Vec<Row> {
    progress.step("native-relay: start commsd A - B - C");
    let [a, _b, c] = match line_of_three().await {
        Ok(line) => line,
        Err(e) => return skip_all("native-relay", &format!("{e:#}")),
    };
    let relay = Native {
        send: a.url(),
        receive: c.url(),
    };
    endpoint_driver::rows("native-relay", &relay, scale, progress).await
}
