//! Shared helpers for the daemon tests (included with `#[path]`): an in-process daemon and
//! raw stock-service clients on it ([`comms_test_support::Probe`], with the daemon's
//! greeting checks).
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use comms_test_support::Probe;
use commsd::{Daemon, DaemonConfig, DaemonHandle};

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

comms_test_support::probe_newtype! {
    /// A raw line client, exactly as a stock Communicator service talks.
    pub struct Raw;
}

impl Raw {
    pub async fn tcp(h: &DaemonHandle) -> Self {
        Self(Probe::tcp(h.tcp_addr().expect("tcp")).await)
    }

    pub async fn unix_at(path: &Path) -> Self {
        Self(Probe::unix(path).await)
    }

    pub async fn unix(h: &DaemonHandle) -> Self {
        Self::unix_at(h.unix_path().expect("unix")).await
    }

    /// REGISTER and check the exact HELP / READY lines.
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

    /// A TCP client registered as `name` ([`Self::register`]).
    pub async fn tcp_as(h: &DaemonHandle, name: &str) -> Self {
        let mut c = Self::tcp(h).await;
        c.register(name, h).await;
        c
    }

    /// A Unix-socket client registered as `name` ([`Self::register`]).
    pub async fn unix_as(h: &DaemonHandle, name: &str) -> Self {
        let mut c = Self::unix(h).await;
        c.register(name, h).await;
        c
    }

    /// Declares commands and waits until the daemon has processed them (HELP round trip).
    pub async fn commands(&mut self, list: &str, me: Option<&str>) {
        self.send(&format!("COMMANDS list={list}")).await;
        self.send("HELP").await;
        let to = me.map(|m| format!("{NODE}:{m}/")).unwrap_or_default();
        self.expect_prefix(&format!("{to}COMMANDS list=")).await;
    }
}
