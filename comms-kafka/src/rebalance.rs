//! The consumer context: commit before a partition is taken away.
//!
//! On revoke, the callback (which runs on the poll thread) first waits a bounded time for the
//! deliveries of the revoked partitions still being handled, then commits the acknowledged
//! prefix synchronously, then forgets the partitions. So when another instance of the service
//! takes a partition over, it starts after everything this instance has finished: handlers
//! that completed are not run again elsewhere. Deliveries handed back (nacked) meanwhile are
//! left to the new owner.
//!
//! On assign, the consumer pauses for `assign_grace` (`[kafka] assign_grace_ms`, default 1 s)
//! before it takes the partitions up (the pause happens before librdkafka fetches the committed
//! offsets). A broker that completes a rebalance before every previous owner has revoked —
//! seen with tansu, where an old owner kept a partition for ~0.5 s after the new owner got it
//! — would otherwise let the new owner read from an offset the old owner is about to commit
//! past, and run those handlers a second time. The grace covers the old owner's next
//! heartbeat, its revoke and its commit. With Apache Kafka's eager protocol it is not needed
//! and can be set to 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::offsets::Tp;
use crate::shared::Shared;

/// Longest wait for in-flight deliveries before a revoke goes ahead anyway.
pub const REVOKE_WAIT: Duration = Duration::from_secs(10);

/// Context of a group consumer.
#[derive(Debug, Clone)]
pub struct GroupContext {
    /// State shared with the poll loop and ackers.
    pub shared: Arc<Shared>,
    /// Pause before taking up newly assigned partitions (see the module docs).
    pub assign_grace: Duration,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::logs::log(level, fac, log_message);
    }

    fn error(&self, e: rdkafka::error::KafkaError, reason: &str) {
        crate::logs::error(&e, reason);
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// Commit the acknowledged prefix of `only` (every partition when `None`).
pub fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    only: Option<&[Tp]>,
    mode: CommitMode,
) {
    let points = shared.offsets().to_commit(only);
    if points.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), point) in &points {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*point)) {
            tracing::warn!(error = %e, "kafka: building a commit");
            return;
        }
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            let mut o = shared.offsets();
            for (tp, point) in &points {
                o.committed(tp, *point);
            }
        }
        Err(e) => {
            tracing::debug!(consumer = %shared.label, error = %e, "kafka: commit failed; retried later")
        }
    }
}

impl GroupContext {
    fn wait_for_inflight(&self, revoked: &[Tp]) {
        let deadline = Instant::now() + REVOKE_WAIT;
        let mut abandoned = 0usize;
        loop {
            let mut keep = Vec::new();
            for r in self.shared.take_requeued() {
                if revoked.contains(&r.key.tp) {
                    abandoned += 1; // left to the partition's next owner
                } else {
                    keep.push(r);
                }
            }
            self.shared.stash(keep);
            let inflight: usize = {
                let o = self.shared.offsets();
                revoked.iter().map(|tp| o.inflight(tp)).sum()
            };
            if inflight <= abandoned || self.shared.is_closing() {
                return;
            }
            if Instant::now() > deadline {
                tracing::warn!(consumer = %self.shared.label, inflight, "kafka: partitions revoked with deliveries still being handled; they may run again on the next owner");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // The group has placed us: `listen` need not wait for the grace (a group reads
            // from its committed offsets, so nothing sent meanwhile is missed).
            self.shared.set_assigned();
            if tpl.count() > 0 && !self.assign_grace.is_zero() && !self.shared.is_closing() {
                std::thread::sleep(self.assign_grace);
            }
        }
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions(tpl);
            self.wait_for_inflight(&revoked);
            commit(consumer, &self.shared, Some(&revoked), CommitMode::Sync);
            let mut o = self.shared.offsets();
            for tp in &revoked {
                o.revoke(tp);
            }
            tracing::debug!(consumer = %self.shared.label, ?revoked, "kafka: partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let assigned = partitions(tpl);
                {
                    let mut o = self.shared.offsets();
                    for tp in &assigned {
                        o.assign(tp.clone());
                    }
                }
                tracing::debug!(consumer = %self.shared.label, ?assigned, "kafka: partitions assigned");
                self.shared.set_assigned();
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(consumer = %self.shared.label, error = %e, "kafka: rebalance error")
            }
        }
    }
}
