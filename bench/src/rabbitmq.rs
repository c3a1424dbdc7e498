//! Backend `rabbitmq`: the comms-rabbitmq plugin (`amqp://`, namespace `bench{pid}`, so two
//! runs on one broker never share a queue) against the broker at `$COMMS_BENCH_AMQP` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`). Its transports are ephemeral: each endpoint's
//! queues are deleted when it closes, so a run leaves nothing on the broker.

use comms_core::Connect;
use std::sync::Arc;

use comms_core::{Config, Transport};
use comms_rabbitmq::RabbitTransport;
use futures_util::future::BoxFuture;

use crate::endpoint_driver::{self, Connector};
use crate::native::skip_all;
use crate::report::{Progress, Row};
use crate::scale::Scale;

/// The broker URL (no query).
pub fn amqp_base() -> String {
    std::env::var("COMMS_BENCH_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

struct Rabbit {
    config: Config,
}

impl Connector for Rabbit {
    fn connect(&self) -> BoxFuture<'_, anyhow::Result<Arc<dyn Transport>>> {
        Box::pin(async {
            let t: Arc<dyn Transport> = Arc::new(RabbitTransport::connect(&self.config).await?);
            Ok(t)
        })
    }
}

/// The rabbitmq rows, or skipped rows when the broker does not answer.
pub async fn run(scale: &Scale, progress: &Progress) -> Vec<Row> {
    let base = amqp_base();
    if let Err(e) = crate::probe::tcp(&base).await {
        return skip_all("rabbitmq", &e);
    }
    let mut config = match Config::from_url(base) {
        Ok(c) => c,
        Err(e) => return skip_all("rabbitmq", &e.to_string()),
    };
    config.transport.node = Some("bench".into());
    config.transport.namespace = Some(format!("bench{}", std::process::id()));
    config.transport.ephemeral = true;
    endpoint_driver::rows("rabbitmq", &Rabbit { config }, scale, progress).await
}
