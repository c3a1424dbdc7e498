//! Peer links as the router sees them: a link opened and closed, how a peer's lines are
//! dispatched (`DISCONNECT` / `GOSSIP` / `RECEIVED` / `HELP` / `COMMANDS`...); the stock
//! handshake itself (`CONNECT` / `ACCEPT` / `REFUSE`, docs/PROTOCOL.md §2.6) is in
//! `handshake.rs`.
//!
//! Parameter sets are the stock ones; comms adds `comms_link_state=1` to `CONNECT` and
//! `ACCEPT` (a stock daemon ignores unknown parameters). Only peers that sent it get
//! `NODE_STATE` announcements; a stock peer is routed to by its name only.

use std::net::SocketAddr;

use super::state::{LinkPhase, PeerLink};
use super::stock::list_param;
use crate::event::{ConnId, ConnKind};
use crate::replies::{self, LOG_ONLY};
use crate::router::Router;
use crate::stats::Stats;
use cd_wire::{parse, peek_route, RouteHead, WireMessage};

/// Commands a peer may send this daemon (the answer to a peer's `HELP`), sorted.
pub(crate) const PEER_COMMANDS: &[&str] = &[
    "ACCEPT",
    "ALIVE",
    "COMMANDS",
    "CONNECT",
    "DISCONNECT",
    "GOSSIP",
    "HELP",
    "LOADAVG",
    "NODE_STATE",
    "REGISTER_FOR_LOADAVG",
    "REFUSE",
    "SHUTDOWN",
    "UNKNOWN",
    "UNREGISTER_FROM_LOADAVG",
];

impl Router {
    /// A peer connection opened: an outgoing one introduces itself with `CONNECT`.
    pub(crate) fn peer_opened(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let dialed = (c.kind == ConnKind::PeerOut)
            .then(|| c.peer.parse::<SocketAddr>().ok())
            .flatten();
        c.link = Some(PeerLink {
            phase: LinkPhase::Handshake,
            name: None,
            address: String::new(),
            comms: false,
            dialed,
            said_bye: false,
        });
        if c.kind == ConnKind::PeerOut {
            let m = self.hello("CONNECT").with_param("version", "1");
            self.send(id, &m);
        }
    }

