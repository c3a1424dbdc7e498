//! Options: the `[kafka]` config section, the node and namespace, and the librdkafka settings
//! derived from them.

use std::collections::BTreeMap;
use std::time::Duration;

use comms_core::config::hostname_node;
use comms_core::name::validate_name;
use comms_core::{Config, Error, Result, Scheme};
use rdkafka::ClientConfig;
use serde::Deserialize;

/// Largest message payload (command and parameters) the plugin accepts. The producer's
/// `message.max.bytes` is set above it to leave room for the JSON envelope.
pub const MAX_MESSAGE_SIZE: usize = 2 * 1024 * 1024;

/// The `[kafka]` section of the configuration. Every field is optional.
///
/// ```toml
/// [kafka]
/// partitions = 4          # partitions of the topics this plugin creates
/// replication = 1         # replication factor of those topics
/// prefetch = 64           # unacknowledged deliveries per consumer
/// queue_bound = 1000      # messages one sender may have not yet consumed per destination
/// send_timeout_ms = 30000 # how long send waits at the bound before Error::Backpressure
/// delivery_timeout_ms = 60000 # librdkafka message.timeout.ms (retries across broker restarts)
/// assign_grace_ms = 1000  # pause before taking up newly assigned partitions (rebalance safety)
/// [kafka.librdkafka]      # extra librdkafka properties for every client (security.protocol...)
/// "socket.keepalive.enable" = "true"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSection {
    /// Partitions of each topic the plugin creates.
    pub partitions: i32,
    /// Replication factor of each topic the plugin creates.
    pub replication: i32,
    /// Unacknowledged deliveries per consumer (the inbox bound).
    pub prefetch: usize,
    /// Messages one sender may have in one destination that its consumer group has not yet
    /// committed; past it `send` waits, then fails with `Error::Backpressure`.
    pub queue_bound: usize,
    /// How long `send` waits at the bound.
    pub send_timeout_ms: u64,
    /// librdkafka `message.timeout.ms`: how long the producer retries one record.
    pub delivery_timeout_ms: u64,
    /// Pause before a consumer takes up newly assigned partitions, so that their previous
    /// owner has revoked and committed (see `rebalance`).
    pub assign_grace_ms: u64,
    /// Extra librdkafka properties applied to every client.
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            partitions: 4,
            replication: 1,
            prefetch: 64,
            queue_bound: 1000,
            send_timeout_ms: 30_000,
            delivery_timeout_ms: 60_000,
            assign_grace_ms: 1000,
            librdkafka: BTreeMap::new(),
        }
    }
}

/// Everything a Kafka transport needs to connect.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `host:port,host:port`.
    pub bootstrap: String,
    /// Deployment prefix (`?namespace=` in the URL, else `transport.namespace`, default `default`).
    pub namespace: String,
    /// Node name (`?node=` in the URL, else `transport.node`, default: the hostname).
    pub node: String,
    /// The `[kafka]` section.
    pub section: KafkaSection,
    /// `[transport] ephemeral`: no topic or group of its own; it is reached by replies on
    /// the shared replies topic ([`crate::replies`]).
    pub ephemeral: bool,
    /// The local state directory (attempt counts of retried messages, see
    /// [`comms_core::state`]).
    pub state_dir: Option<std::path::PathBuf>,
}

impl KafkaOptions {
    /// Options from a configuration whose URL is `kafka://...`.
    pub fn from_config(config: &Config) -> Result<Self> {
        let url = config.url()?;
        if url.scheme() != Scheme::Kafka {
            return Err(Error::Config(format!("{url} is not a kafka: URL")));
        }
        let servers = url.kafka_bootstrap();
        if servers.is_empty() {
            return Err(Error::Config(format!("{url}: no bootstrap server")));
        }
        let section: KafkaSection = config.section("kafka")?;
        // As on every backend, `?node=` / `?namespace=` in the URL win over `[transport]`.
        let node = url
            .query("node")
            .or_else(|| config.transport.node.clone())
            .unwrap_or_else(hostname_node);
        let namespace = url
            .query("namespace")
            .or_else(|| config.transport.namespace.clone())
            .unwrap_or_else(|| "default".to_owned());
        let opts = Self {
            bootstrap: servers.join(","),
            namespace,
            node,
            section,
            ephemeral: config.transport.ephemeral,
            state_dir: config.state_dir(),
        };
        opts.check()?;
        Ok(opts)
    }

    fn check(&self) -> Result<()> {
        validate_name("transport.node", &self.node)?;
        validate_name("transport.namespace", &self.namespace)?;
        let s = &self.section;
        if s.partitions < 1 || s.replication < 1 || s.prefetch == 0 || s.queue_bound == 0 {
            return Err(Error::Config(
                "[kafka]: partitions, replication, prefetch and queue_bound must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }

    /// How long `send` waits at the bound.
    pub fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.section.send_timeout_ms)
    }

    /// Settings shared by every client.
    pub fn base(&self, role: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("client.id", format!("comms-{}-{role}", self.node))
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "1000")
            .set("socket.connection.setup.timeout.ms", "5000")
            .set("topic.metadata.refresh.interval.ms", "10000")
            .set("log_level", "3");
        for (k, v) in &self.section.librdkafka {
            c.set(k, v);
        }
        c
    }

    /// The producer: idempotent, `acks=all`, no linger unless `[kafka.librdkafka]` sets one.
    pub fn producer(&self) -> ClientConfig {
        let mut c = self.base("producer");
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("retry.backoff.ms", "50")
            .set("retry.backoff.max.ms", "500")
            .set(
                "message.timeout.ms",
                self.section.delivery_timeout_ms.to_string(),
            )
            .set("message.max.bytes", (MAX_MESSAGE_SIZE * 4).to_string());
        for (k, v) in &self.section.librdkafka {
            c.set(k, v);
        }
        c
    }

    /// A group consumer: manual commits only, earliest offset for a new group.
    pub fn group_consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.base("consumer");
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "100")
            .set("fetch.max.bytes", (MAX_MESSAGE_SIZE * 4).to_string())
            .set(
                "receive.message.max.bytes",
                (MAX_MESSAGE_SIZE * 8).to_string(),
            );
        for (k, v) in &self.section.librdkafka {
            c.set(k, v);
        }
        c
    }

    /// A consumer without group membership (broadcast tail, offset watchers).
    pub fn plain_consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.group_consumer(group);
        c.set("auto.offset.reset", "latest");
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_defaults_and_overrides() {
        let c = Config::from_toml(
            "[transport]\nurl = \"kafka://a:1,b:2\"\nnode = \"n1\"\nnamespace = \"prod\"\n[kafka]\npartitions = 8\n",
        )
        .unwrap();
        let o = KafkaOptions::from_config(&c).unwrap();
        assert_eq!(o.bootstrap, "a:1,b:2");
        assert_eq!((o.node.as_str(), o.namespace.as_str()), ("n1", "prod"));
        assert_eq!(o.section.partitions, 8);
        assert_eq!(o.section.prefetch, 64);
        let bad =
            Config::from_toml("[transport]\nurl = \"kafka://a:1\"\n[kafka]\nbogus = 1\n").unwrap();
        assert!(KafkaOptions::from_config(&bad).is_err());
        let zero = Config::from_toml("[transport]\nurl = \"kafka://a:1\"\n[kafka]\nprefetch = 0\n")
            .unwrap();
        assert!(KafkaOptions::from_config(&zero).is_err());
    }
}
