//! The router's cluster state: peer links that are up, the link-state routing table
//! (`routes.rs`) and the `NODE_STATE` flood; what it reports (the quorum, the cluster map) is
//! in `status.rs`.
//!
//! Own announcement: re-sent (sequence bumped) on every change of this node's links or
//! registered services, flooded to every comms peer; each daemon forwards an announcement
//! it did not have to its other comms peers, and sends its whole database to a new peer.
//! After any change the cache is re-examined: messages for a service that became reachable
//! are forwarded (docs/PROTOCOL.md §2.5 replays only on a local REGISTER).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use crate::cluster::routes::{NodeState, Routes};
use crate::cluster::{DialState, PeerNet};
use crate::event::ConnId;
use crate::router::Router;
use cd_wire::{serialize, WireMessage};

/// Most broadcast ids remembered for de-duplication.
pub(crate) const MAX_SEEN: usize = 65_536;
/// The comms extension parameter of `CONNECT`/`ACCEPT` saying "I speak `NODE_STATE`".
pub(crate) const LINK_STATE_PARAM: &str = "comms_link_state";

/// The handshake state of a peer connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkPhase {
    /// Opened; waiting for `CONNECT` (in) or `ACCEPT` (out).
    Handshake,
    /// Accepted: routes through it.
    Up,
}

/// A peer connection's side of [`crate::router::Conn`].
#[derive(Debug)]
pub(crate) struct PeerLink {
    pub phase: LinkPhase,
    /// The peer's `server_name`.
    pub name: Option<Arc<str>>,
    /// The peer's `my_address` (`ip:port`).
    pub address: String,
    /// The peer speaks `NODE_STATE` (a comms daemon).
    pub comms: bool,
    /// The neighbour address this connection was dialed to (outgoing links).
    pub dialed: Option<SocketAddr>,
    /// The peer said `DISCONNECT`/`SHUTDOWN` (its loss is not a hang-up).
    pub said_bye: bool,
}

#[derive(Debug)]
pub(crate) struct Cluster {
    /// `None`: no peer listener, a single node.
    pub(crate) net: Option<PeerNet>,
    pub(crate) my_address: String,
    pub(crate) max_links: usize,
    /// Up links by peer name.
    pub(crate) links: HashMap<Arc<str>, ConnId>,
    pub(crate) neighbors: BTreeSet<SocketAddr>,
    pub(crate) dialers: HashMap<SocketAddr, Arc<DialState>>,
    pub(crate) gossiping: HashSet<SocketAddr>,
    pub(crate) routes: Routes,
    pub(crate) seq: u64,
    pub(crate) bcast_seq: u64,
    /// Broadcast ids seen → expiry (unix s), with insertion order for the bound.
    pub(crate) seen: HashMap<String, u64>,
    /// Each id with the expiry it was recorded with: an id seen again after it expired is
    /// queued again, and its older entry, when it leaves, no longer forgets it.
    pub(crate) seen_order: VecDeque<(String, u64)>,
    /// Last (up, complete) told to local services.
    pub(crate) status: Option<(bool, bool)>,
    /// This daemon's start time (µs), the `epoch` of its announcements.
    pub(crate) epoch: u64,
    /// Pending route computation (`trust.rs`).
    pub(crate) recompute_at: Option<std::time::Instant>,
    pub(crate) last_recompute: std::time::Instant,
    /// Pause after the last computation: [`crate::cluster::trust::RECOMPUTE_GAP`], or five
    /// times what the computation took if longer (link-state work stays under ~1/6 of the
    /// router's time).
    pub(crate) recompute_gap: std::time::Duration,
    /// Next re-announcement and aging check.
    pub(crate) next_tick: std::time::Instant,
    /// Routed lines waiting for the routes to show their origin (`held.rs`).
    pub(crate) held: crate::cluster::Held,
    /// `NODE_STATE` budget of each peer link: (tokens, last refill).
    pub(crate) ns_budget: HashMap<ConnId, (f64, std::time::Instant)>,
    /// Where `neighbors.txt` and `cluster-status.txt` are kept (`persist.rs`); `None`: nowhere.
    pub(crate) state_dir: Option<std::path::PathBuf>,
}

impl Cluster {
    /// No cluster: no listener, no neighbours.
    pub(crate) fn single(node: &str) -> Self {
        Self::new(node, None, String::new(), 0, Vec::new())
    }

