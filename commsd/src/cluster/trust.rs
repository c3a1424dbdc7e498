//! What a peer may tell this daemon (docs/HARDENING.md "Peer trust"), and keeping link-state
//! work off the routing path. Further `impl Router`.
//!
//! - **`NODE_STATE`**: a node's announcement is taken from its own link only while it has
//!   one; otherwise from a peer through which the node is reachable (as of the last route
//!   computation), or for a node not reachable at all (it may arrive before the one that
//!   links it in). [`Routes::update`] then refuses absurd epochs and sequence numbers. Each
//!   daemon re-announces itself every [`REANNOUNCE`]; entries not re-announced within
//!   [`MAX_AGE`] are dropped, so whatever slipped through does not stay.
//! - **Origin stamps**: a routed line from a peer is refused (and counted in
//!   `forged_origins`) when its `<node:service ` names this node, or `communicatord` on a
//!   broadcast or from a stock peer, or (comms peers, which announce link state) a node not
//!   reachable through that peer. A daemon's own replies toward a remote origin
//!   (`SERVICE_UNAVAILABLE`, `TRANSMISSION_REPORT`, stamped `<node:communicatord `) remain
//!   possible from the node that wrote them.
//!   A line refused only because its origin is not reachable through the peer *yet* is
//!   held until the routes catch up (at most [`crate::cluster::held::HOLD`], `held.rs`):
//!   a relay forwards lines as soon as its link is up, and the announcement that links the
//!   origin in may arrive just after them.
//! - **Cost**: announcements are stored at once but routes recomputed at most every
//!   [`RECOMPUTE_GAP`] (or five times the last computation's duration if longer); each peer link may deliver [`NS_RATE`] announcements a second
//!   (burst [`NS_BURST`], enough for a whole database); beyond, they are dropped and counted
//!   (`node_states_throttled`): the periodic re-announcement repairs any loss.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use crate::cluster::routes::{NodeState, Verdict, MAX_NODES};
use crate::event::ConnId;
use crate::replies::DAEMON_SERVICE;
use crate::router::Router;
use crate::stats::Stats;
use cd_wire::{serialize, RouteHead, WireMessage};

/// Shortest pause between two route computations.
pub(crate) const RECOMPUTE_GAP: Duration = Duration::from_millis(50);
/// Period of this daemon's own re-announcement (and of the aging check).
pub(crate) const REANNOUNCE: Duration = Duration::from_secs(30);
/// Entries not re-announced for this long are dropped.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(100);
/// Announcements a second each peer link may deliver.
pub(crate) const NS_RATE: f64 = 200.0;
/// Burst of announcements a peer link may deliver (a whole database).
pub(crate) const NS_BURST: f64 = 2.0 * MAX_NODES as f64;

