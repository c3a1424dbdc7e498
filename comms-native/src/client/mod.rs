//! The permanent Communicator client connection (`cd:`), as the C++
//! `communicator_connection` (docs/PROTOCOL.md §3, §5).
//!
//! [`Client`] is a cheap `Clone` handle over a bounded channel to **one task that owns the
//! socket** ([`ClientConfig::outgoing_capacity`]); messages from the daemon come out of a
//! bounded [`Incoming`] channel ([`ClientConfig::incoming_capacity`]; while it is full the task
//! stops reading the socket). The native transport uses the crate-internal raw variant instead
//! (`Client::spawn_raw`): the task frames lines without parsing them and hands them over in
//! batches of up to 64, and the transport parses them in place. Either way the task itself
//! answers the daemon's own lines (READY, HELP, a refused REGISTER, QUITTING). The state is a
//! [`tokio::sync::watch`] of [`ConnectionState`].
//!
//! # State machine (one task)
//!
//! ```text
//!            ┌──────── retry delay (schedule[i], i += 1; last value repeats) ◄──────────┐
//!            ▼                                                                          │
//!   Disconnected ── connect ok ──► send REGISTER service=NAME;version=1                 │
//!      │   ▲                        │                                                   │
//!      │   │ connect fails ─────────┼───────────────────────────────────────────────────┤
//!      │   │                        ▼                                                   │
//!      │   │        HELP ──► COMMANDS list=<declared + base, sorted, comma-joined>      │
//!      │   │        READY ─► Connected{node from `<node:communicatord`, session n}      │
//!      │   │                  (i reset to 0; outgoing lines now written, batched)       │
//!      │   │        INVALID command=REGISTER ─► Refused{reason} (name still live) ──────┤
//!      │   └─────── socket lost / QUITTING ─────────────────────────────────────────────┘
//!      └── close() ─► UNREGISTER (when connected), shutdown ─► Closed
//! ```
//!
//! - Either side may start first: the task keeps trying on the schedule, default
//!   `0.5,1,2` s, the last repeating, each pause shortened by up to 25 % at random (the stock
//!   client's is `1,1,1,3,5,10,20,30,60`, cd-wire §3), overridable by the URL query `?retry=0.05,0.1`
//!   or [`ClientConfig::with_retry`]. A reconnect after a lost session logs one line.
//! - While not registered, lines handed to the task are **dropped and counted** (and
//!   [`Client::send`] fails fast with [`ClientError::NotConnected`]): like the C++ client, the
//!   connection is not a store. The native transport keeps its own copy of every at-least-once
//!   message and resends after the next `READY`.
//! - Every registration re-sends the declared commands (they are remembered across
//!   reconnects and updated with [`Client::set_commands`]).
//! - Shutdown: [`Client::close`] (graceful), the cancellation token given to
//!   [`Client::spawn`] (abrupt), or dropping every handle (abrupt, like a crash).
//!
//! What lives where: the socket, the codec buffers, the declared commands and the retry
//! counter live in the task; handles hold only the channel sender and the state watch.

mod config;
mod dial;
mod error;
mod handle;
mod state;
mod target;
mod task;

pub use cd_wire::DAEMON_SERVICE;
pub use config::{
    commands_list, ClientConfig, BASE_COMMANDS, CONNECT_TIMEOUT, DEFAULT_INCOMING_CAPACITY,
    DEFAULT_MAX_LINE, DEFAULT_OUTGOING_CAPACITY,
};
pub use error::ClientError;
pub(crate) use handle::RawIncoming;
pub use handle::{Client, Incoming};
pub use state::ConnectionState;
pub use target::{default_retry, parse_retry, Target, DEFAULT_PORT, DEFAULT_RETRY};
