//! Living with stock C++ daemons on peer links (docs/NATIVE.md "Stock peers"):
//!
//! - **Informed lists.** `broadcast_informed_neighbors` carries every informed daemon twice:
//!   its bare IP (what the stock daemon writes and compares, so it does not echo the
//!   broadcast back) and its `ip:port` (what tells apart comms daemons sharing one IP).
//!   [`informed_has`] reads both forms.
//! - **Service-only unicasts** (`svc/CMD`, `*:svc/CMD`, `?:svc/CMD`) for a service with no
//!   local instance and no route known from link state are flooded to the **stock** peers
//!   with the loop fields, as a stock daemon forwards them (a stock peer announces no
//!   services, so commsd cannot know whether it hosts one). See [`Router::flood_to_stock`].
//! - **A bounded neighbour set** ([`MAX_LEARNED_NEIGHBORS`]) with the same address rules for
//!   every way a neighbour is learned (`GOSSIP`, `CONNECT`/`ACCEPT` `my_address`), and
//!   `CONNECT`/`ACCEPT` lines that always fit `max_line` ([`Router::fit_hello`]).
//! - **`FORGET ip=`** (a local service or a peer): the neighbour is dropped, its dialer
//!   stopped, the persisted list rewritten, and `*:communicatord/FORGET` re-broadcast unless
//!   the line already carries `broadcast_hops` (stock).

use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;

use crate::event::{ConnId, ConnKind};
use crate::replies::DAEMON_SERVICE;
use crate::router::Router;
use cd_wire::{parse, serialize, RouteHead, WireMessage};

/// Most neighbours learned from peers (`GOSSIP`, `CONNECT`/`ACCEPT`); configured and
/// persisted neighbours always count, learned ones beyond the cap are ignored.
pub(crate) const MAX_LEARNED_NEIGHBORS: usize = 64;
/// Lifetime of a flooded line, seconds (stock).
const FLOOD_TTL: u64 = 10;

/// Whether `list` (a `broadcast_informed_neighbors` value, split) names the daemon at `addr`
/// (`ip:port`): by `ip:port`, or by bare IP unless the list names that IP with ports (then
/// it was written by a comms daemon, and only the port-qualified entries count).
pub(crate) fn informed_has(list: &[String], addr: &str) -> bool {
    let Ok(sa) = addr.parse::<SocketAddr>() else {
        return list.iter().any(|i| i == addr);
    };
    let mut ported = false;
    for i in list {
        if let Ok(x) = i.parse::<SocketAddr>() {
            if x == sa {
                return true;
            }
            ported |= x.ip() == sa.ip();
        }
    }
    !ported
        && list
            .iter()
            .any(|i| i.parse::<IpAddr>().ok() == Some(sa.ip()))
}

/// The loop fields of a flooded line: its hops so far (`broadcast_hops`, 0 when absent) and
/// the daemons it has informed (`broadcast_informed_neighbors`, split).
pub(crate) fn loop_fields(msg: &WireMessage) -> (u32, Vec<String>) {
    let hops = msg
        .param("broadcast_hops")
        .and_then(|h| h.parse::<u32>().ok())
        .unwrap_or(0);
    (hops, list_param(msg, "broadcast_informed_neighbors"))
}

