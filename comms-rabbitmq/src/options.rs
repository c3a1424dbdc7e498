//! Options: the `amqp:`/`amqps:` URL, `transport.node`/`transport.namespace`, and the
//! `[rabbitmq]` section of the configuration.
//!
//! ```toml
//! [transport]
//! url = "amqps://user:pass@rabbit.example:5671/%2f"
//! node = "web01"
//! namespace = "prod"
//!
//! [rabbitmq]
//! prefetch = 64            # unacknowledged deliveries per consumer (basic.qos)
//! queue_bound = 10000      # x-max-length of every service and instance queue
//! max_in_flight = 1000     # publishes awaiting their confirm (the submit window)
//! queue_type = "classic"   # or "quorum" (replicated; for clusters)
//! send_timeout_ms = 30000  # how long send waits for a connection or for room in a full queue
//! reconnect_initial_ms = 100
//! reconnect_max_ms = 2000
//! # default_ttl_ms = 60000 # expiry of messages that set no TTL (default: none, they wait)
//! # queue_expires_ms = 86400000  # x-expires: drop queues unused for this long (default: never)
//!
//! [rabbitmq.tls]           # amqps: only
//! ca = "/etc/comms/ca.pem"         # PEM CA chain to trust instead of the system roots
//! cert = "/etc/comms/client.pem"   # client certificate (PEM), with `key`
//! key = "/etc/comms/client.key"    # client private key (PKCS#8 PEM)
//! ```
//!
//! The URL may also carry `?node=` and `?namespace=`; they are removed before the URL is given
//! to lapin (which reads `heartbeat`, `connection_timeout`, `channel_max`, `frame_max`).

use std::path::PathBuf;
use std::time::Duration;

use comms_core::config::{hostname_node, Config, Scheme, TransportUrl};
use comms_core::name::validate_name;
use comms_core::{Error, Result};
use serde::Deserialize;

use crate::tls::TlsOptions;

/// Default unacknowledged deliveries per consumer.
pub const DEFAULT_PREFETCH: u16 = 64;
/// Default bound (`x-max-length`) of every service and instance queue.
pub const DEFAULT_QUEUE_BOUND: usize = 10_000;
/// Default number of publishes awaiting their confirm (RabbitMQ's guide suggests hundreds to
/// thousands of outstanding confirms for throughput).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1_000;
/// Default time `send` waits for a connection or for room in a full queue.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Namespace used when `transport.namespace` is not set.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Which RabbitMQ queue type backs service and instance queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Classic durable queues (single node; the default).
    #[default]
    Classic,
    /// Quorum queues (Raft-replicated; use on a cluster).
    Quorum,
}

impl QueueType {
    /// The `x-queue-type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

/// The `[rabbitmq]` section as written in TOML (every field optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitSection {
    /// Unacknowledged deliveries per consumer.
    pub prefetch: Option<u16>,
    /// `x-max-length` of service and instance queues.
    pub queue_bound: Option<usize>,
    /// Publishes awaiting their confirm at most (the window of `submit`).
    pub max_in_flight: Option<usize>,
    /// Queue type.
    pub queue_type: Option<QueueType>,
    /// How long `send` waits for a connection or room, in milliseconds.
    pub send_timeout_ms: Option<u64>,
    /// First reconnect delay, in milliseconds.
    pub reconnect_initial_ms: Option<u64>,
    /// Largest reconnect delay, in milliseconds.
    pub reconnect_max_ms: Option<u64>,
    /// Expiry of messages that set no TTL, in milliseconds.
    pub default_ttl_ms: Option<u64>,
    /// `x-expires` of service and instance queues, in milliseconds.
    pub queue_expires_ms: Option<u64>,
    /// TLS files for `amqps:`.
    pub tls: Option<TlsSection>,
}

/// `[rabbitmq.tls]`: paths of PEM files.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// CA chain (PEM) to trust.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Client private key (PKCS#8 PEM).
    pub key: Option<PathBuf>,
}

