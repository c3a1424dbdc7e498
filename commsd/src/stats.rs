//! Counters of events an operator wants to see (drops, refusals, disconnects).
//!
//! Plain relaxed atomics shared between the tasks: no lock, and the router bumps them once
//! per event (never per byte).

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters; read them with [`Stats::snapshot`].
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) idle_connections_closed: AtomicU64,
    /// The rate limits of the warnings hostile input can cause (one per kind).
    pub(crate) logs: crate::ratelog::LogGates,
    pub(crate) slow_consumers_disconnected: AtomicU64,
    pub(crate) lines_routed: AtomicU64,
    pub(crate) invalid_lines: AtomicU64,
    pub(crate) dropped_other_server: AtomicU64,
    pub(crate) cached: AtomicU64,
    pub(crate) cache_expired: AtomicU64,
    pub(crate) cache_refused: AtomicU64,
    pub(crate) udp_received: AtomicU64,
    pub(crate) udp_dropped: AtomicU64,
    pub(crate) udp_oversize: AtomicU64,
    pub(crate) udp_unsigned: AtomicU64,
    pub(crate) udp_unparseable: AtomicU64,
    pub(crate) tls_handshakes: AtomicU64,
    pub(crate) tls_handshake_failures: AtomicU64,
    pub(crate) sniff_copies: AtomicU64,
    pub(crate) sniff_lost: AtomicU64,
    pub(crate) lines_forwarded: AtomicU64,
    pub(crate) broadcast_duplicates: AtomicU64,
    pub(crate) peer_plain_refused: AtomicU64,
    pub(crate) forged_origins: AtomicU64,
    pub(crate) node_states_refused: AtomicU64,
    pub(crate) node_states_throttled: AtomicU64,
    /// Levels the router publishes after each round of events (read by the metrics).
    pub(crate) gauges: Gauges,
    /// Bytes queued for every connection's writer (the daemon's memory budget in use).
    pub(crate) queue_bytes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Levels, not counts: written by the router (a store per round), read at a scrape.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    /// Open stream connections by [`ConnKind`](crate::event::ConnKind) (in its order).
    pub(crate) connections: [AtomicU64; 5],
    pub(crate) services: AtomicU64,
    pub(crate) cache_entries: AtomicU64,
    pub(crate) peer_links: AtomicU64,
    pub(crate) nodes_reachable: AtomicU64,
    /// When the routes were last computed (unix ms; 0: never).
    pub(crate) routes_computed_ms: AtomicU64,
}

/// The levels at one instant ([`Stats::levels`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Levels {
    /// Open stream connections: unix, tcp, tls, peer_in, peer_out.
    pub connections: [u64; 5],
    /// Registered services.
    pub services: u64,
    /// Messages in the cache.
    pub cache_entries: u64,
    /// Up links to peer daemons.
    pub peer_links: u64,
    /// Nodes reachable, this one included.
    pub nodes_reachable: u64,
    /// When the routes were last computed (unix ms; 0: never).
    pub routes_computed_ms: u64,
    /// Bytes queued for the connections' writers.
    pub queue_bytes: u64,
}

/// The label of each [`Levels::connections`] entry.
pub const CONNECTION_KINDS: [&str; 5] = ["unix", "tcp", "tls", "peer_in", "peer_out"];