    /// One read chunk from a peer connection.
    pub(crate) fn on_peer_input(&mut self, id: ConnId, data: &[u8]) {
        for line in data.split(|&b| b == b'\n') {
            if !self.conns.contains_key(&id) {
                return;
            }
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            if line.len() > self.cfg.max_line {
                Stats::bump(&self.stats.invalid_lines);
                if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Peer) {
                    tracing::warn!(
                        conn = id,
                        len = line.len(),
                        suppressed,
                        "peer line too long, dropped"
                    );
                }
                continue;
            }
            let head = match peek_route(line) {
                Ok(h) => h,
                Err(e) => {
                    Stats::bump(&self.stats.invalid_lines);
                    if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Peer) {
                        tracing::warn!(conn = id, error = %e, suppressed, "unparseable peer line dropped");
                    }
                    continue;
                }
            };
            if self.is_for_daemon(&head) {
                match parse(line) {
                    Ok(msg) => self.peer_command(id, msg),
                    Err(e) => {
                        if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Peer)
                        {
                            tracing::warn!(conn = id, error = %e, suppressed, "unparseable peer command dropped");
                        }
                    }
                }
                continue;
            }
            if self.stopping {
                continue;
            }
            let up = self
                .conns
                .get(&id)
                .and_then(|c| c.link.as_ref())
                .is_some_and(|l| l.phase == LinkPhase::Up);
            if !up {
                if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Peer) {
                    tracing::warn!(
                        conn = id,
                        suppressed,
                        "routed line before the handshake, dropped"
                    );
                }
                continue;
            }
            if self.cluster.held.has_from(id) {
                // Behind a held line of the same link: per-link order.
                self.hold(id, &head, line);
                continue;
            }
            match self.origin_problem(id, &head) {
                None => self.routed_from_peer(id, &head, line),
                Some((_, true)) => self.hold(id, &head, line),
                Some((why, false)) => self.refuse_origin(id, &head, why),
            }
        }
    }

    /// A routed line from peer link `id` whose origin passed the checks.
    pub(crate) fn routed_from_peer(&mut self, id: ConnId, head: &RouteHead<'_>, line: &[u8]) {
        match head.service {
            "." | "*" | "?" => self.broadcast_from_peer(id, line),
            _ => self.unicast_from_peer(id, head, line),
        }
    }

    /// A daemon command from a peer.
    pub(crate) fn peer_command(&mut self, id: ConnId, msg: WireMessage) {
        match msg.command.as_str() {
            "CONNECT" => self.peer_connect(id, &msg),
            "ACCEPT" => self.peer_accept(id, &msg),
            "REFUSE" => self.peer_refused(id, &msg),
            "DISCONNECT" | "SHUTDOWN" => {
                if let Some(l) = self.conns.get_mut(&id).and_then(|c| c.link.as_mut()) {
                    l.said_bye = true;
                }
                self.close(id, "peer disconnected");
            }
            "FORGET" => {
                // Stock: a FORGET that already travelled (`broadcast_hops`) is not re-broadcast.
                let propagate = msg.param("broadcast_hops").is_none();
                if let Some(ip) = msg.param("ip") {
                    self.forget_neighbor(ip, propagate);
                }
            }
            "GOSSIP" => {
                self.send(id, &WireMessage::new("RECEIVED"));
                match msg.param("my_address").map(str::parse::<SocketAddr>) {
                    Some(Ok(addr)) => self.learn_neighbor(addr),
                    _ => {
                        if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Peer)
                        {
                            tracing::warn!(
                                conn = id,
                                suppressed,
                                "GOSSIP without a valid my_address"
                            );
                        }
                    }
                }
            }
            "HELP" => {
                let m = WireMessage::new("COMMANDS").with_param("list", PEER_COMMANDS.join(","));
                self.send(id, &m);
            }
            "COMMANDS" => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.commands = list_param(&msg, "list").into_iter().collect();
                }
            }
            "NODE_STATE" => {
                if self.is_up(id) {
                    self.on_node_state(id, &msg);
                }
            }
            "ALIVE" => {
                let mut m = WireMessage::new("ABSOLUTELY")
                    .with_param("reply_timestamp", replies::timespec_now());
                for p in ["serial", "timestamp"] {
                    if let Some(v) = msg.param(p) {
                        m.set_param(p, v);
                    }
                }
                self.send(id, &m);
            }
            "RECEIVED" => {}
            // REGISTER_FOR_LOADAVG & co. (a stock peer sends it once linked).
            _ if self.plugin_command(id, &msg) => {}
            c if LOG_ONLY.contains(&c) => {
                tracing::debug!(conn = id, command = c, params = ?msg.params, "from peer");
            }
            c => {
                tracing::debug!(conn = id, command = c, "unknown peer command");
                let m = WireMessage::new("UNKNOWN").with_param("command", c);
                self.send(id, &m);
            }
        }
    }

    pub(crate) fn is_up(&self, id: ConnId) -> bool {
        self.conns
            .get(&id)
            .and_then(|c| c.link.as_ref())
            .is_some_and(|l| l.phase == LinkPhase::Up)
    }

    /// A neighbour learned from `GOSSIP` (dialed or gossiped to), within the rules of
    /// `neighbor_refusal` (stock.rs).
    pub(crate) fn learn_neighbor(&mut self, addr: SocketAddr) {
        if let Some(why) = self.neighbor_refusal(addr) {
            if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Peer) {
                tracing::warn!(%addr, why, suppressed, "gossiped neighbour ignored");
            }
            return;
        }
        self.add_neighbor(addr);
    }

    /// Whether a plain link with `ip` is allowed (`plain_peers`; always with TLS or
    /// `insecure_peers`).
    pub(crate) fn plain_allowed(&self, ip: std::net::IpAddr) -> bool {
        self.cfg
            .plain_peers
            .as_ref()
            .is_none_or(|l| l.contains(&ip))
    }

    /// A neighbour's `my_address` from `CONNECT` (it dials us: only remembered), within the
    /// same rules as `GOSSIP`.
    pub(crate) fn remember_neighbor(&mut self, address: &str) {
        let Ok(addr) = address.parse::<SocketAddr>() else {
            return;
        };
        if let Some(why) = self.neighbor_refusal(addr) {
            tracing::debug!(%addr, why, "CONNECT my_address not kept as a neighbour");
            return;
        }
        if self.cluster.neighbors.insert(addr) {
            self.save_neighbors();
        }
    }

    /// A peer connection closed (called by `close`).
    pub(crate) fn link_closed(&mut self, id: ConnId, link: PeerLink) {
        self.trust_forget(id);
        if link.phase != LinkPhase::Up {
            return;
        }
        let Some(name) = link.name else { return };
        if self.cluster.links.get(&name) == Some(&id) {
            self.cluster.links.remove(&name);
        }
        let what = if link.said_bye {
            "DISCONNECTED"
        } else {
            "HANGUP"
        };
        tracing::info!(conn = id, peer = %name, what, "peer link down");
        let m = replies::notification(&self.node, what).with_param("server_name", &*name);
        self.broadcast_msg(&m, what);
        self.own_changed();
        // The peer dialed us (its address is larger): gossip again so that it finds us
        // when it comes back (a restarted daemon may not list us as a neighbour).
        if let Ok(addr) = link.address.parse::<SocketAddr>() {
            if !self.stopping && self.cluster.neighbors.contains(&addr) {
                self.cluster.gossiping.remove(&addr);
                self.add_neighbor(addr);
            }
        }
    }

    /// On stop: `DISCONNECT` to every peer.
    pub(crate) fn peers_stop(&mut self) {
        let ids: Vec<ConnId> = self.cluster.links.values().copied().collect();
        for id in ids {
            self.send(id, &WireMessage::new("DISCONNECT"));
        }
    }
}
