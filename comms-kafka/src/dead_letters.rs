//! The dead-letter place on Kafka ([`comms_core::dead_letter`]): the topic
//! `comms.{ns}.dead-letters` (one partition, so the log is in order), written by the
//! idempotent producer with `acks=all`.
//!
//! Kafka cannot delete one record, so the topic is a log of operations, told apart by the
//! header [`OP_HEADER`]: `put` (value: the letter as JSON, [`DeadLetter::to_json`]; key: its
//! id), `remove` (key: the id taken or replayed) and `purge` (everything before it is gone).
//! Reading folds the log from the first offset to the end. The records themselves go when
//! the topic's retention says so (the broker's default; set `retention.ms` on the topic to
//! keep letters longer). It is not `comms.{ns}.deadletter`, where records that are not
//! envelopes are copied (see [`crate::dead_letter`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use comms_core::dead_letter::{DeadLetter, DeadLetters};
use comms_core::{Error, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::error::{map, BACKEND};
use crate::names::Names;
use crate::options::KafkaOptions;
use crate::producer::{Producer, Record};
use crate::topics::Topics;

/// Header telling a record's operation (`put`, `remove`, `purge`).
pub const OP_HEADER: &str = "comms-dead-letters-op";

/// How long one read or write waits for the broker.
const WAIT: Duration = Duration::from_secs(30);

/// The Kafka dead-letter place (see the module docs).
#[derive(Debug, Clone)]
pub struct TopicDeadLetters {
    opts: KafkaOptions,
    topic: String,
    producer: Arc<Producer>,
    topics: Arc<Topics>,
}

impl TopicDeadLetters {
    /// The place of `names`' namespace, written with the transport's producer and admin client.
    pub(crate) fn new(
        opts: &KafkaOptions,
        names: &Names,
        producer: Arc<Producer>,
        topics: Arc<Topics>,
    ) -> Self {
        Self {
            topic: names.child("dead-letters"),
            topics,
            opts: opts.clone(),
            producer,
        }
    }

    async fn write(&self, op: &str, key: &str, value: &[u8]) -> Result<()> {
        self.topics.ensure(&[(self.topic.clone(), Some(1))]).await?;
        let headers = OwnedHeaders::new().insert(Header {
            key: OP_HEADER,
            value: Some(op),
        });
        let record = Record {
            topic: &self.topic,
            partition: Some(0),
            key,
            payload: value,
            headers,
        };
        self.producer.deliver(record, WAIT).await.map(|_| ())
    }

    /// The letters left after folding the whole log, in log order.
    async fn fold(&self) -> Result<Vec<DeadLetter>> {
        self.topics.ensure(&[(self.topic.clone(), Some(1))]).await?;
        let (opts, topic) = (self.opts.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || fold_blocking(&opts, &topic))
            .await
            .map_err(|e| Error::transport(BACKEND, "reading the dead letters", true, e))?
    }
}

fn fold_blocking(opts: &KafkaOptions, topic: &str) -> Result<Vec<DeadLetter>> {
    let group = format!("comms-dead-letters-{}", ulid::Ulid::generate()).to_ascii_lowercase();
    let consumer: BaseConsumer<crate::logs::Quiet> = opts
        .plain_consumer(&group)
        .create_with_context(crate::logs::Quiet)
        .map_err(|e| map("creating the dead-letter reader", e))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, WAIT)
        .map_err(|e| map(format!("reading the offsets of {topic}"), e))?;
    let mut letters: BTreeMap<i64, DeadLetter> = BTreeMap::new();
    if high <= low {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low))
        .map_err(|e| map("assigning the dead-letter topic", e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| map("assigning the dead-letter topic", e))?;
    let deadline = std::time::Instant::now() + WAIT;
    let mut next = low;
    while next < high {
        if std::time::Instant::now() > deadline {
            return Err(Error::Timeout(WAIT));
        }
        let Some(record) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let record = record.map_err(|e| map(format!("reading {topic}"), e))?;
        next = record.offset() + 1;
        let op = record
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == OP_HEADER).and_then(|h| h.value))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let key = record
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        match op.as_str() {
            "put" => {
                let payload = record.payload().unwrap_or_default();
                let letter = DeadLetter::from_json(payload).unwrap_or_else(|e| {
                    DeadLetter::unreadable(format!("offset-{}", record.offset()), &e, payload)
                });
                letters.insert(record.offset(), letter);
            }
            "remove" => letters.retain(|_, l| l.id != key),
            "purge" => letters.clear(),
            _ => {}
        }
    }
    Ok(letters.into_values().collect())
}

#[async_trait]
impl DeadLetters for TopicDeadLetters {
    async fn put(&self, letter: &DeadLetter) -> Result<()> {
        self.write("put", &letter.id, &letter.to_json()?).await
    }

    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut letters = self.fold().await?;
        letters.truncate(limit);
        Ok(letters)
    }

    async fn take(&self, id: &str) -> Result<Option<DeadLetter>> {
        let Some(letter) = self.fold().await?.into_iter().find(|l| l.id == id) else {
            return Ok(None);
        };
        self.write("remove", id, b"").await?;
        Ok(Some(letter))
    }

    async fn purge(&self) -> Result<usize> {
        let n = self.fold().await?.len();
        self.write("purge", "", b"").await?;
        Ok(n)
    }

    fn place(&self) -> String {
        format!("topic {}", self.topic)
    }
}