    pub(crate) fn new(
        node: &str,
        net: Option<PeerNet>,
        my_address: String,
        max_links: usize,
        neighbors: Vec<SocketAddr>,
    ) -> Self {
        // Start-time microseconds: a restarted daemon's announcements supersede its old ones.
        let epoch = crate::cluster::routes::now_us().max(1);
        let seq = 1;
        let own = NodeState {
            epoch,
            seq,
            address: my_address.clone(),
            ..NodeState::default()
        };
        Self {
            net,
            my_address,
            max_links,
            links: HashMap::new(),
            neighbors: neighbors.into_iter().collect(),
            dialers: HashMap::new(),
            gossiping: HashSet::new(),
            routes: Routes::new(node, own),
            seq,
            bcast_seq: 0,
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            status: None,
            epoch,
            recompute_at: None,
            last_recompute: std::time::Instant::now(),
            recompute_gap: crate::cluster::trust::RECOMPUTE_GAP,
            next_tick: std::time::Instant::now() + crate::cluster::trust::REANNOUNCE,
            held: crate::cluster::Held::default(),
            ns_budget: HashMap::new(),
            state_dir: None,
        }
    }

    /// Remembers broadcast id `id` until `expiry`; `false` if it was already seen.
    pub(crate) fn first_sight(&mut self, id: &str, expiry: u64, now: u64) -> bool {
        if self.seen.get(id).is_some_and(|&e| e >= now) {
            return false;
        }
        while self.seen_order.len() >= MAX_SEEN
            || self.seen_order.front().is_some_and(|(_, e)| *e < now)
        {
            let Some((f, e)) = self.seen_order.pop_front() else {
                break;
            };
            if self.seen.get(&f) == Some(&e) {
                self.seen.remove(&f);
            }
        }
        self.seen.insert(id.to_owned(), expiry);
        self.seen_order.push_back((id.to_owned(), expiry));
        true
    }
}

/// `NODE_STATE address=;epoch=;node=;peers=a,b;seq=;services=x,y` for `node`.
pub(crate) fn node_state_msg(node: &str, s: &NodeState) -> WireMessage {
    let join = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(",");
    WireMessage::new("NODE_STATE")
        .with_param("address", &s.address)
        .with_param("epoch", s.epoch.to_string())
        .with_param("node", node)
        .with_param("peers", join(&s.peers))
        .with_param("seq", s.seq.to_string())
        .with_param("services", join(&s.services))
}

fn line_of(msg: &WireMessage) -> Option<BytesMut> {
    let mut b = BytesMut::new();
    serialize(msg, &mut b).ok()?;
    b.put_u8(b'\n');
    Some(b)
}

impl Router {
    /// Starts the peer tasks for the configured neighbours (once, when the router starts).
    pub(crate) fn cluster_start(&mut self) {
        let neighbors: Vec<SocketAddr> = self.cluster.neighbors.iter().copied().collect();
        for n in neighbors {
            self.add_neighbor(n);
        }
        self.save_neighbors();
    }

    /// Adds a neighbour address: dial it (its address is smaller) or gossip to it.
    pub(crate) fn add_neighbor(&mut self, addr: SocketAddr) {
        let Some(net) = self.cluster.net.clone() else {
            return;
        };
        if addr == net.my_address {
            return;
        }
        if !self.plain_allowed(addr.ip()) {
            tracing::warn!(%addr, "neighbour not in plain_peers: not linked (no peer TLS)");
            return;
        }
        if self.cluster.neighbors.insert(addr) {
            self.save_neighbors();
        }
        if addr < net.my_address {
            if let std::collections::hash_map::Entry::Vacant(e) = self.cluster.dialers.entry(addr) {
                tracing::info!(%addr, "dialing neighbour");
                e.insert(net.spawn_dialer(addr));
            }
        } else if self.cluster.gossiping.insert(addr) {
            tracing::info!(%addr, "gossiping to neighbour");
            net.spawn_gossip(addr);
        }
    }

    /// Comms peers that are up, as (conn, name).
    pub(crate) fn comms_links(&self) -> Vec<ConnId> {
        self.cluster
            .links
            .values()
            .copied()
            .filter(|id| {
                self.conns
                    .get(id)
                    .and_then(|c| c.link.as_ref())
                    .is_some_and(|l| l.comms)
            })
            .collect()
    }

    /// This node's links or services changed: new announcement, flooded.
    pub(crate) fn own_changed(&mut self) {
        if self.cluster.net.is_none() {
            return;
        }
        let peers: BTreeSet<String> = self
            .cluster
            .links
            .iter()
            .filter(|(_, id)| {
                self.conns
                    .get(id)
                    .and_then(|c| c.link.as_ref())
                    .is_some_and(|l| l.comms)
            })
            .map(|(n, _)| n.to_string())
            .collect();
        let services: BTreeSet<String> = self.names.keys().map(|n| n.to_string()).collect();
        self.cluster.seq += 1;
        let state = NodeState {
            epoch: self.cluster.epoch,
            seq: self.cluster.seq,
            address: self.cluster.my_address.clone(),
            peers,
            services,
        };
        let msg = node_state_msg(&self.node, &state);
        self.cluster.routes.set_own(state);
        if let Some(line) = line_of(&msg) {
            if line.len() > self.cfg.max_line {
                tracing::error!(
                    len = line.len(),
                    max_line = self.cfg.max_line,
                    "NODE_STATE longer than max_line: peers will drop it (too many services \
                     on this node for the line limit; raise max_line on every daemon)"
                );
            }
            for id in self.comms_links() {
                self.push(id, &line);
            }
        }
        self.routes_changed();
    }

