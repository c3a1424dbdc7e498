//! The Kafka backend for the cross-backend suites: a real `tansu` broker per backend, on a
//! free port, with its SQLite store in a temporary directory, so that
//! [`Backend::kill_and_restart`] is SIGKILL and a restart on the same port and file.
//!
//! `tansu` comes from `cargo install tansu --locked --features dynostore,libsql`; the
//! binary is looked up in `$TANSU_BIN`, then `PATH`, then `~/.cargo/bin`. When it is missing,
//! starting the backend fails with a message saying how to build it (tests never skip).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use comms_core::conformance::Backend;
use comms_core::{Capabilities, Config, Error, Result, Transport};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// How to build the broker, printed when it is missing.
pub const TANSU_HINT: &str =
    "the `tansu` broker is needed for the Kafka tests: build it with `cargo install tansu --locked --features dynostore,libsql` (or set TANSU_BIN)";

/// Where the `tansu` binary is.
pub fn tansu_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("TANSU_BIN={} does not exist; {TANSU_HINT}", p.display());
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
        .with_context(|| format!("tansu not found; {TANSU_HINT}"))
}

/// Log to the test output as `RUST_LOG` says (nothing by default).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A running tansu broker.
#[derive(Debug)]
pub struct Tansu {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl Tansu {
    /// Start a broker with a SQLite store in a fresh temporary directory.
    pub async fn start() -> anyhow::Result<Self> {
        let mut t = Self {
            binary: tansu_binary()?,
            port: free_port()?,
            dir: tempfile::tempdir()?,
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

    async fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let log =
            std::fs::File::create(self.dir.path().join(format!("tansu-{}.log", self.starts)))?;
        let child = Command::new(&self.binary)
            .current_dir(self.dir.path())
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!(
                        "tansu exited with {status} on start; log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "tansu did not accept connections within 60 s; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The end of the current log.
    pub fn log_tail(&self) -> String {
        let path = self.dir.path().join(format!("tansu-{}.log", self.starts));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGKILL the broker and start it again on the same port and store.
    pub async fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill()?; // SIGKILL
            c.wait().await?;
        }
        self.spawn().await
    }
}

/// The Kafka backend: slot `n` is node `n{n}`, a namespace is a topic prefix.
#[derive(Debug)]
pub struct KafkaBackend {
    url: String,
    broker: Mutex<Tansu>,
}

impl KafkaBackend {
    /// Start a broker for this backend.
    pub async fn start() -> anyhow::Result<Self> {
        let broker = Tansu::start().await?;
        Ok(Self {
            url: broker.url(),
            broker: Mutex::new(broker),
        })
    }

    /// The broker URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A configuration for `node` in `namespace`.
    pub fn config(&self, namespace: &str, node: &str) -> Result<Config> {
        config_for(&self.url, namespace, node)
    }

    /// An endpoint `service` on `node` in `namespace`, built by `build`, started.
    pub async fn endpoint(
        &self,
        namespace: &str,
        node: &str,
        service: &str,
        build: impl FnOnce(comms_core::EndpointBuilder) -> comms_core::EndpointBuilder,
    ) -> Result<comms_core::Endpoint> {
        let transport = comms::connect(&self.config(namespace, node)?).await?;
        build(comms_core::Endpoint::builder(transport, service))
            .start()
            .await
    }
}

/// A configuration for the broker at `url`, as `node` in `namespace`.
pub fn config_for(url: &str, namespace: &str, node: &str) -> Result<Config> {
    let mut c = Config::from_url(url)?;
    c.transport.node = Some(node.to_owned());
    c.transport.namespace = Some(namespace.to_owned());
    Ok(c)
}

#[async_trait]
impl Backend for KafkaBackend {
    fn name(&self) -> String {
        "kafka".into()
    }

    async fn connect(&self, namespace: &str, slot: usize) -> Result<Box<dyn Transport>> {
        comms::connect(&self.config(namespace, &format!("n{slot}"))?).await
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::new("kafka");
        caps.max_message_size = comms_kafka::MAX_MESSAGE_SIZE;
        caps.queue_bound = comms_kafka::KafkaSection::default().queue_bound;
        caps.survives_restart = true;
        caps
    }

    fn restart_unsupported(&self) -> Option<String> {
        None
    }

    async fn kill_and_restart(&self) -> Result<()> {
        self.broker
            .lock()
            .await
            .kill_and_restart()
            .await
            .map_err(|e| Error::transport_msg("kafka", format!("restarting tansu: {e:#}"), false))
    }
}
