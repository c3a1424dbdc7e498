//! The stock peer handshake (docs/PROTOCOL.md §2.6): the `CONNECT` / `ACCEPT` body, the
//! checks that refuse a peer (plain link from an address not allowed, version, shutdown, name
//! conflict, too many links), a `REFUSE` received and the pause it sets on the dialer, and the
//! link going up.
//!
//! Parameter sets are the stock ones; comms adds `comms_link_state=1` to `CONNECT` and
//! `ACCEPT` (a stock daemon ignores unknown parameters).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::state::{LinkPhase, LINK_STATE_PARAM};
use crate::event::{ConnId, ConnKind};
use crate::replies;
use crate::router::Router;
use crate::stats::Stats;
use cd_wire::{is_valid_name, WireMessage};

/// Pause before redialing a peer that refused because it was busy (stock: 24 h).
const BUSY_PAUSE: Duration = Duration::from_secs(300);

impl Router {
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
}
