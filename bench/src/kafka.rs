//! Backend `kafka`: the comms-kafka plugin against the broker of [`crate::kafka_broker`]
//! (`$COMMS_BENCH_KAFKA`, else a tansu it starts). Built with the `kafka` feature (on by
//! default); without it the rows are printed as skipped.

use crate::report::{Progress, Row};
use crate::scale::Scale;
use comms_core::Connect;

/// The kafka rows: skipped, the plugin is not built.
#[cfg(not(feature = "kafka"))]
pub async fn run(_scale: &Scale, _progress: &Progress) -> Vec<Row> {
    crate::native::skip_all("kafka", "kafka feature off")
}

/// The kafka rows, or skipped rows when the broker does not answer.
#[cfg(feature = "kafka")]
pub async fn run(scale: &Scale, progress: &Progress) -> Vec<Row> {
    use std::sync::Arc;

    use comms_core::{Config, Transport};
    use futures_util::future::BoxFuture;

    use crate::endpoint_driver::{self, Connector};

    struct Kafka {
        config: Config,
    }

    impl Connector for Kafka {
        fn connect(&self) -> BoxFuture<'_, anyhow::Result<Arc<dyn Transport>>> {
            Box::pin(async {
                let t: Arc<dyn Transport> =
                    Arc::new(comms_kafka::KafkaTransport::connect(&self.config).await?);
                Ok(t)
            })
        }
    }

    progress.step("kafka: broker");
    let broker = match crate::kafka_broker::broker().await {
        Ok(b) => b,
        Err(e) => return crate::native::skip_all("kafka", &e),
    };
    // Pipelined (`--window`): the producer lingers 5 ms to batch, as the raw-rdkafka row, and
    // one sender may have up to 100,000 records its receiver has not consumed yet (the
    // default `queue_bound` of 1,000 would stall a window of 1,000 at every offset refresh).
    let pipelined = if scale.window > 0 {
        "[kafka]\nqueue_bound = 100000\n[kafka.librdkafka]\n\"linger.ms\" = \"5\"\n"
    } else {
        ""
    };
    let toml = format!(
        "[transport]\nurl = \"kafka://{}\"\nnode = \"bench\"\nnamespace = \"bench\"\n{pipelined}",
        broker.bootstrap
    );
    let config = match Config::from_toml(&toml) {
        Ok(c) => c,
        Err(e) => return crate::native::skip_all("kafka", &e.to_string()),
    };
    endpoint_driver::rows("kafka", &Kafka { config }, scale, progress).await
}
