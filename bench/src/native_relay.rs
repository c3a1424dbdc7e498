//! Backend `native-relay`: the native rows **through an intermediate daemon**. Three real
//! `commsd` processes peer in a line A – B – C over 127.0.0.1 (`--allow-loopback-peers`);
//! senders and request clients connect to A, sinks and echo endpoints to C, so every message
//! crosses B (and every reply crosses it back). Each daemon is single-threaded, as in the
//! `native` rows; the rows are measured by the same [`endpoint_driver`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use comms_test_support::{loopback_any, Commsd, CommsdSpec, LineClient};

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
    _daemon: Commsd,
}

impl Peer {
    /// Starts `commsd --name NAME` on a Unix socket with a peer listener on 127.0.0.1:0,
    /// dialing `neighbor`; returns once it is ready.
    async fn start(name: &str, neighbor: Option<SocketAddr>) -> anyhow::Result<Self> {
        let daemon = CommsdSpec::find()?
            .name(name)
            .unix_only_in_dir()
            .peers(loopback_any(), neighbor.as_slice())
            .args(["--peer-retry-secs", "1"])
            .timeout(CONVERGE)
            .start()
            .await?;
        let l = daemon.listeners();
        Ok(Self {
            name: name.to_owned(),
            socket: l.unix.clone().context("no unix listener")?,
            peer: l.peer.context("no peer listener")?,
            _daemon: daemon,
        })
    }

    fn url(&self) -> String {
        format!("cd://{}?node={}", self.socket.display(), self.name)
    }

    /// This daemon's `CLUSTER_MAP` reply line (asked as an unregistered client).
    async fn cluster_map(&self) -> anyhow::Result<String> {
        let mut c = LineClient::unix(&self.socket).await?;
        c.send("CLUSTER_MAP").await?;
        Ok(c.next_matching(|l| l.contains("CLUSTER_MAP")).await?)
    }
}

/// A, B (neighbour A), C (neighbour B); returns once A sees both links.
async fn line_of_three() -> anyhow::Result<[Peer; 3]> {
    let name = comms_test_support::names::process_name;
    let a = Peer::start(&name("relaya"), None).await?;
    let b = Peer::start(&name("relayb"), Some(a.peer)).await?;
    let c = Peer::start(&name("relayc"), Some(b.peer)).await?;
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
