//! A line's way through the router.
//!
//! Hot path (a registered service sends to another): [`peek_route`] reads the head only,
//! one hash lookup finds the destination, [`restamp_head`] writes `<NODE:sender ` + the
//! head + the untouched parameter text straight into the destination's pending buffer.
//! The parameters are never parsed. Only lines for the daemon, lines that cannot be
//! delivered (cache, reports) and JSON lines are parsed in full.

use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::time::Instant;

use super::stamp::stamp_line;
use super::Router;
use crate::cache::{CacheEntry, CacheOpts};
use crate::event::{ConnId, ConnKind};
use crate::replies::{self, DAEMON_SERVICE};
use crate::stats::Stats;
use cd_wire::{parse, peek_route, RouteHead, WireMessage};

/// What a line did to the sender's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Routed or refused; the sender's registration is unchanged.
    Routed,
    /// A daemon command: the sender's registration may have changed.
    Daemon,
}

fn is_blank(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

impl Router {
    /// One read chunk of connection `id` (whole lines).
    pub(crate) fn on_input(&mut self, id: ConnId, data: &[u8]) {
        if self.conns.get(&id).is_some_and(|c| c.kind.is_peer()) {
            return self.on_peer_input(id, data);
        }
        if self.stopping {
            self.quitting(id);
            return;
        }
        let Some(mut name) = self.conns.get(&id).map(|c| c.name.clone()) else {
            return;
        };
        for line in data.split(|&b| b == b'\n') {
            if line.iter().all(is_blank) {
                continue;
            }
            if line.len() > self.cfg.max_line {
                let reason = format!(
                    "line too long ({} bytes, max {})",
                    line.len(),
                    self.cfg.max_line
                );
                self.refuse(id, name.as_deref(), None, &reason);
                continue;
            }
            if self.on_line(id, name.as_deref(), line) == Flow::Daemon {
                match self.conns.get(&id) {
                    Some(c) => name = c.name.clone(),
                    None => return,
                }
            }
        }
    }

    pub(crate) fn on_line(&mut self, id: ConnId, name: Option<&str>, line: &[u8]) -> Flow {
        if line.iter().find(|b| !is_blank(b)) == Some(&b'{') {
            // JSON input (receive-only in the C++): parse, then route its line form.
            return match parse(line).map(|m| m.to_line()) {
                Ok(Ok(text)) => self.on_line(id, name, text.as_bytes()),
                Ok(Err(e)) => {
                    self.refuse(id, name, None, &e.to_string());
                    Flow::Routed
                }
                Err(e) => {
                    self.refuse(id, name, None, &e.to_string());
                    Flow::Routed
                }
            };
        }
        let head = match peek_route(line) {
            Ok(h) => {
                self.proven(id);
                h
            }
            Err(e) => {
                self.refuse(id, name, None, &e.to_string());
                return Flow::Routed;
            }
        };
        if self.is_for_daemon(&head) {
            match parse(line) {
                Ok(msg) => self.daemon_command(id, msg),
                Err(e) => self.refuse(id, name, Some(head.command), &e.to_string()),
            }
            return Flow::Daemon;
        }
        let name = match name {
            Some(n) => n,
            None if self.may_send_unregistered(id) => "",
            None => {
                self.refuse(id, None, Some(head.command), "register first");
                return Flow::Routed;
            }
        };
        self.route(Some(id), name, &head, line);
        Flow::Routed
    }

    /// Whether connection `id` may route lines without a `REGISTER` (as `ed-signal --type tcp`
    /// does with the stock daemon): loopback TCP and Unix connections that do not sniff. Their
    /// lines are stamped `<NODE: ` (no service: the daemon does not know the sender, and never
    /// trusts a client's own prefix). TLS connections (possibly remote) must register.
    fn may_send_unregistered(&self, id: ConnId) -> bool {
        self.conns
            .get(&id)
            .is_some_and(|c| matches!(c.kind, ConnKind::Tcp | ConnKind::Unix) && c.sniff.is_none())
    }

    /// Answers `INVALID` to connection `id` and counts it.
    pub(crate) fn refuse(
        &mut self,
        id: ConnId,
        to: Option<&str>,
        command: Option<&str>,
        reason: &str,
    ) {
        Stats::bump(&self.stats.invalid_lines);
        match self.stats.logs.allow(crate::ratelog::Gate::BadLine) {
            Some(suppressed) => {
                tracing::info!(conn = id, command, reason, suppressed, "line refused")
            }
            None => tracing::debug!(conn = id, command, reason, "line refused"),
        }
        let m = replies::invalid(&self.node, to, command, reason);
        self.send(id, &m);
    }

    /// docs/PROTOCOL.md §2.3: server ∈ {"", ".", "*", own name} and service ∈ {"", communicatord}.
    pub(crate) fn is_for_daemon(&self, head: &RouteHead<'_>) -> bool {
        (matches!(head.server, "" | "." | "*") || head.server == &*self.node)
            && (head.service.is_empty() || head.service == DAEMON_SERVICE)
    }

    /// One checked UDP datagram. Nothing is ever answered over UDP (there is no stream to
    /// answer on, and the C++ crashes trying): daemon commands are logged and dropped,
    /// everything else is routed stamped `<NODE: ` (node, no service).
    pub(crate) fn on_datagram(&mut self, msg: WireMessage, peer: SocketAddr) {
        let command = msg.command.clone();
        let for_daemon = (matches!(msg.server.as_str(), "" | "." | "*")
            || msg.server == *self.node)
            && (msg.service.is_empty() || msg.service == DAEMON_SERVICE);
        if self.stopping || for_daemon {
            Stats::bump(&self.stats.udp_dropped);
            if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Udp) {
                tracing::warn!(%peer, %command, suppressed, "udp: daemon commands are not accepted over udp, dropped");
            } else {
                tracing::debug!(%peer, %command, "udp: daemon commands are not accepted over udp, dropped");
            }
            return;
        }
        let line = match msg.to_line() {
            Ok(l) => l,
            Err(e) => {
                Stats::bump(&self.stats.udp_dropped);
                if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Udp) {
                    tracing::warn!(%peer, %command, error = %e, suppressed, "udp datagram not routable, dropped");
                }
                return;
            }
        };
        match peek_route(line.as_bytes()) {
            Ok(head) => self.route(None, "", &head, line.as_bytes()),
            Err(e) => {
                Stats::bump(&self.stats.udp_dropped);
                if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Udp) {
                    tracing::warn!(%peer, error = %e, suppressed, "udp datagram not routable, dropped");
                }
            }
        }
    }

    /// Routes a line from `from` (registered as `from_name`; `None`/"" for UDP).
    pub(crate) fn route(
        &mut self,
        from: Option<ConnId>,
        from_name: &str,
        head: &RouteHead<'_>,
        line: &[u8],
    ) {
        let server = head.server;
        let own_server = matches!(server, "" | "." | "*" | "?") || server == &*self.node;
        match head.service {
            "." | "*" | "?" => {
                if server == "?" || !own_server {
                    return self.other_server(from, from_name, head, line);
                }
                if let Some(stamped) = self.broadcast_line(from, from_name, head, line) {
                    if head.service != "." {
                        self.broadcast_to_peers(&stamped);
                    }
                }
            }
            service => {
                if service.is_empty() {
                    return self.other_server(from, from_name, head, line);
                }
                let local = if own_server {
                    self.names.get(service).copied()
                } else {
                    None
                };
                let Some(dst) = local else {
                    let any = matches!(server, "" | "*" | "?");
                    let named_here = server == "." || server == &*self.node;
                    if !named_here {
                        let origin = (&*self.node, from_name);
                        if let Some(to) = self.next_link(server, service, any, origin, line) {
                            return self.relay_local(to, from, from_name, head, line);
                        }
                        // Stock peers announce no services: flood to them (stock.rs).
                        if any && self.flood_local(from_name, head, line) {
                            return;
                        }
                        if !any && self.cluster.net.is_none() {
                            return self.other_server(from, from_name, head, line);
                        }
                    }
                    return self.undeliverable(from, from_name, head, line);
                };
                let sniffing = !self.sniffers.is_empty();
                let mut behind = None;
                let result = match self.conns.get_mut(&dst) {
                    Some(c) => {
                        let was_empty = c.pending.is_empty();
                        let start = c.pending.len();
                        let r = stamp_line(&self.node, from_name, head, line, &mut c.pending);
                        if r.is_ok() && was_empty {
                            self.dirty.push(dst);
                        }
                        if r.is_ok() && sniffing {
                            self.scratch.clear();
                            self.scratch.extend_from_slice(&c.pending[start..]);
                        }
                        let out = &c.handles.out;
                        let slots_low = out.capacity() * 2 < out.max_capacity();
                        if c.handles.queued.congested(c.pending.len(), slots_low) {
                            behind = Some(c.handles.queued.clone());
                        }
                        r
                    }
                    None => Ok(()),
                };
                // A consumer behind its senders holds this one back (held_back.rs).
                if let (Some(queue), Some(src)) = (behind, from.filter(|s| *s != dst)) {
                    self.hold_back(src, queue);
                }
                if sniffing && result.is_ok() {
                    let copy = std::mem::take(&mut self.scratch);
                    self.sniff_copy(&copy);
                    self.scratch = copy;
                }
                if let (Err(e), Some(id)) = (result, from) {
                    self.refuse(id, Some(from_name), Some(head.command), &e);
                }
            }
        }
    }

    /// Local broadcast to every connection that declared the command, the sender included
    /// when it declared it (as the C++ does).
    pub(crate) fn broadcast_line(
        &mut self,
        from: Option<ConnId>,
        from_name: &str,
        head: &RouteHead<'_>,
        raw: &[u8],
    ) -> Option<BytesMut> {
        let mut line = BytesMut::with_capacity(head.params.len() + 64);
        if let Err(e) = stamp_line(&self.node, from_name, head, raw, &mut line) {
            if let Some(id) = from {
                self.refuse(id, Some(from_name), Some(head.command), &e);
            }
            return None;
        }
        if !self.sniffers.is_empty() {
            self.sniff_copy(&line);
        }
        for (id, c) in self.conns.iter_mut() {
            if c.link.is_none() && c.commands.contains(head.command) {
                if c.pending.is_empty() {
                    self.dirty.push(*id);
                }
                c.pending.extend_from_slice(&line);
            }
        }
        Some(line)
    }

    /// No cluster yet: a line for another server is dropped (reported when asked).
    pub(crate) fn other_server(
        &mut self,
        from: Option<ConnId>,
        from_name: &str,
        head: &RouteHead<'_>,
        line: &[u8],
    ) {
        Stats::bump(&self.stats.dropped_other_server);
        tracing::info!(
            from = from_name,
            server = head.server,
            service = head.service,
            command = head.command,
            "no route to another server (single node): message dropped"
        );
        if let Some(id) = from {
            if let Ok(msg) = parse(line) {
                let opts = CacheOpts::parse(msg.param("cache"), self.cache.default_ttl());
                // A comms message (`comms_id`) is answered even unasked: its sender would
                // otherwise resend it, or wait out a request's timeout, for a node that
                // does not exist.
                let reply = opts.reply || msg.param("comms_id").is_some();
                self.report_failure(id, from_name, &msg, reply);
            }
        }
    }

    /// `SERVICE_UNAVAILABLE` (if `reply`) and `TRANSMISSION_REPORT status=failed` (if asked).
    pub(crate) fn report_failure(
        &mut self,
        id: ConnId,
        from_name: &str,
        msg: &WireMessage,
        reply: bool,
    ) {
        if reply {
            let m = replies::service_unavailable(
                &self.node,
                from_name,
                &msg.service,
                &msg.command,
                msg.param("comms_id"),
            );
            self.send(id, &m);
        }
        if msg.param("transmission_report") == Some("failure") {
            let m = replies::transmission_report_local(&self.node, &msg.command, "failed");
            self.send(id, &m);
        }
    }

    /// The destination service is not registered: cache the line (docs/NATIVE.md).
    pub(crate) fn undeliverable(
        &mut self,
        from: Option<ConnId>,
        from_name: &str,
        head: &RouteHead<'_>,
        line: &[u8],
    ) {
        let msg = match parse(line) {
            Ok(m) => m,
            Err(e) => {
                if let Some(id) = from {
                    self.refuse(id, Some(from_name), Some(head.command), &e.to_string());
                }
                return;
            }
        };
        let opts = CacheOpts::parse(msg.param("cache"), self.cache.default_ttl());
        if opts.no {
            tracing::debug!(service = %msg.service, command = %msg.command, "not registered, cache=no: dropped");
            if let Some(id) = from {
                self.report_failure(id, from_name, &msg, opts.reply);
            }
            return;
        }
        let mut stamped = BytesMut::with_capacity(line.len() + 32);
        if let Err(e) = stamp_line(&self.node, from_name, head, line, &mut stamped) {
            if let Some(id) = from {
                self.refuse(id, Some(from_name), Some(head.command), &e);
            }
            return;
        }
        if !self.sniffers.is_empty() {
            self.sniff_copy(&stamped);
        }
        let entry = CacheEntry {
            service: msg.service.clone(),
            line: stamped.freeze(),
            deadline: Instant::now() + opts.ttl,
            sender: from.map(|_| from_name.to_owned()),
            reply: opts.reply,
            command: msg.command.clone(),
            comms_id: msg.param("comms_id").map(str::to_owned),
        };
        match self.cache.insert(entry) {
            true => {
                Stats::bump(&self.stats.cached);
                tracing::debug!(service = %msg.service, command = %msg.command, ttl = ?opts.ttl, "cached");
                if let (Some(id), Some("failure")) = (from, msg.param("transmission_report")) {
                    let m = replies::transmission_report_local(&self.node, &msg.command, "cached");
                    self.send(id, &m);
                }
            }
            false => {
                Stats::bump(&self.stats.cache_refused);
                if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Cache) {
                    tracing::warn!(service = %msg.service, command = %msg.command, suppressed, "cache full: message dropped");
                }
                if let Some(id) = from {
                    self.report_failure(id, from_name, &msg, opts.reply);
                }
            }
        }
    }
}
