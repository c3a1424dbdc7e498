//! The dead-letter place on RabbitMQ ([`comms_core::dead_letter`]): the durable queue
//! `comms.{ns}.dead-letters`, one persistent message per letter (body: the letter as JSON,
//! [`DeadLetter::to_json`]; `message-id`: the letter's id), published with a confirm.
//!
//! The queue is bounded ([`DEAD_LETTER_BOUND`]) with `reject-publish`: when it is full, `put`
//! fails and the endpoint keeps the message unacknowledged and logs, rather than RabbitMQ
//! dropping a letter. It is not the `comms.{ns}.dead` queue, where bodies that are not
//! envelopes are parked (bounded, oldest dropped: a diagnostic).
//!
//! Inspecting uses `basic.get` without acknowledging, then closes the channel: what was read
//! goes back to the queue in place. `take` acknowledges the one letter it removes; `purge`
//! is `queue.purge`.

use std::time::Duration;

use async_trait::async_trait;
use comms_core::dead_letter::{DeadLetter, DeadLetters};
use comms_core::{Error, Result};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::time::Instant;

use crate::error::amqp;
use crate::link::Link;

/// Most letters the queue holds; a `put` beyond it is refused (and retried by the endpoint).
pub const DEAD_LETTER_BOUND: i64 = 100_000;

/// How long one operation waits for the broker.
const WAIT: Duration = Duration::from_secs(30);

/// The RabbitMQ dead-letter place (see the module docs).
#[derive(Debug, Clone)]
pub struct QueueDeadLetters {
    link: Link,
}

impl QueueDeadLetters {
    pub(crate) fn new(link: Link) -> Self {
        Self { link }
    }

    fn queue(&self) -> String {
        self.link.names().child("dead-letters")
    }

    /// A fresh channel with the queue declared (closing it puts back what was read).
    async fn channel(&self) -> Result<Channel> {
        let session = self.link.session_until(Instant::now() + WAIT).await?;
        let ch = session
            .connection()
            .create_channel()
            .await
            .map_err(|e| amqp("open a dead-letter channel", e))?;
        let args = crate::topology::bounded_args(DEAD_LETTER_BOUND, "reject-publish");
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        ch.queue_declare(self.queue().as_str().into(), durable, args)
            .await
            .map_err(|e| amqp(format!("declare queue {}", self.queue()), e))?;
        Ok(ch)
    }

    /// Read letters until `stop` says so or the queue has no more; unacknowledged.
    async fn read(
        &self,
        ch: &Channel,
        mut stop: impl FnMut(&DeadLetter, lapin::message::Delivery) -> Option<lapin::message::Delivery>,
    ) -> Result<()> {
        let queue = self.queue();
        while let Some(got) = ch
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .map_err(|e| amqp("read a dead letter", e))?
        {
            let delivery = got.delivery;
            let letter = DeadLetter::from_json(&delivery.data).unwrap_or_else(|e| {
                DeadLetter::unreadable(format!("tag-{}", delivery.delivery_tag), &e, &delivery.data)
            });
            if stop(&letter, delivery).is_none() {
                return Ok(());
            }
        }
        Ok(())
    }
}

async fn close(ch: Channel) {
    let _ = ch.close(200, "done".into()).await;
}

#[async_trait]
impl DeadLetters for QueueDeadLetters {
    async fn put(&self, letter: &DeadLetter) -> Result<()> {
        let body = letter.to_json()?;
        let session = self.link.session_until(Instant::now() + WAIT).await?;
        // Declared through a channel of its own (idempotent), published on the confirmed one.
        close(self.channel().await?).await;
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(letter.id.as_str().into());
        let confirm = session
            .publish("", &self.queue(), true, &body, props)
            .await?;
        match tokio::time::timeout(WAIT, confirm).await {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(other)) => Err(Error::transport_msg(
                crate::BACKEND,
                format!(
                    "the broker refused a dead letter ({other:?}; is {} full?)",
                    self.queue()
                ),
                true,
            )),
            Ok(Err(e)) => Err(amqp("confirm a dead letter", e)),
            Err(_) => Err(Error::Timeout(WAIT)),
        }
    }

    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let ch = self.channel().await?;
        let mut letters = Vec::new();
        let read = self
            .read(&ch, |letter, d| {
                letters.push(letter.clone());
                (letters.len() < limit).then_some(d)
            })
            .await;
        close(ch).await;
        read.map(|()| letters)
    }

    async fn take(&self, id: &str) -> Result<Option<DeadLetter>> {
        let ch = self.channel().await?;
        let mut found = None;
        let read = self
            .read(&ch, |letter, d| {
                if letter.id == id {
                    found = Some((letter.clone(), d));
                    None
                } else {
                    Some(d)
                }
            })
            .await;
        let taken = match (read, found) {
            (Err(e), _) => Err(e),
            (Ok(()), None) => Ok(None),
            (Ok(()), Some((letter, d))) => d
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map(|_| Some(letter))
                .map_err(|e| amqp("remove a dead letter", e)),
        };
        close(ch).await;
        taken
    }

    async fn purge(&self) -> Result<usize> {
        let ch = self.channel().await?;
        let purged = ch
            .queue_purge(self.queue().as_str().into(), QueuePurgeOptions::default())
            .await
            .map_err(|e| amqp("purge the dead letters", e));
        close(ch).await;
        Ok(purged? as usize)
    }

    fn place(&self) -> String {
        format!("queue {}", self.queue())
    }
}
