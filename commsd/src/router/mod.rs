//! The router: the **single owner** of the routing table, the registrations, the declared
//! commands, the cache and every connection's outbound buffer. It runs as one task fed by
//! one bounded inbox ([`Event`]); nothing it owns is shared, so nothing is locked.
//!
//! One round = take up to `INBOX_BATCH` events, handle them (appending output lines to
//! each destination's `pending` buffer), then **flush**: one `Bytes` batch per destination
//! connection that got output, handed to its writer with `try_send`. A full queue means the
//! service does not read: it is disconnected (slow consumer), the router never waits. A
//! service that reads, but slower than a sender writes to it, holds that sender back instead
//! (`held_back.rs`, `conn::flow`).
//!
//! Files: `route.rs` (a line's way: head peek, stamping, unicast, broadcast, cache),
//! `commands.rs` (commands addressed to the daemon), `admin.rs` (who may `STOP` or `SNIFF`),
//! `sniff.rs` (copies for `SNIFF` connections), this file (loop, connections, output). The cluster's part of the router
//! (peer handshake, link state, relaying lines across links) is in `crate::cluster`, as
//! further `impl Router` blocks: one owner, the state of each concern next to its code.

mod admin;
mod commands;
mod held_back;
pub(crate) mod plugins;
pub(crate) mod route;
mod sniff;
pub(crate) mod stamp;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::cluster;
use crate::cluster::Cluster;
use crate::config::{AdminRules, CacheLimits};
use crate::conn::QueueError;
use crate::event::{ConnHandles, ConnId, ConnKind, Event};
use crate::ratelog::Gate;
use crate::replies;
use crate::stats::Stats;
use cd_wire::{serialize, WireMessage};

/// Events handled per round before flushing.
const INBOX_BATCH: usize = 256;
/// How many down services `SERVICE_STATUS` remembers.
const MAX_DOWN_REMEMBERED: usize = 1024;

/// The router's settings.
#[derive(Debug, Clone)]
pub(crate) struct RouterConfig {
    pub node: String,
    pub my_address: String,
    /// Answered to `PUBLIC_IP`.
    pub public_ip: Option<String>,
    pub max_line: usize,
    pub admin: AdminRules,
    pub cache: CacheLimits,
    pub shutdown_grace: Duration,
    /// Loopback addresses may be gossiped as neighbours.
    pub allow_loopback_peers: bool,
    /// Peer IPs allowed a plain link (`plain_peers`); `None`: any (TLS, or insecure_peers).
    pub plain_peers: Option<Vec<std::net::IpAddr>>,
    /// Pause before redialing a peer that refused with `shutdown=true`.
    pub peer_retry_max: Duration,
}

/// One stream connection as the router sees it.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) kind: ConnKind,
    pub(crate) peer: String,
    /// The peer's uid (`SO_PEERCRED`) on the Unix socket.
    pub(crate) uid: Option<u32>,
    /// The registered service name.
    pub(crate) name: Option<Arc<str>>,
    pub(crate) up_since: u64,
    /// Commands declared with `COMMANDS list=`.
    pub(crate) commands: HashSet<String>,
    pub(crate) handles: ConnHandles,
    /// Output of the current round, flushed as one batch.
    pub(crate) pending: BytesMut,
    /// Set once the connection sent `SNIFF`: it gets copies, and loses them when slow.
    pub(crate) sniff: Option<sniff::Sniffer>,
    /// Set for a peer link (another daemon).
    pub(crate) link: Option<cluster::PeerLink>,
    /// It sent a complete valid line (its `first_line_timeout` is cancelled).
    pub(crate) proven: bool,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Router {
    pub(crate) node: Arc<str>,
    pub(crate) cfg: RouterConfig,
    pub(crate) conns: HashMap<ConnId, Conn>,
    pub(crate) names: HashMap<Arc<str>, ConnId>,
    /// Services that went down: name → (up_since, down_since).
    pub(crate) down: HashMap<String, (u64, u64)>,
    /// Connections with pending output this round.
    pub(crate) dirty: Vec<ConnId>,
    pub(crate) cache: Cache,
    pub(crate) stats: Arc<Stats>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) stopping: bool,
    pub(crate) scratch: BytesMut,
    /// Connections that sent `SNIFF` (empty: routing copies nothing).
    pub(crate) sniffers: Vec<ConnId>,
    /// Peer links and the cluster routing table.
    pub(crate) cluster: Cluster,
    /// `REGISTER_FOR_LOADAVG` subscribers.
    pub(crate) loadavg: plugins::Loadavg,
    /// Senders waiting for a consumer to catch up, with their events since (`held_back.rs`).
    pub(crate) held_back: HashMap<ConnId, held_back::Held>,
}

