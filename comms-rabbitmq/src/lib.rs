//! `comms-rabbitmq`: the RabbitMQ transport (`amqp:` / `amqps:`) over [lapin].
//!
//! ```no_run
//! # async fn demo() -> comms_core::Result<()> {
//! use comms_core::{Connect, Endpoint, Transport};
//! let transport = comms_rabbitmq::RabbitTransport::connect_url(
//!     "amqp://guest:guest@127.0.0.1:5672/%2f?node=web01&namespace=prod",
//! )
//! .await?;
//! let endpoint = Endpoint::builder(transport, "agent").start().await?;
//! endpoint.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Mapping
//!
//! Every name starts with `comms.{ns}` where `{ns}` is `transport.namespace` (default
//! `default`), so deployments sharing a broker (or a vhost) never see each other.
//!
//! | AMQP object | name | type / arguments | purpose |
//! |---|---|---|---|
//! | exchange | `comms.{ns}` | topic, durable | every message and advertisement |
//! | exchange | `comms.{ns}.dlx` | fanout, durable | dead letters of service/instance queues |
//! | queue | `comms.{ns}.svc.{service}` | durable, bounded, DLX | `Service(service)`: competing consumers, every instance of the service consumes it |
//! | queue | `comms.{ns}.inst.{node}.{service}` | durable, bounded, DLX | `Instance(node:service)` and broadcasts; only that instance consumes it |
//! | queue | `comms.{ns}.expired` | durable, `x-max-length` 10 000, drop-head | dead letters (TTL expiry, rejects): read by every listening transport for `SERVICE_UNAVAILABLE` reports |
//! | queue | `comms.{ns}.dead` | durable, `x-max-length` 10 000, drop-head | input that is not an envelope, with the reason in header `x-comms-error` |
//!
//! Routing keys (names are `[A-Za-z0-9_]`, so they never contain the topic separator `.`):
//!
//! | destination | routing key | bound by |
//! |---|---|---|
//! | `Instance(n:s)` | `inst.{n}.{s}` | the instance queue of `n:s` |
//! | `Service(s)` | `svc.{s}` | the service queue of `s` |
//! | `Broadcast(*)` of command `C` from node `n` | `bc.{C}.{n}` | every instance queue whose endpoint declared `C`: `bc.{C}.*` |
//! | `Broadcast(.)` of command `C` from node `n` | `bn.{C}.{n}` | instance queues of node `n` that declared `C`: `bn.{C}.{n}` |
//! | advertisement (`ADVERTISE`) from `n:s` | `ad.{n}.{s}` | instance queues of endpoints with a directory (declared `ADVERTISE`): `ad.#` |
//!
//! `advertise` declares the instance queue with one binding per declared command (and
//! removes bindings of commands no longer declared) and the service queue, then publishes the
//! advertisement at most once. A sender declares its destination's queue before its first
//! publish there (once per connection), so a message to a service with no live instance waits
//! in the service queue (guarantee 3). All declarations are idempotent (same name, same
//! arguments); changing `queue_bound`, `queue_type` or `queue_expires_ms` for existing queues
//! needs them deleted first (RabbitMQ refuses a redeclaration with other arguments).
//!
//! **Queue type.** Classic durable queues by default: this deployment runs one broker node, and
//! with persistent messages and publisher confirms (a confirm is sent once the message is on
//! disk) a classic queue survives a broker restart with nothing lost, at a lower latency than a
//! Raft log. On a cluster set `queue_type = "quorum"` for replicated queues; every feature used
//! here (max-length with reject-publish, per-message TTL, dead-lettering) works on both.
//!
//! **Bounds.** Every service and instance queue has `x-max-length = queue_bound` (default
//! 10 000, [`comms_core::Capabilities::queue_bound`]) and `x-overflow = reject-publish`: a full
//! queue nacks the publish, `send` retries with a growing pause until `send_timeout` (default
//! 30 s) and then fails with the retryable [`comms_core::Error::Backpressure`]. RabbitMQ counts
//! ready messages only: up to `prefetch` more may be in flight to each consumer. Consumers use
//! `basic.qos(prefetch)` (default 64) and a bounded inbox of the same size, so a slow handler
//! stops the broker from delivering, it never grows memory. Optional `queue_expires_ms` sets
//! `x-expires` (drops queues unused for that long, messages included; off by default).
//!
//! **TTL and reports.** A message's TTL becomes its AMQP `expiration` (messages without a TTL
//! wait, bounded by the queue, unless `default_ttl_ms` is set). An expired message is
//! dead-lettered to `comms.{ns}.expired`; the listening transports of the namespace read that
//! queue and answer the sender with `SERVICE_UNAVAILABLE` when it asked for a report (see
//! [`reports`]). Nothing is dropped silently: what is not reported is logged.
//!
//! # Delivery
//!
//! Envelope: the JSON of [`comms_core::envelope`], content type
//! [`comms_core::envelope::CONTENT_TYPE`], also in the AMQP properties `message_id` (the id),
//! `type` (the command), `correlation_id`, and header `comms-from`. Any AMQP client can publish
//! `{"v":1,"id":"...","command":"HELLO","to":"svc"}` to exchange `comms.{ns}` with routing key
//! `svc.svc` and it is delivered.
//!
//! - at-least-once: persistent (`delivery_mode = 2`), published with `mandatory` on a
//!   confirm-mode channel; `send` returns `Ok` once the broker confirmed; a nack (full queue) or
//!   a return (unroutable) is retried, then an error, never `Ok`. Every publish goes through
//!   one ordered pipeline per transport (`pipeline`): publishes enter the channel in call
//!   order and up to `max_in_flight` (1,000) confirms are outstanding, so
//!   [`comms_core::Transport::submit`] keeps many messages in flight from one task and `send`
//!   is `submit` plus its receipt. Unconfirmed messages are published again one at a time, in
//!   their order, before anything new. **One exception to order**, inherent to confirms: with
//!   many messages in flight to a **full** queue (`x-overflow = reject-publish`), the broker may
//!   refuse one and accept a later one once a consumer made room; the refused one is published
//!   again and arrives after it. A sender that awaits each `send` never sees this.
//! - manual ack after the handler ([`comms_core::Delivery::ack`]); a nack with requeue (or a
//!   dropped delivery) makes the broker deliver it again; a nack without requeue dead-letters.
//! - at-most-once: transient, not confirmed, acknowledged on receipt.
//! - `from` is stamped by the sending transport (the broker cannot verify it: restrict who may
//!   publish to `comms.{ns}` with RabbitMQ permissions where that matters).
//!
//! # Sniffing
//!
//! [`comms_core::Transport::sniff`] (no `advertise` needed): an exclusive, auto-delete,
//! bounded (`x-max-length` 10 000, drop-head) queue bound with `#` to `comms.{ns}`, consumed
//! with no-ack; see [`sniff`] (and its caveat about `mandatory`).
//!
//! # Recovery
//!
//! Our own reconnect loop ([`link`]), not lapin's auto-recovery: a supervisor task replaces the
//! whole session when the connection or publisher channel breaks, reconnecting with capped
//! exponential backoff (100 ms doubling to 2 s, configurable), redeclaring the topology and the
//! identity's queues before anyone uses the new session. Consumers follow the session
//! generation and subscribe again. A `send` (or `submit`) in progress holds its message until
//! it is confirmed: if the connection goes first, the pipeline publishes it again on the next
//! session, in submit order, before any newer message; while disconnected
//! it waits for a session up to `send_timeout`, then fails with a retryable error. It never
//! returns `Ok` for a message the broker did not confirm. Deliveries that were in flight when
//! the connection dropped are redelivered by the broker; the endpoint's dedup window makes the
//! handler run once.
//!
//! # TLS
//!
//! `amqps:` uses rustls (ring); `[rabbitmq.tls]` names a CA chain (`ca`, PEM; system roots
//! otherwise), and a client certificate and key (`cert`, `key`, PEM / PKCS#8) for certificate
//! authentication (add `?auth_mechanism=external` to the URL for EXTERNAL auth). See [`options`].
//!
//! # Limits (known)
//!
//! - Throughput of one caller awaiting each `send`: it waits for the confirm (the broker
//!   confirms a persistent message once it is on disk), so it is latency-bound (about 0.5 ms
//!   per message on the test machine); `submit` with many receipts outstanding is not.
//! - Order with many messages in flight to a full queue: see above.
//! - RabbitMQ expires messages at the head of a queue only: a message with a short TTL behind
//!   messages without one expires (and is reported) once it reaches the head.
//! - A binding is removed when a running transport stops declaring a command; a new process
//!   that declares fewer commands than its predecessor does not know the old ones, so their
//!   broadcast bindings stay on the (durable) instance queue until it is deleted.
//! - `from` is set by the sending transport and cannot be verified by the broker.
//! - TLS is tested for parsing and for how it is handed to lapin; the broker used by the test
//!   suite has no TLS listener, so there is no live `amqps:` test.
//!
//! # Tests
//!
//! `tests/tests/conformance_rabbitmq.rs` (cases 1–22, 25, 26), `conformance_rabbitmq_faults.rs`
//! (23, 24, 27: broker killed with SIGKILL and restarted twice during 10,000 messages, sent one
//! by one and pipelined),
//! `rabbitmq_interop.rs` (Python pika both ways, bad input parked with its reason, a deleted
//! queue declared again) and `rabbitmq_outage.rs` (`send` while the broker is down). They share
//! one broker: `.config/nextest.toml` runs every test named `*rabbitmq*` serially.
//! `COMMS_RABBITMQ_QUEUE_TYPE=quorum` runs them on quorum queues.
//!
//! # Layout
//!
//! [`options`] (configuration), [`tls`], [`topology`] (names and declarations), `session` (one
//! connection and its channels), [`link`] (reconnect loop), `publisher` (one publish and how
//! its answer is judged), `pipeline` (ordered publishing with confirms outstanding), `consumer`
//! (qos, deliveries), `acker`, [`reports`] (SERVICE_UNAVAILABLE), [`dead_letter`] (bad input),
//! [`transport`] (the [`comms_core::Transport`] impl).

mod acker;
mod consumer;
pub mod dead_letter;
pub mod dead_letters;
mod error;
pub mod link;
pub mod options;
mod pipeline;
mod publisher;
pub mod reports;
mod session;
pub mod sniff;
pub mod tls;
pub mod topology;
pub mod transport;

pub use error::BACKEND;
pub use options::{QueueType, RabbitOptions, TlsSection};
pub use transport::{capabilities, RabbitTransport, MAX_MESSAGE_SIZE};