/// A copy of the counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Stream connections accepted (TLS ones counted at their TCP accept).
    pub connections_accepted: u64,
    /// Stream connections refused (over `max_connections`).
    pub connections_refused: u64,
    /// Service connections closed because they sent no valid line within
    /// `first_line_timeout`.
    pub idle_connections_closed: u64,
    /// Connections closed because their outbound queue was full.
    pub slow_consumers_disconnected: u64,
    /// Lines delivered to a service (one per destination).
    pub lines_routed: u64,
    /// Lines answered `INVALID` (unparseable, oversize, unregistered sender...).
    pub invalid_lines: u64,
    /// Lines addressed to another server (no cluster yet), dropped.
    pub dropped_other_server: u64,
    /// Messages put in the cache.
    pub cached: u64,
    /// Cached messages that expired undelivered.
    pub cache_expired: u64,
    /// Messages not cached because the cache was full.
    pub cache_refused: u64,
    /// UDP datagrams received.
    pub udp_received: u64,
    /// UDP datagrams dropped, all reasons (oversize, unsigned, unparseable, not routable).
    pub udp_dropped: u64,
    /// UDP datagrams dropped because they exceed `udp_max_datagram` (part of `udp_dropped`).
    pub udp_oversize: u64,
    /// UDP datagrams dropped because a secret is configured and their `secret_code` is
    /// missing or wrong (part of `udp_dropped`).
    pub udp_unsigned: u64,
    /// UDP datagrams dropped because they are not a cd: message (part of `udp_dropped`).
    pub udp_unparseable: u64,
    /// TLS handshakes completed on the secure listener.
    pub tls_handshakes: u64,
    /// TLS handshakes that failed or timed out (not TLS, refused or missing client
    /// certificate, client gave up...).
    pub tls_handshake_failures: u64,
    /// Copies of routed lines handed to `SNIFF` connections.
    pub sniff_copies: u64,
    /// Copies dropped because a sniffer's queue was full (it never slows routing).
    pub sniff_lost: u64,
    /// Lines sent to a peer daemon (unicast hops and broadcast copies).
    pub lines_forwarded: u64,
    /// Cluster broadcasts dropped as already seen or expired.
    pub broadcast_duplicates: u64,
    /// Plain peer `CONNECT`s refused: the address is not in `plain_peers`.
    pub peer_plain_refused: u64,
    /// Lines from a peer refused for their origin stamp: the local node, `communicatord`, or
    /// (comms peers) a node not reachable through that peer.
    pub forged_origins: u64,
    /// `NODE_STATE`s refused: about a node that is not the sender's (while that node has its
    /// own link or route), an old or absurd sequence, or an oversized announcement.
    pub node_states_refused: u64,
    /// `NODE_STATE`s dropped over a peer's announcement rate (repaired by re-announcements).
    pub node_states_throttled: u64,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads every level.
    pub fn levels(&self) -> Levels {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let g = &self.gauges;
        Levels {
            connections: std::array::from_fn(|i| r(&g.connections[i])),
            services: r(&g.services),
            cache_entries: r(&g.cache_entries),
            peer_links: r(&g.peer_links),
            nodes_reachable: r(&g.nodes_reachable),
            routes_computed_ms: r(&g.routes_computed_ms),
            queue_bytes: self.queue_bytes.load(Ordering::Relaxed) as u64,
        }
    }

    pub(crate) fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            connections_accepted: r(&self.connections_accepted),
            connections_refused: r(&self.connections_refused),
            idle_connections_closed: r(&self.idle_connections_closed),
            slow_consumers_disconnected: r(&self.slow_consumers_disconnected),
            lines_routed: r(&self.lines_routed),
            invalid_lines: r(&self.invalid_lines),
            dropped_other_server: r(&self.dropped_other_server),
            cached: r(&self.cached),
            cache_expired: r(&self.cache_expired),
            cache_refused: r(&self.cache_refused),
            udp_received: r(&self.udp_received),
            udp_dropped: r(&self.udp_dropped),
            udp_oversize: r(&self.udp_oversize),
            udp_unsigned: r(&self.udp_unsigned),
            udp_unparseable: r(&self.udp_unparseable),
            tls_handshakes: r(&self.tls_handshakes),
            tls_handshake_failures: r(&self.tls_handshake_failures),
            sniff_copies: r(&self.sniff_copies),
            sniff_lost: r(&self.sniff_lost),
            lines_forwarded: r(&self.lines_forwarded),
            broadcast_duplicates: r(&self.broadcast_duplicates),
            peer_plain_refused: r(&self.peer_plain_refused),
            forged_origins: r(&self.forged_origins),
            node_states_refused: r(&self.node_states_refused),
            node_states_throttled: r(&self.node_states_throttled),
        }
    }
}