impl Router {
    pub(crate) fn new(cfg: RouterConfig, stats: Arc<Stats>, shutdown: CancellationToken) -> Self {
        let node_name = cfg.node.clone();
        Self {
            node: Arc::from(cfg.node.as_str()),
            cache: Cache::new(cfg.cache.clone()),
            cfg,
            conns: HashMap::new(),
            names: HashMap::new(),
            down: HashMap::new(),
            dirty: Vec::new(),
            stats,
            shutdown,
            stopping: false,
            scratch: BytesMut::with_capacity(4096),
            sniffers: Vec::new(),
            cluster: Cluster::single(&node_name),
            loadavg: plugins::Loadavg::default(),
            held_back: HashMap::new(),
        }
    }

    /// Adds the cluster side (peer tasks, neighbours) to a new router.
    pub(crate) fn with_cluster(mut self, cluster: Cluster) -> Self {
        self.cluster = cluster;
        self
    }

    /// Runs until the daemon stops and every connection is closed (or the grace ends).
    pub(crate) async fn run(mut self, mut inbox: mpsc::Receiver<Event>) {
        let shutdown = self.shutdown.clone();
        let mut events = Vec::with_capacity(INBOX_BATCH);
        let mut grace_end: Option<Instant> = None;
        let far = || Instant::now() + Duration::from_secs(86_400 * 365);
        self.cluster_start();
        loop {
            let expiry = self.cache.next_deadline();
            let cluster_at = self.cluster_deadline().map(Instant::from_std);
            let load_tick = self.loadavg.next;
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if grace_end.is_none() => {
                    self.begin_stop();
                    grace_end = Some(Instant::now() + self.cfg.shutdown_grace);
                }
                _ = tokio::time::sleep_until(grace_end.unwrap_or_else(far)), if grace_end.is_some() => break,
                n = inbox.recv_many(&mut events, INBOX_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    for ev in events.drain(..) {
                        self.on_event(ev);
                    }
                }
                _ = tokio::time::sleep_until(expiry.unwrap_or_else(far)), if expiry.is_some() => {
                    self.expire(Instant::now());
                }
                _ = tokio::time::sleep_until(cluster_at.unwrap_or_else(far)), if cluster_at.is_some() => {
                    self.cluster_timer(std::time::Instant::now());
                }
                _ = tokio::time::sleep_until(load_tick.unwrap_or_else(far)), if load_tick.is_some() => {
                    self.loadavg_tick();
                }
                _ = tokio::time::sleep(held_back::CHECK), if !self.held_back.is_empty() => {}
            }
            self.release_held_back();
            self.flush();
            self.publish_levels();
            if self.stopping && self.conns.is_empty() {
                break;
            }
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id, "daemon stopped");
        }
        self.flush();
        tracing::info!("router stopped");
    }

    /// The levels the metrics read (a few stores per round of events).
    fn publish_levels(&self) {
        let g = &self.stats.gauges;
        Stats::set(&g.services, self.names.len() as u64);
        Stats::set(&g.cache_entries, self.cache.len() as u64);
        Stats::set(&g.peer_links, self.cluster.links.len() as u64);
        Stats::set(&g.nodes_reachable, self.cluster.routes.reachable() as u64);
    }

    pub(crate) fn on_event(&mut self, ev: Event) {
        let Some(ev) = self.defer_if_held_back(ev) else {
            return;
        };
        match ev {
            Event::Opened {
                id,
                kind,
                peer,
                uid,
                handles,
            } => {
                tracing::debug!(conn = id, ?kind, %peer, "connection opened");
                self.stats.gauges.connections[kind.index()].fetch_add(1, Ordering::Relaxed);
                self.conns.insert(
                    id,
                    Conn {
                        kind,
                        peer,
                        uid,
                        name: None,
                        up_since: 0,
                        commands: HashSet::new(),
                        handles,
                        pending: BytesMut::new(),
                        sniff: None,
                        link: None,
                        proven: false,
                    },
                );
                if kind.is_peer() {
                    self.peer_opened(id);
                } else if self.stopping {
                    self.quitting(id);
                }
            }
            Event::Input { id, data } => self.on_input(id, &data),
            Event::TooLong { id, length } => {
                Stats::bump(&self.stats.invalid_lines);
                let reason = format!("line too long ({length} bytes, max {})", self.cfg.max_line);
                if let Some(suppressed) = self.stats.logs.allow(Gate::BadLine) {
                    tracing::info!(conn = id, %reason, suppressed, "line refused");
                }
                let to = self.name_of(id);
                let m = replies::invalid(&self.node, to.as_deref(), None, &reason);
                self.send(id, &m);
            }
            Event::Closed { id } => self.close(id, "connection lost"),
            Event::Datagram { msg, peer } => self.on_datagram(msg, peer),
            Event::ClusterMap { reply } => {
                let _ = reply.send(self.cluster_map());
            }
        }
    }

    /// Begins the stop: `DISCONNECTING` to services that declared it; from now on any input
    /// is answered `QUITTING` and its connection closed.
    pub(crate) fn begin_stop(&mut self) {
        tracing::info!("daemon stopping");
        self.stopping = true;
        let m = replies::notification(&self.node, "DISCONNECTING");
        self.broadcast_msg(&m, "DISCONNECTING");
        self.peers_stop();
    }

    /// Answers `QUITTING` and closes (input during the stop).
    pub(crate) fn quitting(&mut self, id: ConnId) {
        let m = replies::notification(&self.node, "QUITTING");
        self.send(id, &m);
        self.close(id, "daemon stopping");
    }

    /// Connection `id` sent a complete valid line: its `first_line_timeout` stops.
    pub(crate) fn proven(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            if !c.proven {
                c.proven = true;
                c.handles.proven.cancel();
            }
        }
    }

    /// The registered name of a connection.
    pub(crate) fn name_of(&self, id: ConnId) -> Option<Arc<str>> {
        self.conns.get(&id).and_then(|c| c.name.clone())
    }

    /// Queues `msg` (serialized, `\n`-terminated) for connection `id`.
    pub(crate) fn send(&mut self, id: ConnId, msg: &WireMessage) {
        self.scratch.clear();
        if let Err(e) = serialize(msg, &mut self.scratch) {
            tracing::error!(error = %e, command = %msg.command, "cannot serialize daemon message");
            return;
        }
        self.scratch.put_u8(b'\n');
        let line = self.scratch.split();
        self.push(id, &line);
    }

    /// Queues raw bytes (whole lines) for connection `id`.
    pub(crate) fn push(&mut self, id: ConnId, bytes: &[u8]) {
        if let Some(c) = self.conns.get_mut(&id) {
            if c.pending.is_empty() {
                self.dirty.push(id);
            }
            c.pending.extend_from_slice(bytes);
        }
    }

    /// Sends `msg` to every connection that declared `command`.
    pub(crate) fn broadcast_msg(&mut self, msg: &WireMessage, command: &str) {
        let mut line = BytesMut::new();
        if serialize(msg, &mut line).is_err() {
            return;
        }
        line.put_u8(b'\n');
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.link.is_none() && c.commands.contains(command))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.push(id, &line);
        }
    }

    /// Hands each dirty connection its batch. A full queue disconnects the slow consumer.
    pub(crate) fn flush(&mut self) {
        while !self.dirty.is_empty() {
            let mut slow = Vec::new();
            for id in std::mem::take(&mut self.dirty) {
                let Some(c) = self.conns.get_mut(&id) else {
                    continue;
                };
                if c.pending.is_empty() {
                    continue;
                }
                if c.sniff.is_some() {
                    self.flush_sniffer(id);
                    continue;
                }
                let n = c.pending.iter().filter(|&&b| b == b'\n').count();
                let to_service = c.link.is_none();
                match c.handles.try_send(c.pending.split().freeze()) {
                    Ok(()) if to_service => Stats::add(&self.stats.lines_routed, n as u64),
                    Ok(()) => {}
                    Err(QueueError::Full) => slow.push(id),
                    Err(QueueError::Closed) => {}
                }
            }
            for id in slow {
                Stats::bump(&self.stats.slow_consumers_disconnected);
                if let Some(suppressed) = self.stats.logs.allow(Gate::SlowConsumer) {
                    tracing::warn!(
                        conn = id,
                        suppressed,
                        "outbound queue full: slow consumer disconnected"
                    );
                }
                if let Some(c) = self.conns.get(&id) {
                    c.handles.abort_writer.cancel();
                }
                self.close(id, "slow consumer");
            }
        }
    }

    /// Removes a connection: its queued output is flushed by its writer (unless aborted),
    /// its reader stopped, and a registered service is announced down.
    pub(crate) fn close(&mut self, id: ConnId, why: &str) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        // What it sent while held back goes with it.
        self.held_back.remove(&id);
        tracing::debug!(conn = id, peer = %c.peer, name = ?c.name, why, "connection closed");
        self.stats.gauges.connections[c.kind.index()].fetch_sub(1, Ordering::Relaxed);
        if !c.pending.is_empty() {
            let _ = c.handles.try_send(c.pending.split().freeze());
        }
        c.handles.stop_reader.cancel();
        if self.loadavg.listeners.contains(&id) {
            self.loadavg_forget(id);
        }
        if c.sniff.is_some() {
            self.sniffers.retain(|s| *s != id);
            tracing::info!(conn = id, "sniffer detached");
        }
        if let Some(name) = c.name.take() {
            self.names.remove(&name);
            let now = replies::unix_now();
            if self.down.len() >= MAX_DOWN_REMEMBERED {
                self.down.clear();
            }
            self.down.insert(name.to_string(), (c.up_since, now));
            tracing::info!(service = %name, why, "service down");
            let m = replies::status_down(&self.node, &name, c.up_since, now);
            self.broadcast_msg(&m, "STATUS");
            self.services_changed();
        }
        if let Some(link) = c.link.take() {
            self.link_closed(id, link);
        }
    }

    /// Expires cached messages; `SERVICE_UNAVAILABLE` to senders that asked for `reply`.
    pub(crate) fn expire(&mut self, now: Instant) {
        for e in self.cache.expire(now) {
            Stats::bump(&self.stats.cache_expired);
            tracing::info!(service = %e.service, command = %e.command, "cached message expired");
            if let (true, Some(sender)) = (e.reply, e.sender.as_deref()) {
                let m = replies::service_unavailable(
                    &self.node,
                    sender,
                    &e.service,
                    &e.command,
                    e.comms_id.as_deref(),
                );
                match sender.split_once(':') {
                    Some((node, svc)) => {
                        let (node, svc) = (node.to_owned(), svc.to_owned());
                        self.send_to_origin(&node, &svc, m);
                    }
                    None => self.send_to_name(sender, &m),
                }
            }
        }
    }

    /// Sends to the live service `name`, if any.
    pub(crate) fn send_to_name(&mut self, name: &str, msg: &WireMessage) {
        if let Some(&id) = self.names.get(name) {
            self.send(id, msg);
        } else {
            tracing::debug!(to = name, command = %msg.command, "recipient gone, message dropped");
        }
    }
}
