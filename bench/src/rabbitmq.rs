//! Backend `rabbitmq`: the comms-rabbitmq plugin (`amqp://`, namespace `bench`) against the
//! broker at `$COMMS_BENCH_AMQP` (default `amqp://guest:guest@127.0.0.1:5672/%2f`).

use std::sync::Arc;

use comms_core::Transport;
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
    url: String,
}

impl Connector for Rabbit {
    fn connect(&self) -> BoxFuture<'_, anyhow::Result<Arc<dyn Transport>>> {
        Box::pin(async {
            let t: Arc<dyn Transport> = Arc::new(RabbitTransport::connect_url(&self.url).await?);
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
    let c = Rabbit {
        url: format!("{base}?node=bench&namespace=bench"),
    };
    endpoint_driver::rows("rabbitmq", &c, scale, progress).await
}
