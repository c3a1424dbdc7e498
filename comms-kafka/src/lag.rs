//! Reading another consumer group's committed offsets: how far a destination has consumed.
//!
//! A watcher is a consumer that carries the destination group's `group.id` but never joins the
//! group (it never subscribes); it only asks the group coordinator for committed offsets
//! (OffsetFetch). Watchers are made on first use and kept in a small bounded cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::logs::Quiet;
use comms_core::Result;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::map;
use crate::options::KafkaOptions;

/// Most groups watched at once by one transport.
const MAX_WATCHERS: usize = 16;
/// How long one committed-offsets query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Watchers of destination groups' committed offsets.
pub struct Lag {
    opts: KafkaOptions,
    watchers: Mutex<HashMap<String, Arc<BaseConsumer<Quiet>>>>,
}

impl std::fmt::Debug for Lag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lag").finish_non_exhaustive()
    }
}

impl Lag {
    /// No watchers yet.
    pub fn new(opts: KafkaOptions) -> Self {
        Self {
            opts,
            watchers: Mutex::new(HashMap::new()),
        }
    }

    fn watcher(&self, group: &str) -> Result<Arc<BaseConsumer<Quiet>>> {
        let mut w = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = w.get(group) {
            return Ok(c.clone());
        }
        if w.len() >= MAX_WATCHERS {
            if let Some(k) = w.keys().next().cloned() {
                w.remove(&k);
            }
        }
        let c: BaseConsumer<Quiet> = self
            .opts
            .plain_consumer(group)
            .create_with_context(Quiet)
            .map_err(|e| map("creating an offset watcher", e))?;
        let c = Arc::new(c);
        w.insert(group.to_owned(), c.clone());
        Ok(c)
    }

    /// The committed offsets (next offset to read) of `group` on `topic`'s `partitions`;
    /// partitions without a commit are absent. Blocking: call from a blocking thread.
    pub fn committed_blocking(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, i64>> {
        let c = self.watcher(group)?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(topic, *p);
        }
        let got = c
            .committed_offsets(tpl, QUERY_TIMEOUT)
            .map_err(|e| map(format!("reading committed offsets of {group}"), e))?;
        Ok(got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
    }

    /// Async wrapper of [`Lag::committed_blocking`].
    pub async fn committed(
        self: &Arc<Self>,
        group: String,
        topic: String,
        partitions: Vec<i32>,
    ) -> Result<HashMap<i32, i64>> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.committed_blocking(&group, &topic, &partitions))
            .await
            .map_err(|e| {
                comms_core::Error::transport(crate::error::BACKEND, "offset query task", true, e)
            })?
    }
}
