//! Shared helpers for the daemon tests (included with `#[path]`; not a test target itself
//! when included, but harmless if Cargo also builds it alone).
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use comms_native::daemon::{Daemon, DaemonConfig, DaemonHandle};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

pub const NODE: &str = "vm";
pub const WAIT: Duration = Duration::from_secs(5);

/// An in-process daemon on a temp Unix socket and ephemeral TCP/UDP ports.
pub async fn start_with(f: impl FnOnce(&mut DaemonConfig)) -> (tempfile::TempDir, DaemonHandle) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = DaemonConfig::ephemeral(NODE, dir.path().join("commsd.sock"));
    cfg.shutdown_grace = Duration::from_millis(100);
    f(&mut cfg);
    let h = Daemon::start(cfg).await.expect("daemon starts");
    (dir, h)
}

pub async fn start() -> (tempfile::TempDir, DaemonHandle) {
    start_with(|_| {}).await
}

/// A raw line client, exactly as a stock Communicator service talks.
#[allow(missing_debug_implementations)]
pub struct Raw {
    r: BufReader<Box<dyn AsyncRead + Unpin + Send>>,
    w: Box<dyn AsyncWrite + Unpin + Send>,
}

impl Raw {
    pub async fn tcp(h: &DaemonHandle) -> Self {
        let s = tokio::net::TcpStream::connect(h.tcp_addr().expect("tcp"))
            .await
            .expect("connect tcp");
        let (r, w) = s.into_split();
        Self {
            r: BufReader::new(Box::new(r)),
            w: Box::new(w),
        }
    }

    pub async fn unix_at(path: &Path) -> Self {
        let s = tokio::net::UnixStream::connect(path)
            .await
            .expect("connect unix");
        let (r, w) = s.into_split();
        Self {
            r: BufReader::new(Box::new(r)),
            w: Box::new(w),
        }
    }

    pub async fn unix(h: &DaemonHandle) -> Self {
        Self::unix_at(h.unix_path().expect("unix")).await
    }

    pub async fn send(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).await.expect("write");
        self.w.write_all(b"\n").await.expect("write");
        self.w.flush().await.expect("flush");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.expect("write");
    }

    /// The next line, with its `\n`.
    pub async fn line(&mut self) -> String {
        let mut s = String::new();
        let n = tokio::time::timeout(WAIT, self.r.read_line(&mut s))
            .await
            .expect("a line within 5 s")
            .expect("read");
        assert!(n > 0, "connection closed while waiting for a line");
        s
    }

    /// Asserts the next line is exactly `expected` (given without `\n`).
    pub async fn expect(&mut self, expected: &str) {
        assert_eq!(self.line().await, format!("{expected}\n"));
    }

    /// Asserts the next line starts with `prefix`; returns it without `\n`.
    pub async fn expect_prefix(&mut self, prefix: &str) -> String {
        let l = self.line().await;
        assert!(l.starts_with(prefix), "expected {prefix:?}..., got {l:?}");
        l.trim_end_matches('\n').to_owned()
    }

    /// Asserts nothing arrives within `ms`.
    pub async fn silent(&mut self, ms: u64) {
        let mut s = String::new();
        let r = tokio::time::timeout(Duration::from_millis(ms), self.r.read_line(&mut s)).await;
        assert!(r.is_err(), "expected silence, got {r:?} {s:?}");
    }

    /// Asserts the daemon closes the connection (possibly after some lines, returned).
    pub async fn eof(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut s = String::new();
            let n = tokio::time::timeout(WAIT, self.r.read_line(&mut s))
                .await
                .expect("EOF within 5 s")
                .unwrap_or(0);
            if n == 0 {
                return lines;
            }
            lines.push(s);
        }
    }

    /// REGISTER and check the exact HELP / READY bytes.
    pub async fn register(&mut self, name: &str, h: &DaemonHandle) {
        self.send(&format!("REGISTER service={name};version=1"))
            .await;
        self.expect(&format!("<{NODE}:communicatord HELP")).await;
        self.expect(&format!(
            "<{NODE}:communicatord READY my_address={}",
            h.my_address()
        ))
        .await;
    }

    /// Declares commands and waits until the daemon has processed them (HELP round trip).
    pub async fn commands(&mut self, list: &str, me: Option<&str>) {
        self.send(&format!("COMMANDS list={list}")).await;
        self.send("HELP").await;
        let to = me.map(|m| format!("{NODE}:{m}/")).unwrap_or_default();
        self.expect_prefix(&format!("{to}COMMANDS list=")).await;
    }
}
