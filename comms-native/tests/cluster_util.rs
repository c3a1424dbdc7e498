//! Shared helpers for the cluster tests (included with `#[path]`): real `commsd` processes
//! on loopback peer addresses, and raw line clients.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Bound on one expected line.
pub const WAIT: Duration = Duration::from_secs(10);
/// Bound on the cluster converging (links up, announcements flooded).
pub const CONVERGE: Duration = Duration::from_secs(30);

/// A unique prefix for node and service names of one test.
pub fn unique(tag: &str) -> String {
    format!("{tag}{}", std::process::id())
}

/// One `commsd` child process with a peer listener on 127.0.0.1.
#[allow(missing_debug_implementations)]
pub struct Node {
    pub name: String,
    pub tcp: SocketAddr,
    pub peer: SocketAddr,
    args: Vec<String>,
    child: Child,
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
        let mut args = vec![
            "--name".to_owned(),
            name.to_owned(),
            "--tcp".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--no-udp".to_owned(),
            "--allow-loopback-peers".to_owned(),
            "--peer-retry-secs".to_owned(),
            "1".to_owned(),
            "--allow-stop-from-tcp".to_owned(),
        ];
        if !neighbors.is_empty() {
            let list: Vec<String> = neighbors.iter().map(|a| a.to_string()).collect();
            args.push("--neighbors".to_owned());
            args.push(list.join(","));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(name, peer, args).await
    }

    async fn spawn(name: &str, peer: SocketAddr, args: Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_commsd"))
            .args(&args)
            .arg("--remote-listen")
            .arg(peer.to_string())
            .arg("--unix")
            .arg(dir.path().join("commsd.sock"))
            .env("RUST_LOG", "comms_native=debug")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::from(
                std::fs::File::create(log_path(name)).expect("log file"),
            ))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn commsd");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut tcp, mut bound) = (None, None);
        while tcp.is_none() || bound.is_none() {
            let l = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .expect("commsd prints its listeners")
                .expect("read stdout")
                .expect("commsd exited before listening");
            if let Some(a) = l.strip_prefix("commsd: listening tcp ") {
                tcp = Some(a.parse().expect("tcp addr"));
            }
            if let Some(a) = l.strip_prefix("commsd: listening peer ") {
                bound = Some(a.parse().expect("peer addr"));
            }
        }
        Self {
            name: name.to_owned(),
            tcp: tcp.expect("tcp"),
            peer: bound.expect("peer"),
            args,
            child,
            _dir: dir,
        }
    }

    /// SIGKILL (no DISCONNECT, no flush).
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
    }

    /// Starts the same daemon again (same name, same peer port, same neighbours).
    pub async fn restart(&mut self) {
        let peer = self.peer;
        let name = self.name.clone();
        let fresh = Self::spawn(&name, peer, self.args.clone()).await;
        *self = fresh;
    }

    /// A raw client on this node's TCP listener.
    pub async fn client(&self) -> Raw {
        Raw::connect(self.tcp).await
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

/// Where a node's stderr goes (kept for post-mortems of failed runs).
pub fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("commsd-cluster-{name}.log"))
}

/// A `param=value` of a line (value up to `;` or end).
pub fn param<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=");
    line.split(' ')
        .nth(1)
        .unwrap_or_default()
        .split(';')
        .find_map(|p| p.strip_prefix(key.as_str()))
        .unwrap_or_default()
}

/// The comma list of a parameter, as a sorted vector.
pub fn list(line: &str, name: &str) -> Vec<String> {
    let mut v: Vec<String> = param(line, name)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

pub fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

/// A raw line client, as a stock Communicator service (or daemon) talks.
#[allow(missing_debug_implementations)]
pub struct Raw {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).await.expect("connect"))
    }

    pub fn from_stream(s: TcpStream) -> Self {
        let (r, w) = s.into_split();
        Self {
            r: BufReader::new(r),
            w,
        }
    }

    pub async fn send(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).await.expect("write");
        self.w.write_all(b"\n").await.expect("write");
        self.w.flush().await.expect("flush");
    }

    /// The next line, without its `\n`.
    pub async fn line(&mut self) -> String {
        let mut s = String::new();
        let n = tokio::time::timeout(WAIT, self.r.read_line(&mut s))
            .await
            .expect("a line in time")
            .expect("read");
        assert!(n > 0, "connection closed while waiting for a line");
        s.trim_end_matches('\n').to_owned()
    }

    pub async fn expect(&mut self, expected: &str) {
        assert_eq!(self.line().await, expected);
    }

    pub async fn expect_prefix(&mut self, prefix: &str) -> String {
        let l = self.line().await;
        assert!(l.starts_with(prefix), "expected {prefix:?}..., got {l:?}");
        l
    }

    /// Skips lines until one starts with `prefix`; returns it.
    pub async fn skip_to(&mut self, prefix: &str) -> String {
        loop {
            let l = self.line().await;
            if l.starts_with(prefix) {
                return l;
            }
        }
    }

    /// Asserts nothing arrives within `ms`.
    pub async fn silent(&mut self, ms: u64) {
        let mut s = String::new();
        let r = tokio::time::timeout(Duration::from_millis(ms), self.r.read_line(&mut s)).await;
        assert!(r.is_err(), "expected silence, got {r:?} {s:?}");
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

    /// SNIFF (a dedicated connection).
    pub async fn sniff(&mut self, node: &str) {
        self.send("SNIFF").await;
        self.expect_prefix(&format!("<{node}:communicatord SNIFFING "))
            .await;
    }
}