    /// Local services changed (REGISTER, UNREGISTER, loss).
    pub(crate) fn services_changed(&mut self) {
        let same = self.cluster.routes.own().services.len() == self.names.len()
            && self
                .names
                .keys()
                .all(|n| self.cluster.routes.own().services.contains(&**n));
        if !same {
            self.own_changed();
        }
    }

    /// Sends every known announcement to a new comms peer.
    pub(crate) fn send_database(&mut self, id: ConnId) {
        let mut out = BytesMut::new();
        for (node, s) in self.cluster.routes.all() {
            if let Some(l) = line_of(&node_state_msg(node, s)) {
                out.extend_from_slice(&l);
            }
        }
        self.push(id, &out);
    }

    /// After any routing change: replay cached messages that now have a route, route held
    /// lines whose origin is now reachable (`held.rs`), and tell local services when the
    /// cluster status changed.
    pub(crate) fn routes_changed(&mut self) {
        self.release_held();
        for svc in self.cache.services() {
            if self.names.contains_key(svc.as_str())
                || self.cluster.routes.nearest_with(&svc).is_some()
                || self.cache_has_named_route(&svc)
            {
                let entries = self.cache.take_for(&svc);
                for e in entries {
                    self.replay_entry(e);
                }
            }
        }
        let (up, complete, total) = self.cluster_status();
        if self.cluster.status != Some((up, complete)) {
            let before = self.cluster.status;
            self.cluster.status = Some((up, complete));
            if before.is_some() || self.cluster.net.is_some() {
                tracing::info!(up, complete, total, "cluster status");
                self.save_status(up, complete, total);
                let (a, b) = self.status_msgs(up, complete, total);
                self.broadcast_msg(&a, &a.command.clone());
                self.broadcast_msg(&b, &b.command.clone());
            }
        }
    }

    /// Whether some cached message for `svc` names a server that is now reachable.
    pub(crate) fn cache_has_named_route(&self, svc: &str) -> bool {
        self.cache.servers_for(svc).iter().any(|s| {
            self.cluster.routes.next_hop(s).is_some() || self.cluster.links.contains_key(s.as_str())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_ids_are_seen_once_until_they_expire() {
        let mut c = Cluster::single("a");
        assert!(c.first_sight("b-1", 110, 100));
        assert!(!c.first_sight("b-1", 110, 105), "seen, not expired");
        assert!(c.first_sight("b-2", 120, 105));
        // At 115, b-1 has expired: purged, and a late copy counts as new (the sender's
        // `broadcast_timeout` check drops such copies before they get here).
        assert!(c.first_sight("b-1", 125, 115));
        assert_eq!(c.seen.len(), 2);
    }

    #[test]
    fn an_id_seen_again_after_it_expired_is_not_forgotten_with_its_old_entry() {
        let mut c = Cluster::single("a");
        assert!(c.first_sight("early", 200, 100));
        assert!(c.first_sight("x", 110, 100));
        // At 150, x has expired but sits behind `early` (not yet purged): seen again.
        assert!(c.first_sight("x", 1_000, 150));
        // Fill the order until `early` and x's old entry leave by the bound (x's new one
        // stays: three entries, then MAX_SEEN - 1 more make two leave).
        for i in 0..MAX_SEEN - 1 {
            c.first_sight(&format!("f{i}"), 1_000, 150);
        }
        assert!(
            !c.first_sight("x", 1_000, 150),
            "x (renewed) still remembered"
        );
        assert!(c.seen_order.len() <= MAX_SEEN);
    }

    #[test]
    fn node_state_line_shape() {
        let s = NodeState {
            epoch: 5,
            seq: 7,
            address: "127.0.0.1:4042".into(),
            peers: ["b".to_owned(), "c".to_owned()].into_iter().collect(),
            services: ["x".to_owned()].into_iter().collect(),
        };
        assert_eq!(
            node_state_msg("a", &s).to_line().unwrap_or_default(),
            "NODE_STATE address=127.0.0.1:4042;epoch=5;node=a;peers=b,c;seq=7;services=x"
        );
    }
}
