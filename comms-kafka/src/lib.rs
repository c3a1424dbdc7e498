//! `comms-kafka`: the Kafka transport of comms, over `rdkafka` (librdkafka, built in).
//!
//! `kafka://host:port[,host:port...]` in the configuration selects it; `comms::connect` builds
//! a [`KafkaTransport`]. It works with any Kafka-protocol broker (Apache Kafka, Redpanda,
//! tansu); brokers need not auto-create topics.
//!
//! `Transport::sniff` (for `commsctl sniff`) is a never-committing consumer of every topic of
//! the namespace from the end: see [`sniff`].
//!
//! # Mapping
//!
//! **Topics** (`{ns}` = `transport.namespace`, default `default`; see [`Names`]):
//!
//! | topic | carries | read by |
//! |---|---|---|
//! | `comms.{ns}.svc.{service}` | messages to a service | group `comms.{ns}.svc.{service}`: every instance of the service, competing |
//! | `comms.{ns}.inst.{node}.{service}` | messages to one instance | group `comms.{ns}.inst.{node}.{service}`: that instance only |
//! | `comms.{ns}.broadcast` (1 partition) | broadcasts and `ADVERTISE` | every listening endpoint, without a group, from the end |
//! | `comms.{ns}.replies` (1 partition) | messages to ephemeral endpoints (`commsctl`) | each ephemeral endpoint, without a group, from the end, keeping its own |
//! | `comms.{ns}.deadletter` (1 partition) | records that were not envelopes | operators |
//!
//! Topics are created through the admin API with the `[kafka]` section's `partitions` and
//! `replication` (see [`KafkaSection`]). An ephemeral endpoint (`[transport] ephemeral`,
//! `commsctl`) gets no topic and no group of its own: it reads the shared replies topic, and
//! whoever it sends to replies there ([`replies`]), so short-lived clients leave nothing on
//! the broker (comms deletes no topic). An endpoint creates its own topics when it first
//! advertises, a sender creates a destination's topic on first use. Every record value is the
//! JSON envelope of [`comms_core::envelope`], with header `content-type:
//! application/vnd.comms.envelope+json` and `comms-id`; the key is the sender's address.
//!
//! **Partitions and order.** Order is kept per (sender, destination). To an instance, a
//! sender writes to one partition (chosen from its address, like a key). To a service, a
//! sender writes to *one* partition at a time and moves to the next only when the service's
//! group has committed everything it wrote there; a busy sender makes such a drain point
//! (a short pause) every 500 ms or 256 records ([`outbound`]). Its records are never on two partitions at
//! once, so order holds even while several instances compete, yet its work spreads over the
//! partitions — and so over the instances. (Keying by sender alone would pin each sender to
//! one instance for ever; one partition per topic would leave all but one instance idle.)
//! Other producers (e.g. Python) may key by sender address and let the default partitioner
//! choose: order per key holds the same way, without the spreading.
//!
//! **Consumer groups.** A service is one group whose members compete for partitions (so at
//! most `partitions` instances share one service's work). Each instance also has its own
//! group on its own topic, for exact delivery that survives its restarts. Broadcasts are read
//! by each endpoint from the end of the broadcast topic at `listen` time, and kept only when
//! the endpoint declared the command (and, for `.`, when the sender is on the same node).
//!
//! **Advertisements** are at-most-once broadcasts on the broadcast topic (as on every
//! backend); they expire in the [`comms_core::Directory`] by TTL when heartbeats stop. An
//! endpoint reads the broadcast topic from its end, so old advertisements are never replayed.
//!
//! # Delivery
//!
//! - **Producer**: idempotent, `acks=all`, no linger; `send` returns after the delivery report
//!   (`Ok` = written to all in-sync replicas). Concurrent sends are not serialized: each
//!   hands its record over under the destination's lock and awaits its report without it,
//!   so many are in flight together ([`outbound`]). [`comms_core::Transport::submit`]
//!   returns once the record is handed over, in order, and its receipt resolves with the
//!   report (one task keeps many in flight; `send` is `submit` and its receipt). For
//!   throughput, set `"linger.ms" = "5"` under `[kafka.librdkafka]` and a `queue_bound`
//!   above the number of receipts kept outstanding. `delivery_timeout_ms` (librdkafka
//!   `message.timeout.ms`, 60 s) lets records ride out a broker restart. A failed `send` is
//!   retryable and may be repeated with the same message: the receiver deduplicates by id.
//! - **Commits**: `enable.auto.commit=false`; a consumer commits, every 20 ms, on revoke and
//!   on stop, only the prefix of each partition whose deliveries were all acknowledged
//!   ([`offsets`]), so several deliveries per partition can be in flight (the prefetch, 64)
//!   and nothing is committed before its handler finished. A crash redelivers the rest.
//! - **Nack** (or an acker dropped unsettled): the consumer hands the message to the inbox
//!   again from memory, marked redelivered; its offset stays uncommitted meanwhile, so a crash
//!   before the ack still redelivers it from Kafka. Seeking back was rejected: it would replay
//!   every later record of the partition too. `nack(requeue = false)` drops the message (it
//!   counts as done, with a warning).
//! - **Rebalance**: on revoke, the consumer waits (up to 10 s) for the revoked partitions'
//!   deliveries in flight, commits the acknowledged prefix synchronously, then lets go
//!   ([`rebalance`]): the next owner does not run finished handlers again.
//! - **Bad input**: a record whose value is not a valid envelope is copied to
//!   `comms.{ns}.deadletter` with headers `comms-dead-letter-reason`, `-topic`, `-partition`,
//!   `-offset`, and skipped; the consumer keeps going.
//! - **Backpressure** (`Capabilities::queue_bound`, `[kafka] queue_bound`, default 1000):
//!   Kafka itself has no queue bound, so the bound is on the sender's side and means *messages
//!   this sender wrote to this destination that the destination's consumer group has not yet
//!   committed*, measured from the group's committed offsets (OffsetFetch). At the bound
//!   `send` waits up to `send_timeout_ms` (30 s) for the consumers, then fails with
//!   [`comms_core::Error::Backpressure`]. Broadcasts are not bounded this way (no group).
//! - **No instance (TTL)**: a message waits in its topic until a consumer reads it (bounded by
//!   the topic's retention). When the sender asked for a report, it checks after the TTL
//!   (default 60 s) whether the group committed past the message and, if not, puts
//!   `SERVICE_UNAVAILABLE` (correlated to the message, `destination_service`,
//!   `unsent_command`) on its own instance topic; a consumer that reads a message older than
//!   its TTL skips it. This relies on the hosts' clocks agreeing (record timestamps).
//! - **At-most-once** messages are queued without waiting for a report and delivered without
//!   an acker.
//! - **Restart**: librdkafka reconnects by itself; consumers rejoin their groups and resume
//!   from the committed offsets; the endpoint's dedup window absorbs what a restart replays.
//!
//! **Not done**: a second live transport claiming the same address is not refused (Kafka
//! has no cheap way to see it); both then share the instance group's partitions.
//!
//! # Layout
//! [`options`] (config), [`names`], [`topics`] (admin), [`producer`], [`outbound`] and [`lag`]
//! (sender-side partition choice and bound), [`consumer`] (poll threads), [`offsets`],
//! [`acker`], [`rebalance`], [`dead_letter`], [`reports`], [`transport`].
//!
//! # Example
//! ```no_run
//! # async fn demo() -> comms_core::Result<()> {
//! use comms_core::{Config, Connect, Endpoint};
//! let mut config = Config::from_url("kafka://127.0.0.1:9092")?;
//! config.transport.node = Some("n1".into());
//! let transport = comms_kafka::KafkaTransport::connect(&config).await?;
//! let endpoint = Endpoint::builder(transport, "demo").start().await?;
//! endpoint.close().await?;
//! # Ok(()) }
//! ```

pub mod acker;
pub mod consumer;
pub mod dead_letter;
pub mod dead_letters;
pub mod error;
pub mod lag;
pub mod logs;
pub mod names;
pub mod offsets;
pub mod options;
pub mod outbound;
pub mod producer;
pub mod rebalance;
pub mod replies;
pub mod reports;
pub mod shared;
pub mod sniff;
pub mod topics;
pub mod transport;

pub use names::Names;
pub use options::{KafkaOptions, KafkaSection, MAX_MESSAGE_SIZE};
pub use transport::{probe, KafkaTransport};
