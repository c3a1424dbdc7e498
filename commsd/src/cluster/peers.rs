//! Peer links as the router sees them: the stock handshake (docs/PROTOCOL.md §2.6) —
//! `CONNECT` / `ACCEPT` / `REFUSE` / `DISCONNECT` / `GOSSIP` / `RECEIVED` / `HELP` /
//! `COMMANDS` — link up and down, and how a peer's lines are dispatched.
//!
//! Parameter sets are the stock ones; comms adds `comms_link_state=1` to `CONNECT` and
//! `ACCEPT` (a stock daemon ignores unknown parameters). Only peers that sent it get
//! `NODE_STATE` announcements; a stock peer is routed to by its name only.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::state::{LinkPhase, PeerLink, LINK_STATE_PARAM};
use crate::event::{ConnId, ConnKind};
use crate::replies::{self, LOG_ONLY};
use crate::router::Router;
use crate::stats::Stats;
use cd_wire::{is_valid_name, parse, peek_route, RouteHead, WireMessage};

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

/// Pause before redialing a peer that refused because it was busy (stock: 24 h).
const BUSY_PAUSE: Duration = Duration::from_secs(300);

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

    /// `CONNECT`/`ACCEPT` body: `my_address`, `server_name`, `services`, `neighbors`, and the
    /// comms extension flag. `ACCEPT` is stamped `<NODE:communicatord ` as the stock daemon
    /// sends it (before the line is fitted to `max_line`, so the stamp counts).
    pub(crate) fn hello(&self, command: &str) -> WireMessage {
        let mut services: Vec<&str> = self.names.keys().map(|n| &**n).collect();
        services.sort_unstable();
        let neighbors: Vec<String> = self
            .cluster
            .neighbors
            .iter()
            .map(|a| a.to_string())
            .collect();
        let mut m = WireMessage::new(command)
            .with_param("my_address", &self.cluster.my_address)
            .with_param("server_name", &*self.node)
            .with_param(LINK_STATE_PARAM, "1");
        if command == "ACCEPT" {
            m = m.with_sent_from(&*self.node, replies::DAEMON_SERVICE);
        }
        if !services.is_empty() {
            m.set_param("services", services.join(","));
        }
        if !neighbors.is_empty() {
            m.set_param("neighbors", neighbors.join(","));
        }
        self.fit_hello(&mut m);
        m
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
                    c.commands = msg
                        .param("list")
                        .unwrap_or_default()
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
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
    fn remember_neighbor(&mut self, address: &str) {
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

    /// Closes a peer connection after a refusal or protocol error.
    pub(crate) fn refuse_peer(&mut self, id: ConnId, m: WireMessage, why: &str) {
        if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Peer) {
            tracing::info!(conn = id, why, suppressed, "peer refused");
        }
        self.send(id, &m);
        self.close(id, why);
    }

    pub(crate) fn peer_connect(&mut self, id: ConnId, msg: &WireMessage) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        if c.kind != ConnKind::PeerIn || c.link.as_ref().is_some_and(|l| l.phase == LinkPhase::Up) {
            if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Peer) {
                tracing::warn!(conn = id, suppressed, "unexpected CONNECT ignored");
            }
            return;
        }
        let name = msg.param("server_name").unwrap_or_default();
        let ip = c.peer.parse::<SocketAddr>().ok().map(|a| a.ip());
        if !ip.is_some_and(|ip| self.plain_allowed(ip)) {
            Stats::bump(&self.stats.peer_plain_refused);
            let m = WireMessage::new("REFUSE");
            return self.refuse_peer(id, m, "plain link from an address not in plain_peers");
        }
        if msg.param("version") != Some("1") {
            let m = replies::invalid(&self.node, None, Some("CONNECT"), "version=1 required");
            return self.refuse_peer(id, m, "bad version");
        }
        if self.stopping {
            let m = WireMessage::new("REFUSE").with_param("shutdown", "true");
            return self.refuse_peer(id, m, "shutting down");
        }
        if !is_valid_name(name) || name == &*self.node || self.cluster.links.contains_key(name) {
            let m = WireMessage::new("REFUSE").with_param("conflict", "name");
            return self.refuse_peer(id, m, "name conflict");
        }
        if self.cluster.links.len() >= self.cluster.max_links {
            return self.refuse_peer(id, WireMessage::new("REFUSE"), "too many peer links");
        }
        let address = msg.param("my_address").unwrap_or_default().to_owned();
        let comms = msg.param(LINK_STATE_PARAM) == Some("1");
        if let Some(l) = self.conns.get_mut(&id).and_then(|c| c.link.as_mut()) {
            l.name = Some(Arc::from(name));
            l.address = address.clone();
            l.comms = comms;
        }
        let accept = self.hello("ACCEPT");
        self.send(id, &accept);
        self.send(id, &replies::notification(&self.node, "HELP"));
        self.remember_neighbor(&address);
        self.link_up(id);
    }

    pub(crate) fn peer_accept(&mut self, id: ConnId, msg: &WireMessage) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        if c.kind != ConnKind::PeerOut || c.link.as_ref().is_some_and(|l| l.phase == LinkPhase::Up)
        {
            if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Peer) {
                tracing::warn!(conn = id, suppressed, "unexpected ACCEPT ignored");
            }
            return;
        }
        let name = msg.param("server_name").unwrap_or_default();
        if !is_valid_name(name) || name == &*self.node || self.cluster.links.contains_key(name) {
            let m = WireMessage::new("DISCONNECT");
            return self.refuse_peer(id, m, "accepted under a conflicting name");
        }
        let comms = msg.param(LINK_STATE_PARAM) == Some("1");
        let address = msg.param("my_address").unwrap_or_default().to_owned();
        let mut dialed = None;
        if let Some(l) = self.conns.get_mut(&id).and_then(|c| c.link.as_mut()) {
            l.name = Some(Arc::from(name));
            l.address = address;
            l.comms = comms;
            dialed = l.dialed;
        }
        if let Some(st) = dialed.and_then(|a| self.cluster.dialers.get(&a)) {
            st.accepted.store(true, Ordering::Relaxed);
        }
        self.send(id, &replies::notification(&self.node, "HELP"));
        self.link_up(id);
    }

    pub(crate) fn peer_refused(&mut self, id: ConnId, msg: &WireMessage) {
        let dialed = self
            .conns
            .get(&id)
            .and_then(|c| c.link.as_ref())
            .and_then(|l| l.dialed);
        let pause = if msg.param("shutdown").is_some() {
            self.cfg.peer_retry_max
        } else if msg.param("conflict").is_some() {
            Duration::ZERO
        } else {
            BUSY_PAUSE
        };
        tracing::info!(conn = id, ?dialed, params = ?msg.params, ?pause, "peer refused our CONNECT");
        if let Some(st) = dialed.and_then(|a| self.cluster.dialers.get(&a)) {
            st.refused_pause_ms
                .store(pause.as_millis() as u64, Ordering::Relaxed);
        }
        self.close(id, "refused");
    }

    /// The handshake succeeded: the link routes from now on.
    pub(crate) fn link_up(&mut self, id: ConnId) {
        let Some(l) = self.conns.get_mut(&id).and_then(|c| c.link.as_mut()) else {
            return;
        };
        l.phase = LinkPhase::Up;
        let (Some(name), comms) = (l.name.clone(), l.comms) else {
            return;
        };
        tracing::info!(conn = id, peer = %name, comms, "peer link up");
        self.cluster.links.insert(name.clone(), id);
        let m = replies::notification(&self.node, "NEW_REMOTE_CONNECTION")
            .with_param("server_name", &*name);
        self.broadcast_msg(&m, "NEW_REMOTE_CONNECTION");
        if comms {
            self.send_database(id);
        }
        self.own_changed();
        if !comms {
            self.routes_changed();
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
