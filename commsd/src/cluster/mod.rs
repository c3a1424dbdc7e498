//! The cluster: daemon-to-daemon peer links (docs/NATIVE.md "Cluster", docs/PROTOCOL.md §2.6), all
//! in this folder.
//!
//! - `net.rs`: the socket side: the peer listener's connections, the permanent outgoing links
//!   ("dialers") and the short-lived `GOSSIP` links ([`PeerNet`]);
//! - `address.rs`: which peer addresses are allowed (private IPv4, loopback on request) and
//!   binding `remote_listen`;
//! - `peers.rs`: the peer handshake (`CONNECT` / `ACCEPT` / `REFUSE`) and the lines a peer
//!   link carries, handled by the router;
//! - `state.rs`: the router's cluster state ([`Cluster`]): links that are up, the
//!   `NODE_STATE` flood, quorum (`CLUSTER_STATUS`) and the cluster map (`CLUSTER_MAP`);
//! - `persist.rs`: `neighbors.txt` and `cluster-status.txt` in the optional state directory;
//! - `stock.rs`: living with stock C++ peers: informed lists in both forms, service-only
//!   unicasts flooded to stock peers, the bounded neighbour set, `FORGET`;
//! - `routes.rs`: the pure link-state routing table (shortest paths; no I/O);
//! - `trust.rs`: what a peer may announce or stamp, and the bounded cost of link state;
//! - `held.rs`: routed lines held (bounded, briefly) until the routes show their origin
//!   reachable through the peer that sent them;
//! - `relay.rs`: relaying service lines across peer links (next hop, loop guard) —
//!   named so, not "forward", to keep apart from `Transport::forward` of the client side.
//!
//! `peers.rs`, `state.rs`, `trust.rs`, `held.rs` and `relay.rs` are further `impl Router` blocks: the router stays
//! the single owner of every piece of routing state, cluster state included.

pub(crate) mod address;
mod handshake;
mod held;
mod net;
mod peers;
pub(crate) mod persist;
mod relay;
pub(crate) mod routes;
mod state;
mod status;
mod stock;
mod trust;

pub(crate) use held::Held;
pub(crate) use net::{DialState, PeerNet, PENDING_EXTRA};
pub(crate) use state::{Cluster, PeerLink};
pub use status::ClusterMap;
#[cfg(feature = "fuzzing")]
pub(crate) use {
    state::{LinkPhase, MAX_SEEN},
    stock::MAX_LEARNED_NEIGHBORS,
};
