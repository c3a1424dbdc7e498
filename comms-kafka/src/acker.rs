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
    held: Option<(Arc<Message>, OwnedSemaphorePermit)>,
}

impl std::fmt::Debug for KafkaAcker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAcker")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl KafkaAcker {
    /// An acker for the record `key`, sharing its message and holding a prefetch slot.
    pub fn new(
        shared: Arc<Shared>,
        key: DeliveryKey,
        message: Arc<Message>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use comms_core::Destination;
    use tokio::sync::Semaphore;

    fn setup() -> (Arc<Shared>, Arc<Semaphore>, DeliveryKey) {
        let shared = Arc::new(Shared::new("t".into(), 4));
        let tp = ("t".to_owned(), 0);
        shared.offsets().assign(tp.clone());
        let key = shared.offsets().received(&tp, 7, true);
        (shared, Arc::new(Semaphore::new(4)), key)
    }

    fn msg() -> Message {
        Message::new("X", Destination::Service("s".into())).unwrap()
    }

    #[tokio::test]
    async fn ack_settles_and_frees_the_slot() {
        let (shared, permits, key) = setup();
        let a = KafkaAcker::new(
            shared.clone(),
            key,
            Arc::new(msg()),
            permits.clone().try_acquire_owned().unwrap(),
        );
        assert_eq!(permits.available_permits(), 3);
        Box::new(a).ack().await.unwrap();
        assert_eq!(permits.available_permits(), 4);
        assert_eq!(
            shared.offsets().to_commit(None),
            vec![(("t".to_owned(), 0), 8)]
        );
        assert!(shared.take_requeued().is_empty());
    }

    #[tokio::test]
    async fn nack_and_drop_hand_the_message_back_uncommitted() {
        let (shared, permits, key) = setup();
        let m = Arc::new(msg());
        let a = KafkaAcker::new(
            shared.clone(),
            key.clone(),
            m.clone(),
            permits.clone().try_acquire_owned().unwrap(),
        );
        Box::new(a).nack(true).await.unwrap();
        let back = shared.take_requeued();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].message.id(), m.id());
        assert_eq!(
            permits.available_permits(),
            3,
            "the slot stays held while requeued"
        );
        drop(back);
        let dropped = KafkaAcker::new(
            shared.clone(),
            key,
            m,
            permits.clone().try_acquire_owned().unwrap(),
        );
        drop(dropped);
        assert_eq!(
            shared.take_requeued().len(),
            1,
            "dropped unsettled = nack(requeue)"
        );
        assert_eq!(
            shared.offsets().to_commit(None),
            vec![(("t".to_owned(), 0), 7)],
            "offset 7 not committed"
        );
    }
}
