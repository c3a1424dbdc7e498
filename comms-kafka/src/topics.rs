//! Topic creation through the admin API (brokers may not auto-create topics), and partition
//! counts from metadata.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use crate::logs::Quiet;
use comms_core::{Error, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer as _;

use crate::error::{map, BACKEND};
use crate::options::KafkaOptions;
use crate::producer::Producer;

/// Topics known to exist are remembered up to this many.
const MAX_KNOWN: usize = 4096;
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates topics with the configured partitions and replication, once each.
pub struct Topics {
    admin: AdminClient<Quiet>,
    partitions: i32,
    replication: i32,
    known: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .finish_non_exhaustive()
    }
}

impl Topics {
    /// An admin client.
    pub fn new(opts: &KafkaOptions) -> Result<Self> {
        let admin = opts
            .base("admin")
            .create_with_context(Quiet)
            .map_err(|e| map("creating the admin client", e))?;
        Ok(Self {
            admin,
            partitions: opts.section.partitions,
            replication: opts.section.replication,
            known: Mutex::new(HashSet::new()),
        })
    }

    fn is_known(&self, topic: &str) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic)
    }

    fn remember(&self, topic: &str) {
        let mut k = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if k.len() >= MAX_KNOWN {
            k.clear();
        }
        k.insert(topic.to_owned());
    }

    /// Make sure each topic exists: `(name, partitions)`, `None` = the configured count.
    pub async fn ensure(&self, topics: &[(String, Option<i32>)]) -> Result<()> {
        let missing: Vec<&(String, Option<i32>)> =
            topics.iter().filter(|(t, _)| !self.is_known(t)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|(t, p)| {
                NewTopic::new(
                    t,
                    p.unwrap_or(self.partitions),
                    TopicReplication::Fixed(self.replication),
                )
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = self
            .admin
            .create_topics(&new, &opts)
            .await
            .map_err(|e| map("creating topics", e))?;
        for r in results {
            match r {
                Ok(t) => self.remember(&t),
                Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => self.remember(&t),
                Err((t, code)) => {
                    let retryable = !matches!(
                        code,
                        RDKafkaErrorCode::InvalidTopic
                            | RDKafkaErrorCode::InvalidPartitions
                            | RDKafkaErrorCode::InvalidReplicationFactor
                            | RDKafkaErrorCode::TopicAuthorizationFailed
                    );
                    return Err(Error::transport_msg(
                        BACKEND,
                        format!("creating topic {t}: {code}"),
                        retryable,
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The partition count of `topic` from the producer's metadata (retried briefly while a new
/// topic propagates). Blocking.
pub fn partition_count_blocking(producer: &Producer, topic: &str) -> Result<i32> {
    let mut last = None;
    for _ in 0..50 {
        match producer
            .current()
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(5))
        {
            Ok(md) => {
                let n = md
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map_or(0, |t| t.partitions().len());
                if n > 0 {
                    return i32::try_from(n).map_err(|_| {
                        Error::transport_msg(
                            BACKEND,
                            format!("{topic}: too many partitions"),
                            false,
                        )
                    });
                }
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(match last {
        Some(e) => map(format!("reading metadata of {topic}"), e),
        None => Error::transport_msg(
            BACKEND,
            format!("topic {topic} has no partitions yet"),
            true,
        ),
    })
}