/// Everything a [`crate::RabbitTransport`] needs.
#[derive(Debug, Clone)]
pub struct RabbitOptions {
    /// The URL given to lapin (our own query parameters removed).
    pub amqp_url: String,
    /// Whether the URL is `amqps:`.
    pub tls_enabled: bool,
    /// TLS material, read from the files named in `[rabbitmq.tls]`.
    pub tls: TlsOptions,
    /// Node name of this transport's endpoints.
    pub node: String,
    /// Deployment namespace: every exchange and queue name starts with `comms.{namespace}.`.
    pub namespace: String,
    /// Unacknowledged deliveries per consumer.
    pub prefetch: u16,
    /// `x-max-length` of service and instance queues.
    pub queue_bound: usize,
    /// Publishes awaiting their confirm at most (the window of `submit`; a full window makes
    /// it wait, then fail with `Backpressure`).
    pub max_in_flight: usize,
    /// Queue type.
    pub queue_type: QueueType,
    /// How long `send` waits for a connection or room.
    pub send_timeout: Duration,
    /// First reconnect delay.
    pub reconnect_initial: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// Expiry of messages that set no TTL (`None`: they wait, bounded by the queue).
    pub default_ttl: Option<Duration>,
    /// `x-expires` of service and instance queues.
    pub queue_expires: Option<Duration>,
    /// Hop limit for `forward`.
    pub hop_limit: u8,
    /// `[transport] ephemeral`: `close` deletes this endpoint's instance and service queues
    /// (declared as every other queue, since senders declare the queues they send to).
    pub ephemeral: bool,
    /// The local state directory (attempt counts of retried messages, see
    /// [`comms_core::state`]); default [`comms_core::state::resolve`]`(None)`.
    pub state_dir: Option<std::path::PathBuf>,
}

impl RabbitOptions {
    /// Options from a whole configuration (URL, `[transport]`, `[rabbitmq]`).
    pub fn from_config(config: &Config) -> Result<Self> {
        let url = config.url()?;
        let section: RabbitSection = config.section("rabbitmq")?;
        let mut opts = Self::build(
            &url,
            config.transport.node.clone(),
            config.transport.namespace.clone(),
            section,
        )?;
        opts.ephemeral = config.transport.ephemeral;
        opts.state_dir = config.state_dir();
        Ok(opts)
    }

    /// Options from a URL alone, every other setting at its default.
    pub fn from_url(url: &str) -> Result<Self> {
        Self::build(
            &TransportUrl::parse(url)?,
            None,
            None,
            RabbitSection::default(),
        )
    }

