//! `comms`: the umbrella crate, the API a service uses. It exports what a service needs (the
//! message model, [`Endpoint`] and its builder, handlers, typed messages, errors, [`Config`])
//! and turns a URL or a config into a connected transport of the backend its scheme names.
//! What only a backend author needs (deliveries, inboxes, ackers, the shared bookkeeping,
//! the broker envelope) is in [`backend`].
//!
//! | scheme | backend | cargo feature | state |
//! |---|---|---|---|
//! | `memory:` | in-process reference transport ([`MemoryTransport`], crate `comms-memory`) | `memory` (default) | built |
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
    commands, Address, Advertisement, Batching, Capabilities, Config, Connect, DeadLetter,
    DeadLetters, DeliveryMode, Destination, Directory, DirectoryEvent, Endpoint, EndpointBuilder,
    Entry, Error, HandlerError, HandlerResult, Invalid, Message, MessageId, Outcome, ParamType,
    Params, Query, Receipt, Request, Result, RetryPolicy, Schema, Scheme, Scope, Transport,
    TransportCounts, TransportStats, TransportUrl, TypedMessage,
};
// The modules a service may reach into: configuration and its start-up resolution, dead
// letters, retries, the local state directory, traces.
pub use comms_core::{config, dead_letter, retry, startup, state, trace};
/// The in-memory transport and its options.
#[cfg(feature = "memory")]
pub use comms_memory::{self as memory, MemoryTransport};

/// What a backend author needs (and a service does not): the delivery plumbing a transport
/// hands to the endpoint, the bookkeeping every backend shares, the broker envelope and the
/// shared names.
pub mod backend {
    pub use comms_core::backend::*;
    pub use comms_core::transport::{Delivery, Inbox};
    pub use comms_core::{envelope, name, naming, stats};
}

/// Connect to the backend `config`'s URL names (after the `COMMS_URL` override, if the config
/// was loaded with [`Config::load`]): the scheme picks the backend type, whose
/// [`Connect::connect`] does the rest (the same call a service makes on a backend it names).
pub async fn connect(config: &Config) -> Result<Box<dyn Transport>> {
    match config.url()?.scheme() {
        #[cfg(feature = "memory")]
        Scheme::Memory => boxed::<MemoryTransport>(config).await,
        #[cfg(feature = "native")]
        Scheme::Cd | Scheme::Cds => boxed::<comms_native::transport::NativeTransport>(config).await,
        #[cfg(feature = "native")]
        Scheme::Cdu => boxed::<comms_native::transport::DatagramTransport>(config).await,
        #[cfg(feature = "rabbitmq")]
        Scheme::Amqp | Scheme::Amqps => boxed::<comms_rabbitmq::RabbitTransport>(config).await,
        #[cfg(feature = "kafka")]
        Scheme::Kafka => boxed::<comms_kafka::KafkaTransport>(config).await,
        #[allow(unreachable_patterns)] // a backend whose feature is off
        scheme => Err(unavailable(backend_of(scheme))),
    }
}

/// `B::connect(config)`, boxed.
#[allow(dead_code)] // every backend feature off
async fn boxed<B: Connect + 'static>(config: &Config) -> Result<Box<dyn Transport>> {
    Ok(Box::new(B::connect(config).await?))
}

fn backend_of(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Memory => "memory",
        Scheme::Cd | Scheme::Cds | Scheme::Cdu => "native",
        Scheme::Amqp | Scheme::Amqps => "rabbitmq",
        Scheme::Kafka => "kafka",
    }
}

fn unavailable(backend: &'static str) -> Error {
    Error::BackendUnavailable {
        backend,
        reason: format!("this build has the `{backend}` feature turned off"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `B::connect_url(url)` and `B::connect(&config)` build the backend; a URL of another
    /// backend is refused with a clear error, not misread.
    async fn built_the_same_way<B: Connect>(url: &str, other: &str, backend: &str) {
        let t = B::connect_url(url).await.unwrap();
        assert_eq!(
            (t.capabilities().backend, t.node().as_str()),
            (backend, "n5")
        );
        let mut config = Config::from_url(url.split('?').next().unwrap()).unwrap();
        config.transport.node = Some("n6".into());
        let t = B::connect(&config).await.unwrap();
        assert_eq!(
            (t.capabilities().backend, t.node().as_str()),
            (backend, "n6")
        );
        t.close().await.unwrap();
        let refused = B::connect_url(other).await.err().map(|e| e.to_string());
        assert!(refused.is_some_and(|e| e.contains(other.split(':').next().unwrap())));
    }

    #[tokio::test]
    async fn every_backend_is_built_the_same_way() {
        built_the_same_way::<MemoryTransport>(
            "memory://same_way?node=n5",
            "cd:///x.sock",
            "memory",
        )
        .await;
        #[cfg(feature = "native")]
        {
            use comms_native::transport::{DatagramTransport, NativeTransport};
            built_the_same_way::<NativeTransport>("cd:///x.sock?node=n5", "memory://x", "native")
                .await;
            built_the_same_way::<DatagramTransport>(
                "cdu://127.0.0.1:9?node=n5",
                "cd:///x",
                "native",
            )
            .await;
        }
        #[cfg(feature = "kafka")]
        built_the_same_way::<comms_kafka::KafkaTransport>(
            "kafka://127.0.0.1:1?node=n5",
            "amqp://x",
            "kafka",
        )
        .await;
        // Connecting to RabbitMQ opens a connection: the shared broker of the test machine.
        #[cfg(feature = "rabbitmq")]
        built_the_same_way::<comms_rabbitmq::RabbitTransport>(
            "amqp://guest:guest@127.0.0.1:5672/%2f?node=n5",
            "kafka://x:1",
            "rabbitmq",
        )
        .await;
    }

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
