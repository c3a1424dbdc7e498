//! Lines crossing peer links: service-aware unicast along the shortest path, and cluster
//! broadcasts with the stock loop-prevention fields (docs/PROTOCOL.md §2.5).
//!
//! **Unicast.** `node:svc/CMD` goes to the next hop toward `node`; `svc/CMD` (server empty,
//! `*` or `?`) to a local instance if any, else toward the nearest node that hosts `svc`
//! (several equally near: [`turn`] picks one — a comms sender's streams take turns, so each
//! stream stays on one instance while one sender's successive streams, and different
//! senders, spread over the instances; the native transport orders within a stream and opens
//! a sender's next stream only once the previous one is handled).
//! Exactly one copy leaves, to exactly one peer: never flooded. Intermediate daemons decide
//! again from the same database, so the path stays shortest. The origin stamp
//! `<nodeA:svc ` written by the first daemon is kept verbatim: remote links never stamp. No
//! route → the cache (`cache=` rules), replayed when a route appears. A line whose next hop
//! would be the link it came from (databases not yet converged) is cached rather than
//! bounced back, so transient loops cannot form.
//!
//! **Broadcast** `*/CMD` and `?/CMD`: delivered to local declarers, and sent to every peer
//! with `broadcast_msgid=<node>-<n>`, `broadcast_hops`, `broadcast_originator`,
//! `broadcast_timeout` (now + 10 s), `broadcast_informed_neighbors` (the originator and
//! every peer it was sent to, each as its bare IP — the stock form — and as `ip:port`) and `secure_remote=false`. A receiver drops an
//! id it has seen (the originator records its own id: no echo, unlike the C++), delivers to
//! its declarers **without** the loop fields, and forwards to the peers not yet informed
//! while `broadcast_hops` < 5. Every node gets the broadcast exactly once.
//!
//! Size: ~490 lines of code, kept in one file on purpose: unicast, broadcast and the cache
//! replay share the loop guards, the next-hop choice and the stamping rules above, and read
//! as one mechanism.

use bytes::{BufMut, BytesMut};
use tokio::time::Instant;

use super::stock::{informed_has, informed_push, loop_fields};
use crate::cache::{CacheEntry, CacheOpts};
use crate::event::ConnId;
use crate::replies::{self, unix_now};
use crate::router::Router;
use crate::stats::Stats;
use cd_wire::{parse, peek_route, restamp_head, serialize, RouteHead, WireMessage};

/// Hop limit of cluster broadcasts (stock).
const MAX_HOPS: u32 = 5;
/// Lifetime of a cluster broadcast, seconds (stock).
const BROADCAST_TTL: u64 = 10;
/// The loop-prevention parameters, stripped before local delivery.
const LOOP_FIELDS: &[&str] = &[
    "broadcast_hops",
    "broadcast_informed_neighbors",
    "broadcast_msgid",
    "broadcast_originator",
    "broadcast_timeout",
    "secure_remote",
];

/// FNV-1a over `parts` joined by `:`: stable across daemons and runs (unlike `std`'s random
/// hasher), so every daemon on the path picks the same instance for one stream.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        let sep: &[u8] = if i == 0 { b"" } else { b":" };
        for b in sep.iter().chain(part.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The `EPOCH` and `STREAM` of a line's `comms_seq=EPOCH.STREAM.N` (a comms sender's
/// at-least-once stream), if it has one.
fn comms_stream(line: &[u8]) -> Option<(&[u8], u64)> {
    const NEEDLE: &[u8] = b"comms_seq=";
    let at = line
        .windows(NEEDLE.len())
        .enumerate()
        .find(|(i, w)| *w == NEEDLE && *i > 0 && matches!(line[i - 1], b' ' | b';'))?
        .0;
    let value = &line[at + NEEDLE.len()..];
    let end = value
        .iter()
        .position(|b| matches!(b, b';' | b' ' | b'\n' | b'\r'))
        .unwrap_or(value.len());
    let value = &value[..end];
    let mut dots = value
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'.')
        .map(|(i, _)| i);
    let (first, second) = (dots.next()?, dots.next()?);
    let stream = std::str::from_utf8(&value[first + 1..second])
        .ok()?
        .parse()
        .ok()?;
    Some((&value[..first], stream))
}

