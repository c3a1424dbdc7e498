//! `comms-core`: the contract every comms backend implements, and what all of them share.
//!
//! # Layout
//! - [`name`], [`address`], [`message`], [`schema`], [`advertisement`]: the message model
//!   (name rule shared with the cd: wire; `node:service` addresses; instance / service /
//!   broadcast destinations; typed messages with declared parameters).
//! - [`transport`]: the [`Transport`] trait (advertise, listen, send, submit, forward,
//!   close), [`Delivery`] with ack/nack, the bounded [`Inbox`]; [`receipt`]: the [`Receipt`]
//!   of a pipelined `submit` (many messages in flight from one task); [`stats`]: the
//!   [`TransportStats`] every transport counts (sent, acknowledged, failed, resent,
//!   dead-lettered), exported as Prometheus metrics by the binaries; [`trace`]: OpenTelemetry
//!   spans for each send and handler run, linked across hops by the message's `traceparent`.
//! - [`endpoint`]: [`Endpoint`] — handlers by command, request/reply, error replies, dedup,
//!   heartbeats, one lane per sender, contained panics and handler timeouts — written once
//!   above the trait. [`retry`]: the [`RetryPolicy`] (attempts, exponential backoff) a
//!   failing handler runs under; [`dead_letter`]: where a message goes after its last attempt
//!   (a durable place per backend) and how it is replayed; [`state`]: the local state
//!   directory (attempt counts that outlive a restart, native dead letters).
//!   [`directory`]: live endpoints with TTL expiry.
//! - [`config`]: TOML config and transport URLs (`COMMS_URL` overrides).
//! - [`envelope`]: the JSON envelope brokers carry.
//! - [`backend`]: for backend authors, what every transport shares: the [`backend::Binding`]
//!   each embeds (closed flag, the identity bound by the first `advertise` and its
//!   `IdentityConflict` checks, the single `listen`, validation / size check / `from` stamping
//!   of `send`, the body of `forward`), [`backend::prepare_forward`] and the one
//!   `SERVICE_UNAVAILABLE` report builder. [`naming`]: the `comms.{namespace}` names the broker
//!   backends share.
//!
//! The in-memory transport, the reference implementation, is the `comms-memory` crate; the
//! conformance suite every backend runs is the `comms-conformance` crate.
//!
//! # Delivery guarantees (every backend; the conformance suite proves each)
//! 1. `send` returning `Ok` means the transport took responsibility: the message reaches a
//!    handler at least once despite connection loss or a broker/daemon restart (on backends
//!    whose [`Capabilities::survives_restart`] is true), and the dedup window runs the handler
//!    once. [`DeliveryMode::AtMostOnce`] is an explicit per-message choice.
//! 2. Order is kept per (sender, destination) pair.
//! 3. A message to a service with no live instance waits (bounded, with a TTL) or, when the
//!    sender asked for a report, is answered `SERVICE_UNAVAILABLE` — never silently dropped.
//! 4. Every queue is bounded; a full queue makes `send` wait, then fail with
//!    [`Error::Backpressure`].
//! 5. `forward` keeps `from` and `id` and increments `hops`; past the hop limit the message is
//!    dropped with a logged error.
//! 6. A message whose handler keeps failing (retry asked, panic, timeout) is tried again with
//!    backoff, in place (its sender's later messages wait), at most
//!    [`RetryPolicy::max_attempts`] times, then kept in the backend's durable dead-letter place
//!    with the reason and the attempt count ([`dead_letter`]) — never dropped.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use comms_core::{Connect, Endpoint, Message, Outcome};
//! use comms_memory::MemoryTransport;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> comms_core::Result<()> {
//! let server = Endpoint::builder(MemoryTransport::connect_url("memory://doc?node=n1").await?, "echo")
//!     .handle("ECHO", |req| async move {
//!         let mut reply = req.reply("ECHOED")?;
//!         reply.params = req.message().params.clone();
//!         Ok(Outcome::Reply(reply))
//!     })
//!     .start()
//!     .await?;
//! let client = Endpoint::builder(MemoryTransport::connect_url("memory://doc?node=n1").await?, "client")
//!     .start()
//!     .await?;
//! let ask = Message::new("ECHO", server.address().clone())?.with_param("text", "hi");
//! let reply = client.request(ask, Duration::from_secs(5)).await?;
//! assert_eq!(reply.param("text"), Some("hi"));
//! client.close().await?;
//! server.close().await?;
//! # Ok(()) }
//! ```

pub mod address;
pub mod advertisement;
pub mod backend;
pub mod capabilities;
pub mod config;
pub mod dead_letter;
pub mod directory;
pub mod endpoint;
pub mod envelope;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod message;
pub mod name;
pub mod naming;
pub mod receipt;
pub mod retry;
pub mod schema;
pub mod startup;
pub mod state;
pub mod stats;
pub mod trace;
pub mod transport;

pub use address::{Address, Destination, Scope};
pub use advertisement::Advertisement;
pub use capabilities::Capabilities;
pub use config::{Config, Scheme, TransportUrl};
pub use dead_letter::{DeadLetter, DeadLetters};
pub use directory::{Directory, DirectoryEvent, Entry, Query};
pub use endpoint::{
    Batching, Endpoint, EndpointBuilder, HandlerError, HandlerResult, Outcome, Request,
};
pub use error::{Error, Invalid, Result};
pub use message::{commands, DeliveryMode, Message, MessageId, Params};
pub use receipt::Receipt;
pub use retry::RetryPolicy;
pub use schema::{ParamType, Schema, TypedMessage};
pub use stats::{TransportCounts, TransportStats};
pub use transport::{Acker, Connect, Delivery, Inbox, Transport};
