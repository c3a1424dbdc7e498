//! The router's cluster state: peer links that are up, the link-state routing table
//! (`daemon/routes.rs`), the `NODE_STATE` flood, the quorum (`CLUSTER_STATUS`) and the
//! cluster map (`CLUSTER_MAP`, a comms extension).
//!
//! Own announcement: re-sent (sequence bumped) on every change of this node's links or
//! registered services, flooded to every comms peer; each daemon forwards an announcement
//! it did not have to its other comms peers, and sends its whole database to a new peer.
//! After any change the cache is re-examined: messages for a service that became reachable
//! are forwarded (cd-wire.md §2.5 replays only on a local REGISTER).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::Router;
use crate::codec::{serialize, WireMessage};
use crate::daemon::event::ConnId;
use crate::daemon::peer::{DialState, PeerNet};
use crate::daemon::replies;
use crate::daemon::routes::{NodeState, Routes};

/// Most broadcast ids remembered for de-duplication.
const MAX_SEEN: usize = 65_536;
/// The comms extension parameter of `CONNECT`/`ACCEPT` saying "I speak `NODE_STATE`".
pub(super) const LINK_STATE_PARAM: &str = "comms_link_state";

/// The handshake state of a peer connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LinkPhase {
    /// Opened; waiting for `CONNECT` (in) or `ACCEPT` (out).
    Handshake,
    /// Accepted: routes through it.
    Up,
}

/// A peer connection's side of [`super::Conn`].
#[derive(Debug)]
pub(super) struct PeerLink {
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

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// `None`: no peer listener, a single node.
    pub(super) net: Option<PeerNet>,
    pub(super) my_address: String,
    pub(super) max_links: usize,
    /// Up links by peer name.
    pub(super) links: HashMap<Arc<str>, ConnId>,
    pub(super) neighbors: BTreeSet<SocketAddr>,
    pub(super) dialers: HashMap<SocketAddr, Arc<DialState>>,
    pub(super) gossiping: HashSet<SocketAddr>,
    pub(super) routes: Routes,
    seq: u64,
    pub(super) bcast_seq: u64,
    /// Broadcast ids seen → expiry (unix s), with insertion order for the bound.
    seen: HashMap<String, u64>,
    seen_order: VecDeque<String>,
    /// Last (up, complete) told to local services.
    pub(super) status: Option<(bool, bool)>,
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
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        let own = NodeState {
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
        }
    }

    /// Remembers broadcast id `id` until `expiry`; `false` if it was already seen.
    pub(super) fn first_sight(&mut self, id: &str, expiry: u64, now: u64) -> bool {
        if self.seen.get(id).is_some_and(|&e| e >= now) {
            return false;
        }
        while self.seen_order.len() >= MAX_SEEN
            || self
                .seen_order
                .front()
                .and_then(|f| self.seen.get(f))
                .is_some_and(|&e| e < now)
        {
            let Some(f) = self.seen_order.pop_front() else {
                break;
            };
            self.seen.remove(&f);
        }
        self.seen.insert(id.to_owned(), expiry);
        self.seen_order.push_back(id.to_owned());
        true
    }
}

/// `NODE_STATE address=;node=;peers=a,b;seq=;services=x,y` for `node`.
pub(super) fn node_state_msg(node: &str, s: &NodeState) -> WireMessage {
    let join = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(",");
    WireMessage::new("NODE_STATE")
        .with_param("address", &s.address)
        .with_param("node", node)
        .with_param("peers", join(&s.peers))
        .with_param("seq", s.seq.to_string())
        .with_param("services", join(&s.services))
}

