//! The RabbitMQ backend for the suites: the real broker at `127.0.0.1:5672` (override with
//! `COMMS_RABBITMQ_URL`; `COMMS_RABBITMQ_QUEUE_TYPE=quorum` runs on quorum queues), a namespace per case, cleanup of every queue and exchange the run
//! created, and a restart hook that always leaves the broker running.
//!
//! Restart (the [`Backend::kill_and_restart`] contract) is
//! [`comms_test_support::rabbitmq::restart_broker`]: by default SIGKILL of the Erlang VM and
//! `rabbitmq-server -detached` (run as root, it switches to the `rabbitmq` user); with
//! `COMMS_RABBITMQ_RESTART=stop_app`, `rabbitmqctl stop_app` + `start_app` (every connection
//! is cut, queues are recovered from disk, the VM stays). A [`BrokerGuard`] starts the broker
//! again if a test fails half-way.

use comms_core::Connect;
use std::collections::BTreeSet;
use std::sync::Mutex;

use async_trait::async_trait;
use comms_conformance::Backend;
use comms_core::{Capabilities, Config, Error, Result, Transport};
use comms_rabbitmq::{RabbitOptions, RabbitTransport};

pub use comms_test_support::rabbitmq::{
    await_startup, ensure_running, rabbitmqctl, restart_broker, url, BrokerGuard,
};

/// Queue bound used by the suite (small enough for the backpressure case to fill quickly).
pub const TEST_QUEUE_BOUND: usize = 2_000;

/// Queue bound of the fault cases (23, 24, 27): above the 10,000 messages of a run, so that
/// they test restarts, not a full queue. (A pipelined sender whose destination queue is full
/// may see a refused message overtaken by a later one: `comms_rabbitmq`'s pipeline docs.)
pub const FAULTS_QUEUE_BOUND: usize = 20_000;

/// The configuration of the transport at `slot` in `namespace`.
pub fn config(namespace: &str, slot: usize) -> Result<Config> {
    config_with(namespace, slot, 30_000)
}

/// The same, with another `send_timeout_ms`.
pub fn config_with(namespace: &str, slot: usize, send_timeout_ms: u64) -> Result<Config> {
    config_bounded(namespace, slot, send_timeout_ms, TEST_QUEUE_BOUND)
}

/// The same, with another `queue_bound`.
pub fn config_bounded(
    namespace: &str,
    slot: usize,
    send_timeout_ms: u64,
    queue_bound: usize,
) -> Result<Config> {
    Config::from_toml(&format!(
        "[transport]\nurl = \"{}\"\nnode = \"n{slot}\"\nnamespace = \"{namespace}\"\n\
         [rabbitmq]\nqueue_bound = {queue_bound}\nsend_timeout_ms = {send_timeout_ms}\n\
         reconnect_max_ms = 1000\nqueue_expires_ms = 1800000\nqueue_type = \"{}\"\n",
        url(),
        std::env::var("COMMS_RABBITMQ_QUEUE_TYPE").unwrap_or_else(|_| "classic".into())
    ))
}

/// The RabbitMQ conformance backend.
#[derive(Debug)]
pub struct RabbitBackend {
    namespaces: Mutex<BTreeSet<String>>,
    queue_bound: usize,
}

impl Default for RabbitBackend {
    fn default() -> Self {
        Self::with_queue_bound(TEST_QUEUE_BOUND)
    }
}

impl RabbitBackend {
    /// A backend whose queues are bounded at [`TEST_QUEUE_BOUND`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend with another queue bound (the fault cases: [`FAULTS_QUEUE_BOUND`]).
    pub fn with_queue_bound(queue_bound: usize) -> Self {
        Self {
            namespaces: Mutex::default(),
            queue_bound,
        }
    }

    fn config(&self, namespace: &str, slot: usize) -> Result<Config> {
        config_bounded(namespace, slot, 30_000, self.queue_bound)
    }

    /// Delete every queue and exchange of the namespaces this backend handed out.
    pub async fn cleanup(&self) -> anyhow::Result<usize> {
        let namespaces: Vec<String> = self
            .namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        delete_namespaces(&namespaces).await
    }
}

#[async_trait]
impl Backend for RabbitBackend {
    fn name(&self) -> String {
        "rabbitmq".into()
    }

    async fn connect(&self, namespace: &str, slot: usize) -> Result<Box<dyn Transport>> {
        self.namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(namespace.to_owned());
        Ok(Box::new(
            RabbitTransport::connect(&self.config(namespace, slot)?).await?,
        ))
    }

    fn capabilities(&self) -> Capabilities {
        match self
            .config("caps", 0)
            .and_then(|c| RabbitOptions::from_config(&c))
        {
            Ok(opts) => comms_rabbitmq::capabilities(&opts),
            Err(_) => Capabilities::new("rabbitmq"),
        }
    }

    fn restart_unsupported(&self) -> Option<String> {
        match rabbitmqctl(&["status"]) {
            Ok(_) => None,
            Err(e) => Some(format!("rabbitmqctl does not work here: {e}")),
        }
    }

    async fn kill_and_restart(&self) -> Result<()> {
        tokio::task::spawn_blocking(restart_broker)
            .await
            .map_err(|e| Error::transport_msg("rabbitmq", format!("restart task: {e}"), false))?
            .map_err(|e| Error::transport_msg("rabbitmq", format!("restart: {e}"), false))
    }
}

/// The names of the broker's queues (`what` = `list_queues`) or exchanges
/// (`list_exchanges`) that belong to `namespaces` (`comms.{ns}` and `comms.{ns}.*`), sorted.
pub fn namespace_objects(what: &str, namespaces: &[String]) -> anyhow::Result<Vec<String>> {
    let ours = |name: &str| {
        namespaces.iter().any(|ns| {
            let base = format!("comms.{ns}");
            name == base || name.starts_with(&format!("{base}."))
        })
    };
    let mut names: Vec<String> = rabbitmqctl(&[what, "-q", "--no-table-headers", "name"])?
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty() && ours(l))
        .collect();
    names.sort();
    Ok(names)
}

/// Delete the queues and exchanges of `namespaces` (names `comms.{ns}` and `comms.{ns}.*`).
pub async fn delete_namespaces(namespaces: &[String]) -> anyhow::Result<usize> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    if namespaces.is_empty() {
        return Ok(0);
    }
    let queues = namespace_objects("list_queues", namespaces)?;
    let exchanges = namespace_objects("list_exchanges", namespaces)?;
    let conn = lapin::Connection::connect(&url(), lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    for q in &queues {
        ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    for x in &exchanges {
        ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
    }
    conn.close(200, "cleanup".into()).await?;
    Ok(queues.len() + exchanges.len())
}
