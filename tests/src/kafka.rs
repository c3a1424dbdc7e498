//! The Kafka backend for the cross-backend suites: a real `tansu` broker per backend
//! ([`comms_test_support::Tansu`]: a free port, its SQLite store in a temporary directory), so
//! that [`Backend::kill_and_restart`] is SIGKILL and a restart on the same port and file.
//! When `tansu` is missing, starting the backend fails with a message saying how to build it
//! (tests never skip).

use async_trait::async_trait;
use comms_conformance::{Backend, Recorder};
use comms_core::{Capabilities, Config, Error, Result, Transport};
use comms_test_support::unique_name;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::Mutex;

pub use comms_test_support::tansu::{tansu_binary, Tansu, TANSU_HINT};

/// Log to the test output as `RUST_LOG` says (nothing by default).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
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

    /// Starts a broker for a test; one that cannot start panics with the reason (tests never
    /// skip: a missing `tansu` says how to build it).
    pub async fn started() -> Self {
        Self::start()
            .await
            .unwrap_or_else(|e| panic!("cannot start the Kafka broker: {e:#}"))
    }

    /// [`Self::started`], and a namespace of the test's own ([`unique_name`] of `prefix`).
    pub async fn with_namespace(prefix: &str) -> (Self, String) {
        (Self::started().await, unique_name(prefix))
    }

    /// The broker URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The broker's `host:port`.
    pub fn bootstrap(&self) -> &str {
        self.url.trim_start_matches("kafka://")
    }

    /// A plain rdkafka producer: another tool writing straight onto comms topics.
    pub fn raw_producer(&self) -> anyhow::Result<FutureProducer> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()?)
    }

    /// A plain rdkafka consumer of `topic` (partition 0) from its beginning, in its own group
    /// `{namespace}-inspect` that commits nothing.
    pub fn inspector(&self, namespace: &str, topic: &str) -> anyhow::Result<BaseConsumer> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", format!("{namespace}-inspect"))
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        Ok(consumer)
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the broker: while frozen, every request waits.
    pub async fn freeze(&self, stop: bool) -> anyhow::Result<()> {
        Ok(self.broker.lock().await.freeze(stop).await?)
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

    /// An endpoint `service` on `node` in `namespace` that records every `command` it
    /// handles; panics when it cannot start (for test bodies).
    pub async fn recording(
        &self,
        namespace: &str,
        node: &str,
        service: &str,
        command: &str,
    ) -> (comms_core::Endpoint, Recorder) {
        let rec = Recorder::new();
        let ep = self
            .endpoint(namespace, node, service, |e| {
                e.handle(command, rec.handler())
            })
            .await
            .unwrap_or_else(|e| panic!("endpoint {service} on {node}: {e}"));
        (ep, rec)
    }
}

/// The value of header `name` of a record (lossy UTF-8), if it has one.
pub fn header(record: &impl rdkafka::Message, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    record.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
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