fn split_set(v: Option<&str>) -> BTreeSet<String> {
    v.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn line_of(msg: &WireMessage) -> Option<BytesMut> {
    let mut b = BytesMut::new();
    serialize(msg, &mut b).ok()?;
    b.put_u8(b'\n');
    Some(b)
}

impl Router {
    /// Starts the peer tasks for the configured neighbours (once, when the router starts).
    pub(super) fn cluster_start(&mut self) {
        let neighbors: Vec<SocketAddr> = self.cluster.neighbors.iter().copied().collect();
        for n in neighbors {
            self.add_neighbor(n);
        }
    }

    /// Adds a neighbour address: dial it (its address is smaller) or gossip to it.
    pub(super) fn add_neighbor(&mut self, addr: SocketAddr) {
        let Some(net) = self.cluster.net.clone() else {
            return;
        };
        if addr == net.my_address {
            return;
        }
        self.cluster.neighbors.insert(addr);
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
    fn comms_links(&self) -> Vec<ConnId> {
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
    pub(super) fn own_changed(&mut self) {
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
    pub(super) fn services_changed(&mut self) {
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
    pub(super) fn send_database(&mut self, id: ConnId) {
        let mut out = BytesMut::new();
        for (node, s) in self.cluster.routes.all() {
            if let Some(l) = line_of(&node_state_msg(node, s)) {
                out.extend_from_slice(&l);
            }
        }
        self.push(id, &out);
    }

    /// `NODE_STATE` from peer link `from`.
    pub(super) fn on_node_state(&mut self, from: ConnId, msg: &WireMessage) {
        let (Some(node), Some(seq)) = (
            msg.param("node"),
            msg.param("seq").and_then(|s| s.parse::<u64>().ok()),
        ) else {
            tracing::debug!(conn = from, "NODE_STATE without node/seq ignored");
            return;
        };
        let state = NodeState {
            seq,
            address: msg.param("address").unwrap_or_default().to_owned(),
            peers: split_set(msg.param("peers")),
            services: split_set(msg.param("services")),
        };
        if !self.cluster.routes.update(node, state) {
            return;
        }
        tracing::debug!(node, seq, "node state updated");
        if let Some(line) = line_of(msg) {
            for id in self.comms_links() {
                if id != from {
                    self.push(id, &line);
                }
            }
        }
        self.routes_changed();
    }

    /// After any routing change: replay cached messages that now have a route, and tell
    /// local services when the cluster status changed.
    pub(super) fn routes_changed(&mut self) {
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
                let (a, b) = self.status_msgs(up, complete, total);
                self.broadcast_msg(&a, &a.command.clone());
                self.broadcast_msg(&b, &b.command.clone());
            }
        }
    }

    /// Whether some cached message for `svc` names a server that is now reachable.
    fn cache_has_named_route(&self, svc: &str) -> bool {
        self.cache.servers_for(svc).iter().any(|s| {
            self.cluster.routes.next_hop(s).is_some() || self.cluster.links.contains_key(s.as_str())
        })
    }

    /// (up, complete, total): quorum = ⌊total/2⌋+1 of the nodes known (cd-wire.md §2.4),
    /// counting the nodes **reachable** (comms routes through intermediates, where the
    /// stock daemon needs a direct link to each).
    pub(super) fn cluster_status(&self) -> (bool, bool, usize) {
        let stock_links = self
            .cluster
            .links
            .len()
            .saturating_sub(self.comms_links().len());
        let count = self.cluster.routes.reachable() + stock_links;
        let total = self
            .cluster
            .routes
            .known()
            .max(self.cluster.neighbors.len() + 1)
            .max(count)
            .max(1);
        (count > total / 2, count >= total, total)
    }

    fn status_msgs(&self, up: bool, complete: bool, total: usize) -> (WireMessage, WireMessage) {
        let a = replies::notification(&self.node, if up { "CLUSTER_UP" } else { "CLUSTER_DOWN" })
            .with_param("neighbors_count", total.to_string());
        let b = replies::notification(
            &self.node,
            if complete {
                "CLUSTER_COMPLETE"
            } else {
                "CLUSTER_INCOMPLETE"
            },
        )
        .with_param("neighbors_count", total.to_string());
        (a, b)
    }

    /// `CLUSTER_STATUS`: both answers to the requester, whatever it declared.
    pub(super) fn cluster_status_request(&mut self, id: ConnId) {
        let (up, complete, total) = self.cluster_status();
        let (a, b) = self.status_msgs(up, complete, total);
        self.send(id, &a);
        self.send(id, &b);
    }

    /// `STATUS` for a service not live here but hosted on a reachable node (the nearest):
    /// `STATUS cache=no;server_name=<node>;service=<svc>;status=up` (no `up_since`: only the
    /// hosting daemon knows it).
    pub(super) fn remote_status(&self, svc: &str) -> Option<WireMessage> {
        let node = self.cluster.routes.nearest_with(svc)?;
        Some(
            replies::notification(&self.node, "STATUS")
                .with_param("cache", "no")
                .with_param("server_name", node)
                .with_param("service", svc)
                .with_param("status", "up"),
        )
    }

    /// `CLUSTER_MAP` (comms extension): the reachable nodes, their links and services.
    pub(super) fn cluster_map_request(&mut self, id: ConnId, to: Option<&str>) {
        let routes = &self.cluster.routes;
        let mut nodes: Vec<String> = Vec::new();
        let mut services: Vec<String> = Vec::new();
        let mut addresses: Vec<String> = Vec::new();
        for (n, s) in routes.reachable_nodes() {
            nodes.push(n.to_owned());
            if !s.address.is_empty() {
                addresses.push(format!("{n}={}", s.address));
            }
            for svc in &s.services {
                services.push(format!("{n}:{svc}"));
            }
        }
        let mut links: Vec<String> = routes
            .edges()
            .into_iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect();
        for (name, cid) in &self.cluster.links {
            let comms = self
                .conns
                .get(cid)
                .and_then(|c| c.link.as_ref())
                .is_some_and(|l| l.comms);
            if !comms {
                nodes.push(name.to_string());
                let (a, b) = if **name < *self.node {
                    (name.to_string(), self.node.to_string())
                } else {
                    (self.node.to_string(), name.to_string())
                };
                links.push(format!("{a}-{b}"));
            }
        }
        nodes.sort();
        links.sort();
        let m = replies::reply(&self.node, to, "CLUSTER_MAP")
            .with_param("addresses", addresses.join(","))
            .with_param("links", links.join(","))
            .with_param("nodes", nodes.join(","))
            .with_param("server_name", &*self.node)
            .with_param("services", services.join(","));
        self.send(id, &m);
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
    fn node_state_line_shape() {
        let s = NodeState {
            seq: 7,
            address: "127.0.0.1:4042".into(),
            peers: ["b".to_owned(), "c".to_owned()].into_iter().collect(),
            services: ["x".to_owned()].into_iter().collect(),
        };
        assert_eq!(
            node_state_msg("a", &s).to_line().unwrap_or_default(),
            "NODE_STATE address=127.0.0.1:4042;node=a;peers=b,c;seq=7;services=x"
        );
    }
}
