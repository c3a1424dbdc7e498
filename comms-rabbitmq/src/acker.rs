//! Settling a delivery: `basic.ack` after the handler, `basic.nack` (requeue or dead-letter) when
//! it failed. Dropping an unsettled acker nacks with requeue. If the channel it came on is gone
//! (reconnect), the broker has already put the message back; settling then reports a retryable
//! error and the endpoint's dedup window absorbs the redelivery.

use async_trait::async_trait;
use comms_core::{Acker, Result};
use lapin::options::{BasicAckOptions, BasicNackOptions};

use crate::error::amqp;

/// Acker of one lapin delivery.
#[derive(Debug)]
pub(crate) struct RabbitAcker {
    acker: Option<lapin::Acker>,
}

impl RabbitAcker {
    pub(crate) fn new(acker: lapin::Acker) -> Self {
        Self { acker: Some(acker) }
    }
}

#[async_trait]
impl Acker for RabbitAcker {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        match self.acker.take() {
            Some(a) => a
                .ack(BasicAckOptions::default())
                .await
                .map(|_| ())
                .map_err(|e| amqp("ack", e)),
            None => Ok(()),
        }
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<()> {
        match self.acker.take() {
            Some(a) => a
                .nack(BasicNackOptions {
                    requeue,
                    ..BasicNackOptions::default()
                })
                .await
                .map(|_| ())
                .map_err(|e| amqp("nack", e)),
            None => Ok(()),
        }
    }
}

impl Drop for RabbitAcker {
    fn drop(&mut self) {
        let Some(acker) = self.acker.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime: the broker requeues it when the channel closes.
            return;
        };
        rt.spawn(async move {
            let requeue = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            if let Err(e) = acker.nack(requeue).await {
                tracing::debug!(error = %e, "rabbitmq: requeue of a dropped delivery failed; the broker requeues it when the channel closes");
            }
        });
    }
}
