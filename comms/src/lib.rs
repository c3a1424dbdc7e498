//! `comms`: the umbrella crate, the API a service uses. It exports what a service needs (the
//! message model, [`Endpoint`] and its builder, handlers, typed messages, errors, [`Config`])
//! and turns a URL or a config into a connected transport of the backend its scheme names.
//! What only a backend author needs (deliveries, inboxes, ackers, the shared bookkeeping,
//! the broker envelope) is in [`backend`].
//!
//! | scheme | backend | cargo feature | state |
//! |---|---|---|---|
//! | `memory:` | in-process reference transport | `memory` (default) | built |
//! | `cd:` | native daemon `commsd` (`cd:///path.sock` or `cd://host:port`) | `native` (default) | built |
//! | `cds:` | native daemon over TLS (`cds://host:port?ca=&cert=&key=&tls_name=`) | `native` (default) | built |
//! | `cdu:` | native daemon over UDP, send-only, at-most-once (`cdu://ip:port?secret=&max_datagram=`) | `native` (default) | built |
//! | `amqp:`, `amqps:` | RabbitMQ ([`comms_rabbitmq`]) | `rabbitmq` (default) | built |
//! | `kafka:` | Kafka (`comms-kafka`, rdkafka) | `kafka` (default) | built |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> comms::Result<()> {
//! let transport = comms::connect_url("memory://demo?node=n1").await?;
//! let endpoint = comms::Endpoint::builder(transport, "demo").start().await?;
//! endpoint.close().await?;
//! # Ok(()) }
//! ```

// What a service needs, at the top.
pub use comms_core::{
    commands, Address, Advertisement, Batching, Capabilities, Config, DeadLetter, DeadLetters,
    DeliveryMode, Destination, Directory, DirectoryEvent, Endpoint, EndpointBuilder, Entry, Error,
    HandlerError, HandlerResult, Invalid, MemoryTransport, Message, MessageId, Outcome, ParamType,
    Params, Query, Receipt, Request, Result, RetryPolicy, Schema, Scheme, Scope, Transport,
    TransportCounts, TransportStats, TransportUrl, TypedMessage,
};
// The modules a service may reach into: configuration and its start-up resolution, dead
// letters, retries, the local state directory, traces, the in-memory transport's options.
pub use comms_core::{config, dead_letter, memory, retry, startup, state, trace};

/// What a backend author needs (and a service does not): the delivery plumbing a transport
/// hands to the endpoint, the bookkeeping every backend shares, the broker envelope and the
/// shared names.
pub mod backend {
    pub use comms_core::backend::*;
    pub use comms_core::transport::{Delivery, Inbox};
    pub use comms_core::{envelope, name, naming, stats};
}

/// Connect to the backend `config`'s URL names (after the `COMMS_URL` override, if the config
/// was loaded with [`Config::load`]).
pub async fn connect(config: &Config) -> Result<Box<dyn Transport>> {
    let url = config.url()?;
    match url.scheme() {
        Scheme::Memory => connect_memory(&url, config),
        Scheme::Cd | Scheme::Cds | Scheme::Cdu => connect_native(&url, config),
        Scheme::Amqp | Scheme::Amqps => connect_rabbitmq(config).await,
        Scheme::Kafka => connect_kafka(config),
    }
}

/// Check within `within` that the broker of `config`'s URL answers, where connecting alone
/// would not tell: Kafka (librdkafka connects lazily and retries for ever). Other backends
/// return `Ok` at once (RabbitMQ's connect already fails; a native client retries by design,
/// so a short-lived client checks the daemon's socket itself).
pub async fn probe(config: &Config, within: std::time::Duration) -> Result<()> {
    match config.url()?.scheme() {
        #[cfg(feature = "kafka")]
        Scheme::Kafka => comms_kafka::probe(config, within).await,
        _ => {
            let _ = within;
            Ok(())
        }
    }
}

/// Connect to the backend a URL names, with every other setting at its default.
pub async fn connect_url(url: &str) -> Result<Box<dyn Transport>> {
    connect(&Config::from_url(url)?).await
}

#[cfg(feature = "memory")]
fn connect_memory(url: &TransportUrl, config: &Config) -> Result<Box<dyn Transport>> {
    let mut opts = memory::MemoryOptions::from_url(url)?;
    if let (Some(node), None) = (&config.transport.node, url.query("node")) {
        opts.node = node.clone();
    }
    Ok(Box::new(MemoryTransport::with_options(opts)))
}

