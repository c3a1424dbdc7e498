//! Shared helpers for the cluster tests (included with `#[path]`): real `commsd` processes
//! ([`comms_test_support::Commsd`]) on loopback peer addresses, and raw line clients
//! ([`comms_test_support::Probe`]) with the cluster's registration steps.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[allow(unused_imports)] // not every test uses each
pub use comms_test_support::line::{list, param};
#[allow(unused_imports)]
pub use comms_test_support::names::{loopback_any as loopback0, process_name as unique};
use comms_test_support::{Commsd, CommsdSpec, LineClient, Probe, Stderr};
use commsd::tls::PeerTls;
use commsd::{Daemon, DaemonConfig, DaemonHandle, PeerConfig};
use tokio::net::{TcpListener, TcpStream};

/// Bound on one expected line.
pub const WAIT: Duration = Duration::from_secs(10);
/// Bound on the cluster converging (links up, announcements flooded).
pub const CONVERGE: Duration = Duration::from_secs(30);

/// One `commsd` child process with a peer listener on 127.0.0.1.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub tcp: SocketAddr,
    pub peer: SocketAddr,
    daemon: Commsd,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts `name` with its peer listener on `peer` (port 0: any) and `neighbors`.
    pub async fn start(
        name: &str,
        peer: SocketAddr,
        neighbors: &[SocketAddr],
        extra: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let daemon = CommsdSpec::new(env!("CARGO_BIN_EXE_commsd"))
            .name(name)
            .tcp_any()
            .args([
                "--no-udp",
                "--peer-retry-secs",
                "1",
                "--allow-stop-from-tcp",
                "--allow-sniff-from-tcp",
            ])
            .peers(peer, neighbors)
            .args(extra)
            .arg("--unix")
            .arg(dir.path().join("commsd.sock"))
            .env("RUST_LOG", "commsd=debug")
            .stderr(Stderr::File(log_path(name)))
            .start()
            .await
            .expect("commsd starts");
        let l = daemon.listeners();
        Self {
            name: name.to_owned(),
            tcp: l.tcp.expect("tcp listener"),
            peer: l.peer.expect("peer listener"),
            daemon,
            _dir: dir,
        }
    }

    /// SIGKILL (no DISCONNECT, no flush).
    pub async fn kill(&mut self) {
        self.daemon.kill().await.expect("SIGKILL");
    }

    /// Starts the same daemon again (same name, same ports, same neighbours).
    pub async fn restart(&mut self) {
        self.daemon.restart().await.expect("commsd restarts");
    }

    /// A raw client on this node's TCP listener.
    pub async fn client(&self) -> Raw {
        Raw::connect(self.tcp).await
    }

    /// A client registered as `service`, declaring `commands` ([`Raw::register`]).
    pub async fn service(&self, service: &str, commands: &str) -> Raw {
        let mut c = self.client().await;
        c.register(&self.name, service, commands).await;
        c
    }

    /// Polls `CLUSTER_MAP` until `check` accepts its line (bounded by [`CONVERGE`]).
    pub async fn wait_map(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + CONVERGE;
        let mut c = self.client().await;
        loop {
            c.send("CLUSTER_MAP").await;
            let l = c.expect_prefix("CLUSTER_MAP ").await;
            if check(&l) {
                return l;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: cluster map never showed {what}; last: {l}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An in-process daemon `name` (Unix socket in `dir`, TCP, no UDP) with a peer listener on
/// 127.0.0.1 port 0, `neighbors`, redials every 200 ms and, when given, peer TLS.
pub async fn in_process(
    dir: &Path,
    name: &str,
    neighbors: Vec<SocketAddr>,
    tls: Option<PeerTls>,
) -> DaemonHandle {
    let mut cfg = DaemonConfig::ephemeral(name, dir.join(format!("{name}.sock")));
    cfg.udp = None;
    cfg.peers = PeerConfig {
        listen: Some(loopback0()),
        allow_loopback: true,
        neighbors,
        retry: vec![Duration::from_millis(200)],
        insecure: tls.is_none(),
        tls,
        ..PeerConfig::default()
    };
    Daemon::start(cfg).await.unwrap()
}

/// A client of in-process daemon `h` (node `node`) registered as `service`, declaring
/// `commands` ([`Raw::register`]).
pub async fn service_on(h: &DaemonHandle, node: &str, service: &str, commands: &str) -> Raw {
    let mut c = Raw::connect(h.tcp_addr().unwrap()).await;
    c.register(node, service, commands).await;
    c
}

/// The `CLUSTER_MAP` line of an in-process daemon.
pub async fn map(h: &DaemonHandle) -> String {
    let mut c = Raw::connect(h.tcp_addr().unwrap()).await;
    c.send("CLUSTER_MAP").await;
    c.expect_prefix("CLUSTER_MAP ").await
}

/// Where a node's stderr goes (kept for post-mortems of failed runs).
pub fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("commsd-cluster-{name}.log"))
}

/// A listener for a stock-peer double on `ip`, port 0, and its address.
pub async fn stock_listener(ip: &str) -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A commsd `name` on 127.0.0.1 whose one neighbour is a stock-peer double on 127.0.0.2
/// (larger: commsd gossips to it, the double dials): the node, the double's listener, and
/// the connection on which the node's first `GOSSIP my_address=...` was received.
pub async fn gossiping_to_stock(name: &str) -> (Node, TcpListener, Raw) {
    let (fake, fake_addr) = stock_listener("127.0.0.2").await;
    let node = Node::start(name, loopback0(), &[fake_addr], &[]).await;
    let mut g = accept(&fake).await;
    g.expect(&format!("GOSSIP my_address={}", node.peer)).await;
    (node, fake, g)
}

/// The connection commsd makes to a stock-peer double listening on `l` (within [`WAIT`]).
pub async fn accept(l: &TcpListener) -> Raw {
    let (s, _) = tokio::time::timeout(WAIT, l.accept())
        .await
        .expect("commsd connects to the stock peer")
        .expect("accept");
    Raw::from_stream(s)
}

comms_test_support::probe_newtype! {
    /// A raw line client, as a stock Communicator service (or daemon) talks.
    pub struct Raw;
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self(Probe::tcp(addr).await)
    }

    pub fn from_stream(s: TcpStream) -> Self {
        Self(LineClient::from_stream(s).into())
    }

    /// REGISTER on `node` and declare `commands`; waits for the HELP round trip.
    pub async fn register(&mut self, node: &str, service: &str, commands: &str) {
        self.send(&format!("REGISTER service={service};version=1"))
            .await;
        self.expect(&format!("<{node}:communicatord HELP")).await;
        self.expect_prefix(&format!("<{node}:communicatord READY "))
            .await;
        self.send(&format!("COMMANDS list={commands}")).await;
        self.send("HELP").await;
        self.skip_to(&format!("{node}:{service}/COMMANDS list="))
            .await;
    }

    /// Links as a stock daemon does, to `node`'s peer listener: a `CONNECT` with the stock
    /// parameter set (`my_address`, `server_name`); returns the `ACCEPT` line it answers.
    pub async fn stock_connect(
        &mut self,
        node: &str,
        my_address: impl std::fmt::Display,
        server_name: &str,
    ) -> String {
        self.send(&format!(
            "CONNECT my_address={my_address};server_name={server_name};version=1"
        ))
        .await;
        self.expect_prefix(&format!("<{node}:communicatord ACCEPT "))
            .await
    }

    /// SNIFF (a dedicated connection).
    pub async fn sniff(&mut self, node: &str) {
        self.send("SNIFF").await;
        self.expect_prefix(&format!("<{node}:communicatord SNIFFING "))
            .await;
    }
}