fn split_set(v: Option<&str>) -> BTreeSet<String> {
    v.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Router {
    /// The up link's peer name and whether it is a comms peer.
    fn link_of(&self, id: ConnId) -> Option<(Arc<str>, bool)> {
        let l = self.conns.get(&id)?.link.as_ref()?;
        Some((l.name.clone()?, l.comms))
    }

    /// Takes one token of link `id`'s announcement budget; `false`: over the rate.
    fn ns_budget(&mut self, id: ConnId, now: Instant) -> bool {
        let (tokens, last) = self.cluster.ns_budget.entry(id).or_insert((NS_BURST, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * NS_RATE;
        *tokens = (*tokens + refill).min(NS_BURST);
        *last = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    /// Link `id` closed: forget its budget.
    pub(crate) fn trust_forget(&mut self, id: ConnId) {
        self.cluster.ns_budget.remove(&id);
    }

    /// `NODE_STATE` from peer link `from` (see the module docs).
    pub(crate) fn on_node_state(&mut self, from: ConnId, msg: &WireMessage) {
        let Some((peer, _)) = self.link_of(from) else {
            return;
        };
        if !self.ns_budget(from, Instant::now()) {
            Stats::bump(&self.stats.node_states_throttled);
            return;
        }
        let num = |p: &str| msg.param(p).and_then(|s| s.parse::<u64>().ok());
        let (Some(node), Some(seq)) = (msg.param("node"), num("seq")) else {
            tracing::debug!(conn = from, "NODE_STATE without node/seq ignored");
            return;
        };
        let state = NodeState {
            epoch: num("epoch").unwrap_or(0),
            seq,
            address: msg.param("address").unwrap_or_default().to_owned(),
            peers: split_set(msg.param("peers")),
            services: split_set(msg.param("services")),
        };
        let direct = node == &*peer;
        if !direct {
            let known = self.cluster.routes.version(node);
            if known == Some((state.epoch, state.seq)) {
                return; // a copy of the flood
            }
            let why = if self.cluster.links.contains_key(node) {
                Some("the node has its own link here")
            } else if self.cluster.routes.next_hop(node).is_some()
                && !self.cluster.routes.reachable_via(&peer, node)
            {
                Some("the node is not reachable through this peer")
            } else {
                None
            };
            if let Some(why) = why {
                Stats::bump(&self.stats.node_states_refused);
                tracing::debug!(conn = from, %peer, node, why, "NODE_STATE refused");
                return;
            }
        }
        match self.cluster.routes.update(node, state, direct) {
            Verdict::Old => return,
            Verdict::Refused(why) => {
                Stats::bump(&self.stats.node_states_refused);
                tracing::debug!(conn = from, %peer, node, why, "NODE_STATE refused");
                return;
            }
            Verdict::New => {}
        }
        tracing::trace!(node, seq, "node state stored");
        let mut line = BytesMut::new();
        if serialize(msg, &mut line).is_ok() {
            line.put_u8(b'\n');
            for id in self.comms_links() {
                if id != from {
                    self.push(id, &line);
                }
            }
        }
        self.routes_dirty();
    }

    /// Announcements changed: recompute now if the last computation is old enough, else
    /// at the end of the pause.
    pub(crate) fn routes_dirty(&mut self) {
        let due = self.cluster.last_recompute + self.cluster.recompute_gap;
        if Instant::now() >= due {
            self.routes_flush();
        } else if self.cluster.recompute_at.is_none() {
            self.cluster.recompute_at = Some(due);
        }
    }

    /// Recomputes the routes if announcements changed, then the usual follow-up.
    pub(crate) fn routes_flush(&mut self) {
        self.cluster.recompute_at = None;
        let start = Instant::now();
        if self.cluster.routes.recompute_if_dirty() {
            let now = Instant::now();
            self.cluster.last_recompute = now;
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            crate::stats::Stats::set(&self.stats.gauges.routes_computed_ms, unix_ms);
            self.cluster.recompute_gap =
                RECOMPUTE_GAP.max(now.saturating_duration_since(start) * 5);
            self.routes_changed();
        }
    }

    /// The next cluster timer (pending recomputation, re-announcement), if a cluster.
    pub(crate) fn cluster_deadline(&self) -> Option<Instant> {
        self.cluster.net.as_ref()?;
        let next = match self.cluster.recompute_at {
            Some(r) => r.min(self.cluster.next_tick),
            None => self.cluster.next_tick,
        };
        Some(self.cluster.held.deadline().map_or(next, |h| h.min(next)))
    }

    /// The cluster timer fired: pending recomputation; re-announcement and aging when due.
    pub(crate) fn cluster_timer(&mut self, now: Instant) {
        if self.cluster.recompute_at.is_some_and(|r| r <= now) {
            self.routes_flush();
        }
        if self.cluster.held.deadline().is_some_and(|h| h <= now) {
            self.release_held();
        }
        if self.cluster.next_tick <= now {
            self.cluster.next_tick = now + REANNOUNCE;
            if self.cluster.routes.expire(now, MAX_AGE) {
                self.routes_flush();
            }
            self.own_changed();
        }
    }

    /// What is wrong with the origin stamp of routed line `head` from peer link `id` (module
    /// docs), if anything: the reason, and whether routes catching up may still clear it (an
    /// origin not reachable through the peer *yet*: see `held.rs`).
    pub(crate) fn origin_problem(
        &mut self,
        id: ConnId,
        head: &RouteHead<'_>,
    ) -> Option<(&'static str, bool)> {
        let (node, svc) = (head.sent_from_server, head.sent_from_service);
        let (peer, comms) = self.link_of(id)?;
        let broadcast = matches!(head.service, "*" | "." | "?");
        if node == &*self.node {
            Some(("origin names this node", false))
        } else if svc == DAEMON_SERVICE && (broadcast || !comms) {
            Some(("origin names communicatord", false))
        } else if comms
            && !node.is_empty()
            && node != &*peer
            && !self.reachable_through(&peer, node)
        {
            Some(("origin not reachable through this peer", true))
        } else {
            None
        }
    }

    /// Refuses routed line `head` from peer link `id` for its origin stamp: counted in
    /// `forged_origins`, logged at debug.
    pub(crate) fn refuse_origin(&mut self, id: ConnId, head: &RouteHead<'_>, why: &str) {
        Stats::bump(&self.stats.forged_origins);
        let peer = self.link_of(id).map(|(p, _)| p);
        tracing::debug!(
            conn = id,
            peer = peer.as_deref(),
            origin = head.sent_from_server,
            service = head.sent_from_service,
            why,
            "peer line refused"
        );
    }

    /// `node` reachable through direct peer `peer`, recomputing a stale table first when
    /// the pause allows it.
    fn reachable_through(&mut self, peer: &str, node: &str) -> bool {
        if self.cluster.routes.reachable_via(peer, node) {
            return true;
        }
        if self.cluster.routes.is_dirty()
            && Instant::now() >= self.cluster.last_recompute + self.cluster.recompute_gap
        {
            self.routes_flush();
            return self.cluster.routes.reachable_via(peer, node);
        }
        false
    }
}
