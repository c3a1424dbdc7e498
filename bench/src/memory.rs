//! Backend `memory`: the in-process reference transport (no I/O; the floor of the contract).

use comms_core::Connect;
use std::sync::Arc;

use comms_core::Transport;
use comms_memory::MemoryTransport;
use futures_util::future::BoxFuture;

use crate::endpoint_driver::{self, Connector};
use crate::report::{Progress, Row};
use crate::scale::Scale;

struct Memory;

impl Connector for Memory {
    fn connect(&self) -> BoxFuture<'_, anyhow::Result<Arc<dyn Transport>>> {
        Box::pin(async {
            let t: Arc<dyn Transport> =
                Arc::new(MemoryTransport::connect_url("memory://bench?node=bench").await?);
            Ok(t)
        })
    }
}

/// The memory rows.
pub async fn run(scale: &Scale, progress: &Progress) -> Vec<Row> {
    endpoint_driver::rows("memory", &Memory, scale, progress).await
}
