//! `comms`: the umbrella crate. Re-exports the contract ([`comms_core`]) and turns a URL or a
//! config into a connected transport of the backend its scheme names.
//!
//! | scheme | backend | cargo feature | state |
//! |---|---|---|---|
//! | `memory:` | in-process reference transport | `memory` (default) | built |
//! | `cd:`, `cds:`, `cdu:` | native daemon `commsd` | `native` | not built yet: a clear error |
//! | `amqp:`, `amqps:` | RabbitMQ | `rabbitmq` | not built yet: a clear error |
//! | `kafka:` | Kafka (`comms-kafka`, rdkafka) | `kafka` (default) | built |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> comms::Result<()> {
//! let transport = comms::connect_url("memory://demo?node=n1").await?;
//! let endpoint = comms::Endpoint::builder(transport, "demo").start().await?;
//! endpoint.close().await?;
//! # Ok(()) }
//! ```

pub use comms_core::*;

/// Connect to the backend `config`'s URL names (after the `COMMS_URL` override, if the config
/// was loaded with [`Config::load`]).
pub async fn connect(config: &Config) -> Result<Box<dyn Transport>> {
    let url = config.url()?;
    match url.scheme() {
        Scheme::Memory => connect_memory(&url, config),
        Scheme::Kafka => connect_kafka(config),
        other => Err(Error::BackendUnavailable {
            backend: other.backend(),
            reason: format!(
                "the {} backend is not implemented in this version; use memory: for now",
                other.backend()
            ),
        }),
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
        for url in ["cd:///run/x.sock", "amqp://localhost"] {
            let e = connect_url(url)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("not implemented"), "{url}: {e}");
        }
    }

    #[cfg(feature = "kafka")]
    #[tokio::test]
    async fn kafka_urls_build_the_kafka_transport() {
        let mut c = Config::from_url("kafka://127.0.0.1:1,127.0.0.1:2").unwrap();
        c.transport.node = Some("n3".into());
        let t = connect(&c).await.unwrap();
        assert_eq!(t.capabilities().backend, "kafka");
        assert_eq!(t.node(), "n3");
    }

    #[tokio::test]
    async fn config_node_applies_to_memory() {
        let mut c = Config::from_url("memory://cfgnode").unwrap();
        c.transport.node = Some("n7".into());
        assert_eq!(connect(&c).await.unwrap().node(), "n7");
    }
}
