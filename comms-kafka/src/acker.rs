//! Settling a Kafka delivery: ack marks the record done (its offset may then be committed once
//! every earlier record of the partition is done too); nack with requeue, or dropping the
//! acker unsettled, hands the message back to the consumer, which delivers it again from
//! memory while its offset stays uncommitted.

use std::sync::Arc;

use async_trait::async_trait;
use comms_core::{Acker, Message, Result};
use tokio::sync::OwnedSemaphorePermit;

use crate::offsets::DeliveryKey;
use crate::shared::{Requeued, Shared};

/// The acker of one at-least-once delivery.
pub struct KafkaAcker {
    shared: Arc<Shared>,
    key: DeliveryKey,
    held: Option<(Message, OwnedSemaphorePermit)>,
}

impl std::fmt::Debug for KafkaAcker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAcker")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl KafkaAcker {
    /// An acker for the record `key`, holding a copy of its message and a prefetch slot.
    pub fn new(
        shared: Arc<Shared>,
        key: DeliveryKey,
        message: Message,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            shared,
            key,
            held: Some((message, permit)),
        }
    }

    fn settle(&mut self) {
        self.held.take();
        self.shared.offsets().settled(&self.key);
    }

    fn requeue(&mut self) {
        if let Some((message, permit)) = self.held.take() {
            self.shared.requeue(Requeued {
                message,
                key: self.key.clone(),
                permit,
            });
        }
    }
}

#[async_trait]
impl Acker for KafkaAcker {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        self.settle();
        Ok(())
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<()> {
        if requeue {
            self.requeue();
        } else {
            tracing::warn!(key = ?self.key, "kafka: delivery rejected without requeue; dropped");
            self.settle();
        }
        Ok(())
    }
}

impl Drop for KafkaAcker {
    fn drop(&mut self) {
        self.requeue();
    }
}