/// Which of several equally near hosts a unicast takes (index modulo their number): a comms
/// stream by a hash of its origin and epoch **plus its stream number**, so one sender's
/// successive streams take turns over the hosts; any other line (stock senders,
/// at-most-once) by a hash of its origin, so its order holds on one host.
pub(crate) fn turn(origin: (&str, &str), line: &[u8]) -> u64 {
    let (node, svc) = (origin.0.as_bytes(), origin.1.as_bytes());
    match comms_stream(line) {
        Some((epoch, stream)) => fnv1a(&[node, svc, epoch]).wrapping_add(stream),
        None => fnv1a(&[node, svc]),
    }
}

/// The line of `head` (`len` bytes long) written again with the sender it carries, ending
/// in `\n`, as it is passed on; `None` when it cannot be written.
fn restamped(head: &RouteHead<'_>, len: usize) -> Option<BytesMut> {
    let mut out = BytesMut::with_capacity(len + 1);
    let (server, service) = (head.sent_from_server, head.sent_from_service);
    restamp_head(head, server, service, &mut out).ok()?;
    out.put_u8(b'\n');
    Some(out)
}

fn has_msgid(line: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"broadcast_msgid=";
    line.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

impl Router {
    /// The up link (conn) to send a line for `server`/`service` through, if any. `any`:
    /// the server is empty / `*` / `?` (nearest host of `service`; among equally near ones,
    /// the one whose [`turn`] it is for `origin` and `line`).
    pub(crate) fn next_link(
        &self,
        server: &str,
        service: &str,
        any: bool,
        origin: (&str, &str),
        line: &[u8],
    ) -> Option<ConnId> {
        let routes = &self.cluster.routes;
        let target = if any {
            let near = routes.nearest_all(service);
            let k = match near.len() {
                0 | 1 => 0,
                n => (turn(origin, line) % n as u64) as usize,
            };
            *near.get(k)?
        } else {
            server
        };
        if let Some(&id) = self.cluster.links.get(target) {
            return Some(id);
        }
        let hop = routes.next_hop(target)?;
        self.cluster.links.get(hop).copied()
    }

    /// Writes `line` (already stamped) with its `\n` to link `to`, sniffed.
    pub(crate) fn relay_bytes(&mut self, to: ConnId, line: &[u8]) {
        Stats::bump(&self.stats.lines_forwarded);
        if !self.sniffers.is_empty() {
            self.sniff_copy(line);
        }
        self.push(to, line);
    }

    /// A local sender's unicast toward link `to`: stamped `<NODE:from `, then forwarded.
    pub(crate) fn relay_local(
        &mut self,
        to: ConnId,
        from: Option<ConnId>,
        from_name: &str,
        head: &RouteHead<'_>,
        line: &[u8],
    ) {
        let mut out = BytesMut::with_capacity(line.len() + 32);
        match crate::router::stamp::stamp_line(&self.node, from_name, head, line, &mut out) {
            Ok(()) => self.relay_bytes(to, &out),
            Err(e) => {
                if let Some(id) = from {
                    self.refuse(id, Some(from_name), Some(head.command), &e);
                }
            }
        }
    }

    /// A unicast that arrived from peer link `from`.
    pub(crate) fn unicast_from_peer(&mut self, from: ConnId, head: &RouteHead<'_>, line: &[u8]) {
        if has_msgid(line) {
            // From a stock daemon, which forwards unicasts with the broadcast fields.
            let Ok(mut msg) = parse(line) else { return };
            if !self.fresh_broadcast(&msg) {
                return;
            }
            if self.flood_on(from, head, line, &msg) {
                return;
            }
            for f in LOOP_FIELDS {
                msg.params.remove(*f);
            }
            let Ok(text) = msg.to_line() else { return };
            if let Ok(h) = peek_route(text.as_bytes()) {
                self.unicast_stamped(Some(from), &h, text.as_bytes());
            }
            return;
        }
        self.unicast_stamped(Some(from), head, line);
    }

    /// Routes an already stamped unicast (from a peer, or replayed from the cache).
    pub(crate) fn unicast_stamped(
        &mut self,
        from: Option<ConnId>,
        head: &RouteHead<'_>,
        line: &[u8],
    ) {
        let server = head.server;
        let service = head.service;
        let any = matches!(server, "" | "*" | "?");
        let own = server == "." || server == &*self.node;
        if any || own {
            if let Some(&dst) = self.names.get(service) {
                let Some(out) = restamped(head, line.len()) else {
                    if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Peer) {
                        tracing::warn!(service, suppressed, "unroutable line from a peer dropped");
                    }
                    return;
                };
                if !self.sniffers.is_empty() {
                    self.sniff_copy(&out);
                }
                self.push(dst, &out);
                return;
            }
        }
        if !own {
            let origin = (head.sent_from_server, head.sent_from_service);
            if let Some(to) = self.next_link(server, service, any, origin, line) {
                if Some(to) == from {
                    tracing::debug!(service, "route points back to the sending link");
                }
                if Some(to) != from {
                    if let Some(out) = restamped(head, line.len()) {
                        self.relay_bytes(to, &out);
                    }
                    return;
                }
            }
        }
        if any && !own && self.not_routable(head, line) {
            if let Ok(msg) = parse(line) {
                if self.flood_to_stock(msg, from) {
                    return;
                }
            }
        }
        self.cache_stamped(head, line);
    }

    /// A service-only unicast with the stock loop fields from peer link `from`: flooded on
    /// (same id) to the other stock peers when it has no local instance and no known route.
    fn flood_on(
        &mut self,
        from: ConnId,
        head: &RouteHead<'_>,
        line: &[u8],
        msg: &WireMessage,
    ) -> bool {
        let any = matches!(head.server, "" | "*" | "?");
        if !any || !self.not_routable(head, line) {
            return false;
        }
        self.flood_to_stock(msg.clone(), Some(from))
    }

    /// No local instance of the line's service and no route toward one (link state).
    pub(crate) fn not_routable(&self, head: &RouteHead<'_>, line: &[u8]) -> bool {
        let origin = (head.sent_from_server, head.sent_from_service);
        !self.names.contains_key(head.service)
            && self
                .next_link(head.server, head.service, true, origin, line)
                .is_none()
    }

    /// Caches a stamped line that has no route (yet); `cache=no` → dropped, and the origin
    /// told when it asked (`reply` / `transmission_report=failure`).
    pub(crate) fn cache_stamped(&mut self, head: &RouteHead<'_>, line: &[u8]) {
        let Ok(msg) = parse(line) else { return };
        let opts = CacheOpts::parse(msg.param("cache"), self.cache.default_ttl());
        let origin = format!("{}:{}", msg.sent_from_server, msg.sent_from_service);
        let has_origin = !msg.sent_from_server.is_empty() && !msg.sent_from_service.is_empty();
        if opts.no {
            tracing::debug!(service = head.service, "no route, cache=no: dropped");
            if has_origin {
                self.report_to_origin(&msg, opts.reply, "failed");
            }
            return;
        }
        let Some(stamped) = restamped(head, line.len()) else {
            return;
        };
        let entry = CacheEntry {
            service: msg.service.clone(),
            line: stamped.freeze(),
            deadline: Instant::now() + opts.ttl,
            sender: has_origin.then_some(origin),
            reply: opts.reply,
            command: msg.command.clone(),
            comms_id: msg.param("comms_id").map(str::to_owned),
        };
        if self.cache.insert(entry) {
            tracing::debug!(service = head.service, "no route yet: cached");
            Stats::bump(&self.stats.cached);
            if has_origin && msg.param("transmission_report") == Some("failure") {
                self.report_to_origin(&msg, false, "cached");
            }
        } else {
            Stats::bump(&self.stats.cache_refused);
            if has_origin {
                self.report_to_origin(&msg, opts.reply, "failed");
            }
        }
    }

    /// `SERVICE_UNAVAILABLE` (if `reply`) and `TRANSMISSION_REPORT` (if asked) to the
    /// message's origin, local or remote.
    pub(crate) fn report_to_origin(&mut self, msg: &WireMessage, reply: bool, status: &str) {
        let (node, svc) = (
            msg.sent_from_server.as_str(),
            msg.sent_from_service.as_str(),
        );
        if reply {
            let m = replies::service_unavailable(
                &self.node,
                svc,
                &msg.service,
                &msg.command,
                msg.param("comms_id"),
            );
            self.send_to_origin(node, svc, m);
        }
        if msg.param("transmission_report") == Some("failure") {
            let m = replies::transmission_report(&self.node, svc, &msg.command, status);
            self.send_to_origin(node, svc, m);
        }
    }

    /// Sends a daemon reply (addressed `NODE:svc/...`) to `node:svc`: locally, or readdressed
    /// `node:svc/...` with the prefix `<NODE:communicatord ` toward `node`.
    pub(crate) fn send_to_origin(&mut self, node: &str, svc: &str, mut m: WireMessage) {
        if node == &*self.node || node.is_empty() {
            self.send_to_name(svc, &m);
            return;
        }
        m.server = node.to_owned();
        m.sent_from_server = self.node.to_string();
        m.sent_from_service = replies::DAEMON_SERVICE.to_owned();
        let Some(to) = self.next_link(node, svc, false, ("", ""), b"") else {
            tracing::debug!(node, svc, "no route back to the origin; report dropped");
            return;
        };
        let mut out = BytesMut::new();
        if serialize(&m, &mut out).is_ok() {
            out.put_u8(b'\n');
            self.relay_bytes(to, &out);
        }
    }

    /// A cached entry whose service may now be reachable: delivered, forwarded, or cached
    /// again (same deadline).
    pub(crate) fn replay_entry(&mut self, e: CacheEntry) {
        let line = e.line.clone();
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let Ok(head) = peek_route(body) else { return };
        let any = matches!(head.server, "" | "*" | "?");
        let own = head.server == "." || head.server == &*self.node;
        if (any || own) && self.names.contains_key(head.service) {
            if let Some(&dst) = self.names.get(head.service) {
                self.push(dst, &line);
            }
            return;
        }
        if !own {
            let origin = (head.sent_from_server, head.sent_from_service);
            if let Some(to) = self.next_link(head.server, head.service, any, origin, body) {
                tracing::debug!(service = head.service, conn = to, "cached line replayed");
                self.relay_bytes(to, &line);
                return;
            }
        }
        if !self.cache.insert(e) {
            Stats::bump(&self.stats.cache_refused);
        }
    }

    /// Checks a broadcast's expiry and id; `true` the first time it is seen.
    pub(crate) fn fresh_broadcast(&mut self, msg: &WireMessage) -> bool {
        let now = unix_now();
        let timeout = msg
            .param("broadcast_timeout")
            .and_then(|t| t.split('.').next())
            .and_then(|t| t.parse::<u64>().ok());
        if timeout.is_some_and(|t| t < now) {
            Stats::bump(&self.stats.broadcast_duplicates);
            tracing::debug!(command = %msg.command, "expired broadcast dropped");
            return false;
        }
        let Some(id) = msg.param("broadcast_msgid") else {
            return true;
        };
        let expiry = timeout.unwrap_or(now + BROADCAST_TTL);
        if self.cluster.first_sight(id, expiry, now) {
            true
        } else {
            Stats::bump(&self.stats.broadcast_duplicates);
            tracing::debug!(id, "duplicate broadcast dropped");
            false
        }
    }

    /// Sends a local sender's broadcast (its stamped line) to every peer.
    pub(crate) fn broadcast_to_peers(&mut self, stamped: &[u8]) {
        if self.cluster.links.is_empty() {
            return;
        }
        let body = stamped.strip_suffix(b"\n").unwrap_or(stamped);
        let Ok(mut msg) = parse(body) else { return };
        self.new_broadcast(&mut msg, BROADCAST_TTL);
        self.send_on(msg, 0, &[], None, false);
    }

    /// A new broadcast id of this node: `<node>-<n>`.
    pub(crate) fn next_broadcast_id(&mut self) -> String {
        self.cluster.bcast_seq += 1;
        format!("{}-{}", self.node, self.cluster.bcast_seq)
    }

    /// Makes `msg` a new broadcast of this node, expiring in `ttl` seconds: its id (marked
    /// seen here, so that it is not taken back when a peer echoes it), originator and timeout.
    pub(crate) fn new_broadcast(&mut self, msg: &mut WireMessage, ttl: u64) {
        let id = self.next_broadcast_id();
        let now = unix_now();
        self.cluster.first_sight(&id, now + ttl, now);
        msg.set_param("broadcast_msgid", &id);
        msg.set_param("broadcast_originator", &self.cluster.my_address);
        msg.set_param("broadcast_timeout", (now + ttl).to_string());
    }

    /// Forwards `msg` (hops so far `hops`, informed list `informed`) to every up link not
    /// informed yet and not `except` (only the stock ones when `stock_only`); how many.
    pub(crate) fn send_on(
        &mut self,
        mut msg: WireMessage,
        hops: u32,
        informed: &[String],
        except: Option<ConnId>,
        stock_only: bool,
    ) -> usize {
        let targets: Vec<(ConnId, String)> = self
            .cluster
            .links
            .values()
            .filter(|id| Some(**id) != except)
            .filter_map(|id| {
                let l = self.conns.get(id)?.link.as_ref()?;
                if stock_only && l.comms {
                    return None;
                }
                (!informed_has(informed, &l.address)).then(|| (*id, l.address.clone()))
            })
            .collect();
        if targets.is_empty() {
            return 0;
        }
        let mut list: Vec<String> = informed.to_vec();
        for a in std::iter::once(&self.cluster.my_address).chain(targets.iter().map(|(_, a)| a)) {
            informed_push(&mut list, a);
        }
        msg.set_param("broadcast_hops", (hops + 1).to_string());
        msg.set_param("broadcast_informed_neighbors", list.join(","));
        msg.set_param("secure_remote", "false");
        let mut out = BytesMut::new();
        if serialize(&msg, &mut out).is_err() {
            return 0;
        }
        out.put_u8(b'\n');
        let n = targets.len();
        for (id, _) in targets {
            self.relay_bytes(id, &out);
        }
        n
    }

    /// A broadcast that arrived from peer link `from`.
    pub(crate) fn broadcast_from_peer(&mut self, from: ConnId, line: &[u8]) {
        let Ok(mut msg) = parse(line) else {
            if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Peer) {
                tracing::warn!(
                    conn = from,
                    suppressed,
                    "unparseable broadcast from a peer dropped"
                );
            }
            return;
        };
        if !self.fresh_broadcast(&msg) {
            return;
        }
        let (hops, informed) = loop_fields(&msg);
        let mut local = msg.clone();
        for f in LOOP_FIELDS {
            local.params.remove(*f);
        }
        let mut out = BytesMut::new();
        if serialize(&local, &mut out).is_ok() {
            out.put_u8(b'\n');
            if !self.sniffers.is_empty() {
                self.sniff_copy(&out);
            }
            let command = local.command.clone();
            let ids: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.link.is_none() && c.commands.contains(&command))
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                self.push(id, &out);
            }
        }
        if msg.service != "." && hops < MAX_HOPS {
            if msg.param("broadcast_msgid").is_none() {
                let id = self.next_broadcast_id();
                msg.set_param("broadcast_msgid", id);
            }
            self.send_on(msg, hops, &informed, Some(from), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comms_stream_of_a_line() {
        let line = b"<a:s work/JOB comms_base=1;comms_id=x;comms_seq=3f9a.12.7;z=1";
        assert_eq!(comms_stream(line), Some((&b"3f9a"[..], 12)));
        assert_eq!(
            comms_stream(b"work/JOB comms_seq=e.4.1"),
            Some((&b"e"[..], 4))
        );
        // Not a parameter boundary, malformed, or absent: none.
        assert_eq!(comms_stream(b"work/JOB xcomms_seq=e.4.1"), None);
        assert_eq!(comms_stream(b"work/JOB comms_seq=e4"), None);
        assert_eq!(comms_stream(b"work/JOB comms_seq=e.x.1"), None);
        assert_eq!(comms_stream(b"work/JOB n=1"), None);
    }

    #[test]
    fn successive_streams_of_one_sender_take_turns() {
        let o = ("a", "s");
        let t: Vec<u64> = (1..=4)
            .map(|n| turn(o, format!("work/JOB comms_seq=e.{n}.1").as_bytes()) % 2)
            .collect();
        assert_ne!(t[0], t[1]);
        assert_ne!(t[1], t[2]);
        assert_eq!(t[0], t[2]);
        // Positions within a stream never move it; lines without a stream stay per origin.
        assert_eq!(
            turn(o, b"work/JOB comms_seq=e.1.1"),
            turn(o, b"work/JOB comms_seq=e.1.999")
        );
        assert_eq!(turn(o, b"work/JOB n=1"), turn(o, b"work/JOB n=2"));
    }
}