/// The entries of a comma-separated list parameter (`list=A,B`), empty ones left out.
pub(crate) fn list_param(msg: &WireMessage, name: &str) -> Vec<String> {
    msg.param(name)
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Appends `addr` to an informed list in both forms (bare IP first, as the stock daemon
/// writes it, then `ip:port`), without duplicates.
pub(crate) fn informed_push(list: &mut Vec<String>, addr: &str) {
    if addr.is_empty() {
        return;
    }
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        let ip = sa.ip().to_string();
        if !list.contains(&ip) {
            list.push(ip);
        }
    }
    if !list.iter().any(|i| i == addr) {
        list.push(addr.to_owned());
    }
}

impl Router {
    /// Why `addr` may not become a neighbour (learned from a peer), if it may not: the plain
    /// peer address rules (no unspecified, multicast, public or, unless allowed, loopback
    /// address), not ourselves, and within [`MAX_LEARNED_NEIGHBORS`].
    pub(crate) fn neighbor_refusal(&self, addr: SocketAddr) -> Option<&'static str> {
        if addr.port() == 0 {
            return Some("port 0");
        }
        if let Some(why) = crate::cluster::address::refusal(addr, self.cfg.allow_loopback_peers) {
            return Some(why);
        }
        let me = self.cluster.net.as_ref().map(|n| n.my_address);
        if Some(addr) == me || addr.to_string() == self.cluster.my_address {
            return Some("our own address");
        }
        if !self.cluster.neighbors.contains(&addr)
            && self.cluster.neighbors.len() >= MAX_LEARNED_NEIGHBORS
        {
            return Some("neighbour set full");
        }
        None
    }

    /// Trims the `neighbors` (then `services`) of a `CONNECT`/`ACCEPT` until its line fits
    /// `max_line`: a peer must always be able to read our handshake.
    pub(crate) fn fit_hello(&self, m: &mut WireMessage) {
        let limit = self.cfg.max_line.saturating_sub(1);
        let len = |m: &WireMessage| {
            let mut b = BytesMut::new();
            serialize(m, &mut b).map(|()| b.len()).unwrap_or(usize::MAX)
        };
        for key in ["neighbors", "services"] {
            while len(m) > limit {
                let Some(v) = m.param(key).map(str::to_owned) else {
                    break;
                };
                match v.rsplit_once(',') {
                    Some((rest, _)) => {
                        m.set_param(key, rest);
                    }
                    None => {
                        m.params.remove(key);
                    }
                }
            }
        }
    }

    /// Floods a service-only unicast (`msg`, stamped; loop fields kept if it has them) to
    /// the stock peers not informed yet (and not `except`), as the stock daemon forwards a
    /// line for a service it does not host. `false`: no stock peer to send it to (or the hop
    /// limit is reached).
    pub(crate) fn flood_to_stock(&mut self, mut msg: WireMessage, except: Option<ConnId>) -> bool {
        let (hops, informed) = loop_fields(&msg);
        if hops >= 5 {
            return false;
        }
        if msg.param("broadcast_msgid").is_none() {
            self.new_broadcast(&mut msg, FLOOD_TTL);
        }
        self.send_on(msg, hops, &informed, except, true) > 0
    }

    /// A local sender's service-only unicast with no local instance and no known route:
    /// stamped `<NODE:from ` and flooded to the stock peers. `false`: no stock peer.
    pub(crate) fn flood_local(
        &mut self,
        from_name: &str,
        head: &RouteHead<'_>,
        line: &[u8],
    ) -> bool {
        let has_stock = self.cluster.links.values().any(|id| {
            self.conns
                .get(id)
                .and_then(|c| c.link.as_ref())
                .is_some_and(|l| !l.comms)
        });
        if !has_stock {
            return false;
        }
        let mut out = BytesMut::with_capacity(line.len() + 32);
        if crate::router::stamp::stamp_line(&self.node, from_name, head, line, &mut out).is_err() {
            return false;
        }
        let body = out.strip_suffix(b"\n").unwrap_or(&out);
        match parse(body) {
            Ok(msg) => self.flood_to_stock(msg, None),
            Err(_) => false,
        }
    }

    /// `FORGET ip=` from a local service (Unix or loopback TCP, as the stock daemon; refused
    /// on the TLS listener, whose clients may be remote).
    pub(crate) fn forget_request(&mut self, id: ConnId, to: Option<&str>, msg: &WireMessage) {
        let kind = self.conns.get(&id).map(|c| c.kind);
        let why = match (kind, msg.param("ip")) {
            (Some(ConnKind::Tls), _) => "not allowed on a TLS connection",
            (_, None | Some("")) => "ip= required",
            (_, Some(ip)) => {
                let ip = ip.to_owned();
                return self.forget_neighbor(&ip, true);
            }
        };
        let m = crate::replies::invalid(&self.node, to, Some("FORGET"), why);
        self.send(id, &m);
    }

    /// `FORGET ip=` (an IP or `ip:port`): drops the matching neighbours and stops dialing
    /// them; re-broadcast to the peers as `*:communicatord/FORGET` when `propagate`.
    pub(crate) fn forget_neighbor(&mut self, ip: &str, propagate: bool) {
        let matches = |a: &SocketAddr| a.to_string() == ip || a.ip().to_string() == ip;
        let gone: Vec<SocketAddr> = self
            .cluster
            .neighbors
            .iter()
            .filter(|a| matches(a))
            .copied()
            .collect();
        for a in &gone {
            self.cluster.neighbors.remove(a);
            self.cluster.gossiping.remove(a);
            if let Some(d) = self.cluster.dialers.remove(a) {
                d.stop.cancel();
            }
        }
        tracing::info!(ip, forgotten = gone.len(), "FORGET");
        if !gone.is_empty() {
            self.save_neighbors();
        }
        if propagate {
            let mut m = WireMessage::new("FORGET").with_param("ip", ip);
            m.server = "*".to_owned();
            m.service = DAEMON_SERVICE.to_owned();
            m.sent_from_server = self.node.to_string();
            m.sent_from_service = DAEMON_SERVICE.to_owned();
            self.new_broadcast(&mut m, FLOOD_TTL);
            self.send_on(m, 0, &[], None, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn informed_lists_in_both_forms() {
        let mut l = Vec::new();
        informed_push(&mut l, "10.0.0.1:4042");
        informed_push(&mut l, "10.0.0.2:4042");
        informed_push(&mut l, "10.0.0.1:4042");
        assert_eq!(
            l,
            ["10.0.0.1", "10.0.0.1:4042", "10.0.0.2", "10.0.0.2:4042"]
        );
        assert!(informed_has(&l, "10.0.0.2:4042"));
        // Same IP, another port (two comms daemons on one host): not informed.
        assert!(!informed_has(&l, "10.0.0.2:4043"));
        // A stock list (bare IPs) names every port of that IP.
        let stock = vec!["10.0.0.3".to_owned()];
        assert!(informed_has(&stock, "10.0.0.3:4042"));
        assert!(!informed_has(&stock, "10.0.0.4:4042"));
    }
}
