//! `commsd`, the Communicator routing daemon (one node, or a cluster of peers), as a library (the `commsd` binary
//! and the `server` embed it).
//!
//! ```no_run
//! # async fn demo() -> Result<(), commsd::DaemonError> {
//! use commsd::{Daemon, DaemonConfig};
//!
//! let handle = Daemon::start(DaemonConfig::ephemeral("vm", "/tmp/commsd.sock")).await?;
//! println!("tcp {:?}, unix {:?}", handle.tcp_addr(), handle.unix_path());
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Architecture
//!
//! Tasks (all spawned on a [`TaskTracker`](tokio_util::task::TaskTracker), stopped by one
//! [`CancellationToken`](tokio_util::sync::CancellationToken)):
//! - **one accept loop** (`listen.rs`, `accept_loop`) serves every
//!   stream listener; each listener admits with its own budget: TCP (loopback only), Unix
//!   and TLS each take a permit of their **own** semaphore of `max_connections` (none left →
//!   closed, counted), so a flood on one cannot take another's slots; a service connection
//!   with no valid line within `first_line_timeout` is closed (`conn.rs`);
//! - the **secure listener** (`secure.rs`, optional, any address): TLS with an optional
//!   client CA (mutual TLS); each handshake runs in its own task with a timeout, at most
//!   `max_pending_handshakes` at once and `max_per_address` per IP address, then the
//!   connection takes a permit of the TLS listener's `max_connections`
//!   and is a service connection like a loopback TCP one; the peer listener (`cluster/`)
//!   admits within `max_links` + a few sockets;
//! - **UDP loop** (`listen.rs`): checks size (refused, never truncated) and `secret_code`
//!   (stripped), then hands the parsed message to the router; bad datagrams are counted per
//!   reason and logged at most once per 5 s per reason (`ratelog.rs`);
//! - per connection a **reader** and a **writer** (`conn.rs`);
//! - **one router** (`router/`), the single owner of all routing state: registrations,
//!   declared commands, the cache (`cache.rs`), the "down since" memory, and every
//!   connection's pending output. Its inbox is a bounded mpsc channel.
//!
//! Why an actor and not a shared table: routing needs the name table, the commands and the
//! cache together; one owner needs no lock at all on the hot path, and messages between one
//! pair of services stay in order trivially. The costs of an actor (per-message hand-off
//! between tasks) are removed by batching both hand-offs (below). The binary runs a
//! current-thread runtime: docs/DESIGN.md §7 measured it faster than two threads on this class of
//! machine; an embedding process may use any runtime.
//!
//! How a line flows: the reader reads up to 64 KiB and sends the router **one event per read
//! chunk** (all its whole lines). The router handles a batch of events: for each line
//! [`peek_route`](cd_wire::peek_route) reads the head only; a line for the daemon is
//! parsed in full and answered; otherwise one hash lookup finds the destination and
//! [`restamp_head`](cd_wire::restamp_head) writes `<NODE:sender ` + head + the
//! unparsed parameter text into the destination's pending buffer (after a one-pass,
//! allocation-free check that the text is canonical, `canonical.rs`; a non-canonical line,
//! e.g. unsorted parameters, is parsed and re-serialized as the C++ daemon does). After the batch, each
//! destination gets **one `Bytes` per round** on its bounded queue (`try_send`); its
//! writer coalesces what is queued into one `write`. A full queue means the service does not
//! read: it is disconnected (logged, counted), never waited for.
//!
//! Addressing (docs/PROTOCOL.md §2.3/§2.5): server ∈ {"", `.`, `*`, NODE} and service ∈ {"",
//! `communicatord`} → daemon command; service `.`/`*`/`?` → local broadcast to connections
//! that declared the command in `COMMANDS`; `[server:]service/CMD` → the connection
//! registered as `service`, or (cluster) the next hop toward the nearest node hosting it,
//! or the cache; a named other server → the next hop toward it, else the cache (single node:
//! dropped, `TRANSMISSION_REPORT status=failed` / `SERVICE_UNAVAILABLE` when the sender asked).
//!
//! Cluster (docs/NATIVE.md "Cluster"), all in `cluster/`: peer links are connections of kind
//! `PeerIn`/`PeerOut` with the same reader and writer tasks; `cluster/net.rs` opens them
//! (listener, dialers, gossip), the router owns their state like everything else
//! (`cluster/peers.rs` handshake, `cluster/state.rs` link state and quorum,
//! `cluster/relay.rs` lines across links) and the pure routing table is `cluster/routes.rs`.
//!
//! Modules: [`config`] ([`DaemonConfig`], and the config file / command line that build it,
//! shared by the `commsd` binary and the server's embedded daemon), [`tls`] (secure listener
//! and peer-link TLS), the rest private. The wire codec is the `cd-wire` crate.
//!
//! Reply shapes follow docs/PROTOCOL.md §7 byte for byte: HELP, READY, STATUS (and QUITTING,
//! DISCONNECTING, REGISTER refusals) carry `<NODE:communicatord `; replies to a request are
//! addressed `NODE:svc/CMD` (plain `CMD` for a connection that has not registered).
//!
//! Stop: on [`DaemonHandle::shutdown`], drop, SIGINT/SIGTERM (binary) or an allowed
//! `STOP`/`SHUTDOWN`: accept loops and UDP stop; services that declared `DISCONNECTING` get
//! it; for `shutdown_grace` any input is answered `QUITTING` and its connection closed;
//! then every connection is closed; writers flush for at most `flush_timeout`; the Unix
//! socket file is removed.
//!
//! Sniffing (comms extension, `router/sniff.rs`, docs/NATIVE.md): an unregistered connection
//! of an admin (the same rule as `STOP`, [`AdminRules`]) that sends `SNIFF` gets a copy of every routed line after stamping, appended to its
//! round output like any destination's. When nobody sniffs the hot path pays one branch
//! (`sniffers.is_empty()`); a sniffer whose queue is full loses that batch (counted,
//! reported in band as `SNIFF_LOST`), where a slow service would be disconnected.
//!
//! # Deliberate differences from the C++ communicatord
//! - An unparseable, oversize (`max_line`, default 64 KiB) or unroutable line gets
//!   `INVALID reason=...[;command=CMD]`; the connection stays usable (C++: silent drop;
//!   C++ also has no line limit and stalls on 70 KB lines).
//! - `REGISTER` without `version=1` (or with another) gets `INVALID` (C++: silence). A second
//!   `REGISTER` of a live name is refused with
//!   `<NODE:communicatord INVALID command=REGISTER;reason=...;service=NAME` and the
//!   connection stays unregistered and usable (C++ accepts it).
//! - A connection that never registered announces nothing when it closes (C++ announces a
//!   bogus `status=down`). Unregistered connections may only send daemon commands; anything
//!   else gets `INVALID reason=register first`.
//! - `LIST_SERVICES` is answered `NODE:svc/SERVICES list=a,b;server_name=NODE`.
//! - `SERVICE_STATUS` is answered whatever the connection kind (C++: Unix requesters only if
//!   they declared STATUS); a service seen going down is reported `status=down` with
//!   `down_since`/`up_since` (the last 1024 such names are remembered).
//! - Caching applies to any unregistered service name (no `.service` files), bounded by
//!   count and bytes (full → refused as for `cache=no`), TTL 1–86400 s (C++ floor 10 s),
//!   expired by a timer; `SERVICE_UNAVAILABLE` carries `comms_corr` = the message's
//!   `comms_id`.
//! - UDP: nothing is ever answered over UDP (C++ crashes trying to answer an unknown command);
//!   daemon commands over UDP are logged and dropped; other datagrams are routed stamped
//!   `<NODE: ` (C++: unstamped, so a datagram could spoof any sender); oversize datagrams
//!   are dropped (C++ truncates); `secret_code` is stripped (C++ forwards it); every drop is
//!   counted per reason ([`StatsSnapshot::udp_oversize`], `udp_unsigned`, `udp_unparseable`)
//!   and logged at most once per 5 s per reason.
//! - The secure listener (`secure_listen`) can require client certificates (mutual TLS,
//!   [`TlsListenerConfig::with_client_ca`]); the C++ only checks `CONNECT` credentials.
//!   A TLS service connection routes like a TCP one, but may `STOP`/`SHUTDOWN`/`SNIFF` only
//!   with the admin token.
//! - `STOP`/`SHUTDOWN` are accepted from the Unix socket only by default
//!   ([`AdminRules`]); C++: from any local client.
//! - `SNIFF` (extension, not in `HELP`): see above; admins only, by the same rule as `STOP`
//!   ([`AdminRules`]: the admin token, root or the daemon's user on the Unix socket, or
//!   loopback TCP with [`AdminRules::allow_sniff_from_tcp`]).
//! - `INVALID`, `UNKNOWN`, `QUITTING`, `READY`, `STATUS`... sent *to* the daemon are only
//!   logged, never answered `UNKNOWN` (avoids ping-pong with a service's catch-all).
//! - A service may send a unicast to its own name and receives it (C++ drops it).
//! - Kept from the C++ on purpose: a broadcast reaches the **sender too** when it declared
//!   the command (§7), so one service instance behaves like any other listener.

#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench;
mod cache;
mod canonical;
mod cluster;
pub mod config;
mod conn;
mod error;
mod event;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod listen;
pub mod metrics;
mod ratelog;
mod replies;
mod router;
mod secure;
mod stats;
pub mod tls;

pub use cd_wire::DAEMON_SERVICE;
pub use cluster::ClusterMap;
pub use config::{
    AdminRules, CacheLimits, DaemonConfig, PeerConfig, TlsListenerConfig, DEFAULT_PEER_PORT,
    DEFAULT_PEER_RETRY, DEFAULT_TCP, DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    DEFAULT_TLS_MAX_PENDING_HANDSHAKES, DEFAULT_TLS_PORT, DEFAULT_UDP, DEFAULT_UNIX_PATH,
    MAX_COUNT, MAX_DURATION, MAX_UDP_DATAGRAM,
};
pub use error::DaemonError;
pub use handle::{ClusterMapSource, Daemon, DaemonHandle};
pub use stats::{Levels, Stats, StatsSnapshot, CONNECTION_KINDS};