    fn build(
        url: &TransportUrl,
        node: Option<String>,
        namespace: Option<String>,
        section: RabbitSection,
    ) -> Result<Self> {
        let tls_enabled = match url.scheme() {
            Scheme::Amqp => false,
            Scheme::Amqps => true,
            _ => {
                return Err(Error::Config(format!(
                    "{url} is not an amqp: or amqps: URL"
                )))
            }
        };
        let node = url.query("node").or(node).unwrap_or_else(hostname_node);
        validate_name("node", &node)?;
        let namespace = url
            .query("namespace")
            .or(namespace)
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        validate_name("namespace", &namespace)?;
        let mut lapin_url = url.url().clone();
        let kept: Vec<(String, String)> = lapin_url
            .query_pairs()
            .filter(|(k, _)| k != "node" && k != "namespace")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if kept.is_empty() {
            lapin_url.set_query(None);
        } else {
            lapin_url.query_pairs_mut().clear().extend_pairs(kept);
        }
        let tls = match &section.tls {
            Some(t) if tls_enabled => TlsOptions::load(t)?,
            Some(_) => {
                return Err(Error::Config(
                    "[rabbitmq.tls] is set but the URL is amqp:, not amqps:".into(),
                ))
            }
            None => TlsOptions::default(),
        };
        let positive = |name: &str, v: Option<u64>| -> Result<Option<u64>> {
            match v {
                Some(0) => Err(Error::Config(format!("[rabbitmq] {name} must be positive"))),
                other => Ok(other),
            }
        };
        let queue_bound = section.queue_bound.unwrap_or(DEFAULT_QUEUE_BOUND);
        if queue_bound == 0 {
            return Err(Error::Config(
                "[rabbitmq] queue_bound must be positive".into(),
            ));
        }
        let max_in_flight = section.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        if max_in_flight == 0 {
            return Err(Error::Config(
                "[rabbitmq] max_in_flight must be positive".into(),
            ));
        }
        let prefetch = section.prefetch.unwrap_or(DEFAULT_PREFETCH);
        if prefetch == 0 {
            return Err(Error::Config("[rabbitmq] prefetch must be positive".into()));
        }
        let ms = Duration::from_millis;
        Ok(Self {
            amqp_url: lapin_url.to_string(),
            tls_enabled,
            tls,
            node,
            namespace,
            prefetch,
            queue_bound,
            max_in_flight,
            queue_type: section.queue_type.unwrap_or_default(),
            send_timeout: positive("send_timeout_ms", section.send_timeout_ms)?
                .map_or(DEFAULT_SEND_TIMEOUT, ms),
            reconnect_initial: ms(
                positive("reconnect_initial_ms", section.reconnect_initial_ms)?.unwrap_or(100),
            ),
            reconnect_max: ms(
                positive("reconnect_max_ms", section.reconnect_max_ms)?.unwrap_or(2_000)
            ),
            default_ttl: positive("default_ttl_ms", section.default_ttl_ms)?.map(ms),
            queue_expires: positive("queue_expires_ms", section.queue_expires_ms)?.map(ms),
            hop_limit: comms_core::transport::DEFAULT_HOP_LIMIT,
            ephemeral: false,
            state_dir: comms_core::state::resolve(None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_node_and_namespace_are_ours_and_removed() {
        let o = RabbitOptions::from_url(
            "amqp://guest:guest@127.0.0.1:5672/%2f?node=n1&namespace=ns1&heartbeat=10",
        )
        .unwrap();
        assert_eq!(o.node, "n1");
        assert_eq!(o.namespace, "ns1");
        assert_eq!(
            o.amqp_url,
            "amqp://guest:guest@127.0.0.1:5672/%2f?heartbeat=10"
        );
        assert!(!o.tls_enabled);
    }

    #[test]
    fn section_is_applied() {
        let c = Config::from_toml(
            "[transport]\nurl = \"amqp://localhost\"\nnode = \"n2\"\nnamespace = \"prod\"\n\
             [rabbitmq]\nprefetch = 5\nqueue_bound = 100\nqueue_type = \"quorum\"\n\
             send_timeout_ms = 2000\ndefault_ttl_ms = 1500\n",
        )
        .unwrap();
        let o = RabbitOptions::from_config(&c).unwrap();
        assert_eq!((o.node.as_str(), o.namespace.as_str()), ("n2", "prod"));
        assert_eq!((o.prefetch, o.queue_bound), (5, 100));
        assert_eq!(o.queue_type, QueueType::Quorum);
        assert_eq!(o.send_timeout, Duration::from_secs(2));
        assert_eq!(o.default_ttl, Some(Duration::from_millis(1500)));
        assert_eq!(o.namespace, "prod");
    }

    #[test]
    fn bad_values_are_config_errors() {
        for section in [
            "prefetch = 0",
            "queue_bound = 0",
            "max_in_flight = 0",
            "queue_type = \"lazy\"",
            "bogus = 1",
        ] {
            let c = Config::from_toml(&format!(
                "[transport]\nurl = \"amqp://localhost\"\n[rabbitmq]\n{section}\n"
            ))
            .unwrap();
            assert!(
                matches!(RabbitOptions::from_config(&c), Err(Error::Config(_))),
                "{section}"
            );
        }
        let c = Config::from_toml(
            "[transport]\nurl = \"amqp://localhost\"\n[rabbitmq.tls]\nca = \"/x\"\n",
        )
        .unwrap();
        assert!(RabbitOptions::from_config(&c).is_err(), "tls on amqp:");
    }
}