#[cfg(not(feature = "memory"))]
fn connect_memory(_url: &TransportUrl, _config: &Config) -> Result<Box<dyn Transport>> {
    Err(Error::BackendUnavailable {
        backend: "memory",
        reason: "this build has the `memory` feature turned off".into(),
    })
}

#[cfg(feature = "rabbitmq")]
async fn connect_rabbitmq(config: &Config) -> Result<Box<dyn Transport>> {
    Ok(Box::new(
        comms_rabbitmq::RabbitTransport::connect(config).await?,
    ))
}

#[cfg(not(feature = "rabbitmq"))]
async fn connect_rabbitmq(_config: &Config) -> Result<Box<dyn Transport>> {
    Err(Error::BackendUnavailable {
        backend: "rabbitmq",
        reason: "this build has the `rabbitmq` feature turned off".into(),
    })
}

#[cfg(feature = "native")]
fn connect_native(url: &TransportUrl, config: &Config) -> Result<Box<dyn Transport>> {
    if url.scheme() == Scheme::Cdu {
        let mut opts = comms_native::transport::DatagramOptions::from_url(url)?;
        if let (Some(node), None) = (&config.transport.node, url.query("node")) {
            opts.node = node.clone();
        }
        return Ok(Box::new(
            comms_native::transport::DatagramTransport::with_options(opts),
        ));
    }
    let mut opts = comms_native::transport::NativeOptions::from_url(url)?;
    opts.state_dir = config.state_dir();
    if let (Some(node), None) = (&config.transport.node, url.query("node")) {
        opts.node = node.clone();
        // Configured: the transport must not ask the daemon.
        opts.node_given = true;
    }
    Ok(Box::new(
        comms_native::transport::NativeTransport::with_options(opts),
    ))
}

#[cfg(not(feature = "native"))]
fn connect_native(_url: &TransportUrl, _config: &Config) -> Result<Box<dyn Transport>> {
    Err(Error::BackendUnavailable {
        backend: "native",
        reason: "this build has the `native` feature turned off".into(),
    })
}

#[cfg(feature = "kafka")]
fn connect_kafka(config: &Config) -> Result<Box<dyn Transport>> {
    Ok(Box::new(comms_kafka::KafkaTransport::connect(config)?))
}

#[cfg(not(feature = "kafka"))]
fn connect_kafka(_config: &Config) -> Result<Box<dyn Transport>> {
    Err(Error::BackendUnavailable {
        backend: "kafka",
        reason: "this build has the `kafka` feature turned off".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_and_unbuilt_backends_are_clear_errors() {
        let e = connect_url("nats://x")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("accepted schemes"), "{e}");
    }

    #[cfg(feature = "native")]
    #[tokio::test]
    async fn cds_and_cdu_urls_build_native_transports() {
        let t = connect_url("cds://localhost:4043?node=n5").await.unwrap();
        assert_eq!(t.capabilities().backend, "native");
        assert_eq!(t.node(), "n5");
        let t = connect_url("cdu://127.0.0.1:4041?node=n6&max_datagram=512")
            .await
            .unwrap();
        assert_eq!(t.capabilities().max_message_size, 512);
        let e = t
            .listen()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("send-only"), "{e}");
    }

    #[cfg(feature = "native")]
    #[tokio::test]
    async fn cd_urls_build_the_native_transport() {
        let t = connect_url("cd:///run/x.sock?node=n3").await.unwrap();
        assert_eq!(t.capabilities().backend, "native");
        assert_eq!(t.node(), "n3");
        let mut c = Config::from_url("cd://127.0.0.1:4040").unwrap();
        c.transport.node = Some("n4".into());
        assert_eq!(connect(&c).await.unwrap().node(), "n4");
    }

    #[cfg(feature = "kafka")]
    #[tokio::test]
    async fn kafka_urls_build_the_kafka_transport() {
        let mut c = Config::from_url("kafka://127.0.0.1:1,127.0.0.1:2").unwrap();
        c.transport.node = Some("n3".into());
        let t = connect(&c).await.unwrap();
        assert_eq!(t.capabilities().backend, "kafka");
        assert_eq!(t.node(), "n3");
        let t = connect_url("kafka://127.0.0.1:1,127.0.0.1:2?node=n8")
            .await
            .unwrap();
        assert_eq!(t.node(), "n8", "?node= in a kafka URL is read");
    }

    #[tokio::test]
    async fn config_node_applies_to_memory() {
        let mut c = Config::from_url("memory://cfgnode").unwrap();
        c.transport.node = Some("n7".into());
        assert_eq!(connect(&c).await.unwrap().node(), "n7");
    }
}

/// The Rust example of README.md ("Using the contract") is compiled as a doc test, so the
/// README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeExample;
