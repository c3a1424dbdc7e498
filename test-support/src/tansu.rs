//! A Kafka broker for tests and the bench: a `tansu` child process on a free loopback port,
//! its log (and SQLite store) in its own temp directory; SIGKILLed when dropped.
//!
//! `tansu` comes from `cargo install tansu --locked --features dynostore,libsql`; the binary
//! is `$TANSU_BIN`, else the first `tansu` on `PATH`, else `~/.cargo/bin/tansu`. Topics are
//! kept apart per test by a namespace from [`crate::unique_name`].

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::{Error, Result};

/// How to build the broker, said when it is missing.
pub const TANSU_HINT: &str =
    "the `tansu` broker is needed for the Kafka tests: build it with `cargo install tansu --locked --features dynostore,libsql` (or set TANSU_BIN)";

/// How long a start may take.
const START: Duration = Duration::from_secs(60);

/// Where `tansu` is (see the module docs).
pub fn tansu_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(Error::Failed(format!(
            "TANSU_BIN={} does not exist; {TANSU_HINT}",
            p.display()
        )));
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("tansu")).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/tansu"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Failed(format!("tansu not found; {TANSU_HINT}")))
}

/// Where the broker keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TansuStore {
    /// A SQLite file in the temp directory: survives [`Tansu::kill_and_restart`].
    Sqlite,
    /// In memory (every start is an empty broker).
    Memory,
}

/// A running tansu broker.
#[derive(Debug)]
pub struct Tansu {
    binary: PathBuf,
    port: u16,
    store: TansuStore,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl Tansu {
    /// A broker with a SQLite store (see [`TansuStore`]).
    pub async fn start() -> Result<Self> {
        Self::start_with(TansuStore::Sqlite).await
    }

    /// A broker on `store`, ready when it accepts TCP connections.
    pub async fn start_with(store: TansuStore) -> Result<Self> {
        let mut t = Self {
            binary: tansu_binary()?,
            port: crate::free_port()?,
            store,
            dir: tempfile::tempdir().map_err(Error::io("temp dir"))?,
            child: None,
            starts: 0,
        };
        t.spawn().await?;
        Ok(t)
    }

    /// `127.0.0.1:port`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `kafka://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("kafka://{}", self.bootstrap())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("tansu-{}.log", self.starts))
    }

    async fn spawn(&mut self) -> Result<()> {
        self.starts += 1;
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let log_path = self.log_path();
        let log = std::fs::File::create(&log_path).map_err(Error::io("tansu log"))?;
        let log2 = log.try_clone().map_err(Error::io("tansu log"))?;
        let storage = match self.store {
            TansuStore::Sqlite => "sqlite://tansu.db",
            TansuStore::Memory => "memory://tansu/",
        };
        let child = Command::new(&self.binary)
            .current_dir(self.dir.path())
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", storage])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log2))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::io(format!("starting {}", self.binary.display())))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + START;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(Error::Failed(format!(
                    "tansu exited with {status} on start; log:\n{}",
                    self.log_tail()
                )));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Failed(format!(
                    "tansu did not accept connections within {START:?}; log:\n{}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last 30 lines of the current log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGSTOP (`stop = true`) or SIGCONT the broker: it keeps its connections but answers
    /// nothing while stopped, so clients' requests wait in flight.
    pub async fn freeze(&self, stop: bool) -> Result<()> {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .ok_or_else(|| Error::Failed("tansu is not running".into()))?;
        let signal = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await
            .map_err(Error::io("kill"))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Failed(format!("kill {signal} {pid}: {status}")))
        }
    }

    /// SIGKILL the broker and start it again on the same port and store.
    pub async fn kill_and_restart(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill().map_err(Error::io("SIGKILL tansu"))?;
            c.wait().await.map_err(Error::io("wait for tansu"))?;
        }
        self.spawn().await
    }
}
