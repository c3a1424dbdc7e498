//! The body of the `peer_link` fuzz target (`fuzz/`, docs/HARDENING.md "Fuzzing"), feature
//! `fuzzing` (not a stable API): arbitrary bytes fed, as the lines of peer connections, into
//! the daemon's real router — the handshake (`CONNECT` / `ACCEPT` / `REFUSE`), `GOSSIP`,
//! `NODE_STATE`, `DISCONNECT`, relayed unicasts and broadcasts — before and after a handshake,
//! from comms and stock peers. The fuzz target is a wrapper around [`peer_link`], and
//! `tests/fuzz_corpus.rs` replays its corpus through the same function.
//!
//! No socket, no runtime: the router (node `vm`, peer address `10.0.0.5:4040`, one configured
//! neighbour `10.0.0.3:4040`) is built as the daemon builds it but with an offline
//! [`PeerNet`] (learned neighbours start no dialer or gossip task), and driven synchronously
//! with the events the connection tasks would send it. Each connection's outbound queue is
//! a real bounded queue (16 batches, 64 KiB; 1 MiB for the daemon) drained by the harness
//! after every step, unless the step stalled it (then the router finds it full and
//! disconnects the slow consumer). Input chunks are framed as the reader frames them (whole
//! lines; a line over `max_line` becomes `TooLong`).
//!
//! Connections at start: 0 = a local service (TCP), 1 = an incoming peer link from
//! `10.0.0.2:50000`, 2 = an outgoing one to the neighbour (it has sent `CONNECT`).
//!
//! Input layout: byte 0 configures the daemon: bits 0-1 `max_line` (65536, 4096, 512, 160),
//! bit 2 `plain_peers` = 10.0.0.2 and 10.0.0.3 (else any address, as `insecure_peers`), bit 3
//! `allow_loopback_peers`, bits 4-5 `max_links` (1, 2, 4, 100), bit 6 the local service
//! registers as `local` and declares its commands. Then steps, each a tag byte `t`, with
//! `k = t >> 3` and connection `k % count`:
//! - `t % 8` in 0..=3: the next two bytes (little-endian) are a length, then that many bytes
//!   (fewer at the end of the input) arrive on the connection;
//! - 4: a peer connection opens: `k % 2` incoming / outgoing, address `k / 2 % 8` of a table
//!   (allowed, not in `plain_peers`, loopback, public, IPv6, unparsable); at most 8 in all;
//! - 5: the connection's reader ends (EOF);
//! - 6: time: `k % 8` 0..=3 fires the cluster timer 60 ms, 2.1 s, 31 s or 101 s later (a
//!   virtual clock: route recomputation, held lines, re-announcement, aging); 4 expires the
//!   cache 61 s later; 5 stops the daemon; 6, 7 nothing;
//! - 7: the connection stops (or resumes) reading its queue.
//!
//! Properties checked after every step (beyond "no panic"): the round's output was all
//! handed over (no pending buffer, nothing dirty); no connection has more than its byte
//! bound queued, the daemon not more than its budget; every batch is whole lines; our
//! `CONNECT` / `ACCEPT` never exceed `max_line` (the peer could not read them); the up links
//! match the connections (each named link is an up peer connection of that name, and every
//! up peer connection is the link of its name), incoming ones at most `max_links`;
//! registered names match their connections; the held lines (and their byte count), cache,
//! broadcast ids, learned neighbours and link-state database stay within their bounds;
//! per-link budgets and sniffers only for open connections. At the end, every connection
//! closed: no connection, link or name left.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::routes::MAX_NODES;
use crate::cluster::{Cluster, LinkPhase, PeerNet, MAX_LEARNED_NEIGHBORS, MAX_SEEN, PENDING_EXTRA};
use crate::config::{AdminRules, CacheLimits};
use crate::conn::{ConnCtx, Queued};
use crate::event::{ConnHandles, ConnId, ConnKind, Event};
use crate::router::{Router, RouterConfig};
use crate::stats::Stats;

const NODE: &str = "vm";
const MY_ADDRESS: &str = "10.0.0.5:4040";
const NEIGHBOR: &str = "10.0.0.3:4040";
const MAX_LINES: [usize; 4] = [65_536, 4096, 512, 160];
const MAX_LINKS: [usize; 4] = [1, 2, 4, 100];
/// Peer addresses of connections opened by a step (`PeerOut`: the neighbour dialed).
const ADDRESSES: [&str; 8] = [
    "10.0.0.2:50001",
    "10.0.0.3:4040",
    "10.0.0.4:4040",
    "127.0.0.1:4041",
    "8.8.8.8:4040",
    "[::1]:4040",
    "192.168.1.7:4040",
    "unix uid=0",
];
const QUEUE_BATCHES: usize = 16;
const QUEUE_BYTES: usize = 64 * 1024;
const MEMORY_BUDGET: usize = 1 << 20;
const MAX_CONNS: usize = 8;
const CACHE_MESSAGES: usize = 64;
/// What the local service declares (bit 6 of the configuration byte).
const LOCAL_COMMANDS: &str = "CLUSTER_COMPLETE,CLUSTER_DOWN,CLUSTER_INCOMPLETE,CLUSTER_UP,\
                              DISCONNECTED,HANGUP,NEW_REMOTE_CONNECTION,PING,STATUS";

/// Frames a connection's bytes as its reader does (`conn.rs`): whole lines, oversize ones
/// discarded and reported.
#[derive(Debug, Default)]
struct Framer {
    buf: Vec<u8>,
    discarding: Option<usize>,
}

impl Framer {
    fn feed(&mut self, id: ConnId, chunk: &[u8], max_line: usize, out: &mut Vec<Event>) {
        self.buf.extend_from_slice(chunk);
        if let Some(dropped) = self.discarding {
            match memchr::memchr(b'\n', &self.buf) {
                Some(i) => {
                    self.buf.drain(..=i);
                    self.discarding = None;
                    out.push(Event::TooLong {
                        id,
                        length: dropped + i,
                    });
                }
                None => {
                    self.discarding = Some(dropped + self.buf.len());
                    self.buf.clear();
                    return;
                }
            }
        }
        if let Some(k) = memchr::memrchr(b'\n', &self.buf) {
            let data = Bytes::from(self.buf.drain(..=k).collect::<Vec<u8>>());
            out.push(Event::Input { id, data });
        }
        if self.buf.len() > max_line {
            self.discarding = Some(self.buf.len());
            self.buf.clear();
        }
    }
}

/// One connection as its tasks would see it.
#[derive(Debug)]
struct FakeConn {
    id: ConnId,
    peer: bool,
    rx: mpsc::Receiver<Queued>,
    framer: Framer,
    stalled: bool,
}

#[derive(Debug)]
struct Harness {
    router: Router,
    conns: Vec<FakeConn>,
    total: Arc<AtomicUsize>,
    max_line: usize,
    neighbors_at_start: usize,
    /// Virtual time ahead of the clock.
    skew: Duration,
    next_id: ConnId,
}

impl Harness {
    fn new(config: u8) -> Self {
        let max_line = MAX_LINES[usize::from(config & 3)];
        let max_links = MAX_LINKS[usize::from(config >> 4 & 3)];
        let ip = |s: &str| s.parse().unwrap_or_else(|_| unreachable!("{s}"));
        let plain_peers = (config & 4 != 0).then(|| vec![ip("10.0.0.2"), ip("10.0.0.3")]);
        let stats = Arc::new(Stats::default());
        let shutdown = CancellationToken::new();
        let cfg = RouterConfig {
            node: NODE.into(),
            my_address: "127.0.0.1:4040".into(),
            public_ip: None,
            max_line,
            admin: AdminRules::default(),
            cache: CacheLimits {
                max_messages: CACHE_MESSAGES,
                max_bytes: 64 * 1024,
                default_ttl: Duration::from_secs(60),
            },
            shutdown_grace: Duration::from_millis(1),
            allow_loopback_peers: config & 8 != 0,
            plain_peers,
            peer_retry_max: Duration::from_secs(60),
        };
        let total = Arc::new(AtomicUsize::new(0));
        // The router's inbox is never read: offline, no task sends to it.
        let (router_tx, _) = mpsc::channel(1);
        let ctx = ConnCtx {
            router: router_tx,
            tracker: TaskTracker::new(),
            shutdown: shutdown.clone(),
            max_line,
            outbound_queue: QUEUE_BATCHES,
            flush_timeout: Duration::from_millis(1),
            first_line_timeout: Duration::from_secs(10),
            outbound_queue_bytes: QUEUE_BYTES,
            memory_budget: MEMORY_BUDGET,
            queued_total: total.clone(),
            stats: stats.clone(),
        };
        let sock = |s: &str| s.parse().unwrap_or_else(|_| unreachable!("{s}"));
        let net = PeerNet {
            ctx,
            next_id: Arc::new(AtomicU64::new(1000)),
            permits: Arc::new(Semaphore::new(max_links + PENDING_EXTRA)),
            retry: Arc::from(vec![Duration::from_secs(1)]),
            my_address: sock(MY_ADDRESS),
            tls: None,
            stats: stats.clone(),
            offline: true,
        };
        let mut cluster = Cluster::new(
            NODE,
            Some(net),
            MY_ADDRESS.into(),
            max_links,
            vec![sock(NEIGHBOR)],
        );
        // The first route computation may run at once (later ones wait for the pause).
        if let Some(t) = cluster.last_recompute.checked_sub(Duration::from_secs(1)) {
            cluster.last_recompute = t;
        }
        let mut router = Router::new(cfg, stats, shutdown).with_cluster(cluster);
        router.cluster_start();
        let neighbors_at_start = router.cluster.neighbors.len();
        let mut h = Self {
            router,
            conns: Vec::new(),
            total,
            max_line,
            neighbors_at_start,
            skew: Duration::ZERO,
            next_id: 1,
        };
        h.open(ConnKind::Tcp, "127.0.0.1:50000");
        h.open(ConnKind::PeerIn, "10.0.0.2:50000");
        h.open(ConnKind::PeerOut, NEIGHBOR);
        if config & 64 != 0 {
            let hello =
                format!("REGISTER service=local;version=1\nCOMMANDS list={LOCAL_COMMANDS}\n");
            h.input(0, hello.as_bytes());
        }
        h.round();
        h
    }

    fn open(&mut self, kind: ConnKind, peer: &str) {
        let id = self.next_id;
        self.next_id += 1;
        let (out, rx) = mpsc::channel(QUEUE_BATCHES);
        let handles = ConnHandles::bounded(out, QUEUE_BYTES, self.total.clone(), MEMORY_BUDGET);
        self.router.on_event(Event::Opened {
            id,
            kind,
            peer: peer.to_owned(),
            uid: None,
            handles,
        });
        self.conns.push(FakeConn {
            id,
            peer: kind.is_peer(),
            rx,
            framer: Framer::default(),
            stalled: false,
        });
    }

    fn input(&mut self, k: usize, chunk: &[u8]) {
        let c = &mut self.conns[k];
        if !self.router.conns.contains_key(&c.id) {
            return; // its reader was stopped
        }
        let mut events = Vec::new();
        c.framer.feed(c.id, chunk, self.max_line, &mut events);
        for ev in events {
            self.router.on_event(ev);
        }
    }

    fn step(&mut self, tag: u8, data: &mut &[u8]) {
        let k = usize::from(tag >> 3);
        let conn = k % self.conns.len();
        match tag % 8 {
            0..=3 => {
                let len = match data {
                    [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
                    _ => data.len(),
                };
                *data = data.get(2..).unwrap_or_default();
                let (chunk, rest) = data.split_at(len.min(data.len()));
                *data = rest;
                self.input(conn, chunk);
            }
            4 if self.conns.len() < MAX_CONNS => {
                let kind = if k % 2 == 0 {
                    ConnKind::PeerIn
                } else {
                    ConnKind::PeerOut
                };
                self.open(kind, ADDRESSES[k / 2 % ADDRESSES.len()]);
            }
            4 => {}
            5 => {
                let id = self.conns[conn].id;
                self.router.on_event(Event::Closed { id });
            }
            6 => match k % 8 {
                t @ 0..=3 => {
                    self.skew += [
                        Duration::from_millis(60),
                        Duration::from_millis(2100),
                        Duration::from_secs(31),
                        Duration::from_secs(101),
                    ][t];
                    self.router
                        .cluster_timer(std::time::Instant::now() + self.skew);
                }
                4 => {
                    self.skew += Duration::from_secs(61);
                    self.router.expire(tokio::time::Instant::now() + self.skew);
                }
                5 if !self.router.stopping => self.router.begin_stop(),
                _ => {}
            },
            _ => self.conns[conn].stalled ^= true,
        }
        self.round();
    }

    /// Ends a round as the router's loop does (flush), then plays the connection tasks:
    /// writers drain their queue (unless stalled), readers of connections the router
    /// closed end; then checks the properties.
    fn round(&mut self) {
        self.router.flush();
        let mut closed = Vec::new();
        for c in &mut self.conns {
            if !c.stalled {
                while let Ok(batch) = c.rx.try_recv() {
                    check_batch(batch.bytes(), c.peer, self.max_line);
                }
            }
            if !self.router.conns.contains_key(&c.id) {
                closed.push(c.id);
            }
        }
        for id in closed {
            self.router.on_event(Event::Closed { id });
        }
        self.router.flush();
        self.check();
    }

    fn check(&self) {
        let r = &self.router;
        assert!(r.dirty.is_empty(), "dirty connections after a flush");
        for (id, c) in &r.conns {
            assert!(c.pending.is_empty(), "conn {id}: output left pending");
            let queued = c.handles.queued_bytes();
            assert!(queued <= QUEUE_BYTES, "conn {id}: {queued} bytes queued");
        }
        let total = self.total.load(Ordering::Relaxed);
        assert!(total <= MEMORY_BUDGET, "{total} bytes queued in all");
        for (name, id) in &r.cluster.links {
            let link = r.conns.get(id).and_then(|c| c.link.as_ref());
            let ok =
                link.is_some_and(|l| l.phase == LinkPhase::Up && l.name.as_ref() == Some(name));
            assert!(ok, "link {name} -> conn {id}, which is {link:?}");
        }
        for (id, c) in &r.conns {
            assert_eq!(c.link.is_some(), c.kind.is_peer(), "conn {id}");
            if let Some(l) = c.link.as_ref().filter(|l| l.phase == LinkPhase::Up) {
                let name = l.name.as_ref();
                let listed = name.and_then(|n| r.cluster.links.get(n));
                assert_eq!(listed, Some(id), "up conn {id} ({name:?}) is not its link");
            }
        }
        // `max_links` bounds the links a `CONNECT` may add (outgoing ones count, not bounded).
        let incoming = r
            .cluster
            .links
            .values()
            .filter(|id| r.conns.get(id).is_some_and(|c| c.kind == ConnKind::PeerIn));
        assert!(
            incoming.count() <= r.cluster.max_links,
            "incoming links over max_links"
        );
        for (name, id) in &r.names {
            let named = r.conns.get(id).and_then(|c| c.name.as_ref());
            assert_eq!(named, Some(name), "name {name} -> conn {id}");
        }
        r.cluster.held.assert_bounded();
        assert!(r.cache.len() <= CACHE_MESSAGES, "cache over its bound");
        assert!(
            r.cluster.seen.len() <= MAX_SEEN,
            "broadcast ids over their bound"
        );
        assert!(
            r.cluster.neighbors.len() <= self.neighbors_at_start + MAX_LEARNED_NEIGHBORS,
            "{} neighbours",
            r.cluster.neighbors.len()
        );
        let nodes = r.cluster.routes.all().count();
        assert!(nodes <= MAX_NODES, "{nodes} nodes in the database");
        for id in r.cluster.ns_budget.keys().chain(&r.sniffers) {
            assert!(r.conns.contains_key(id), "state left for closed conn {id}");
        }
    }

    /// Every connection ends (as at the end of a run); the links go down with them.
    fn finish(&mut self) {
        let ids: Vec<ConnId> = self.conns.iter().map(|c| c.id).collect();
        for id in ids {
            self.router.on_event(Event::Closed { id });
        }
        self.round();
        assert!(self.router.conns.is_empty(), "connections left");
        assert!(self.router.cluster.links.is_empty(), "links left");
        assert!(self.router.names.is_empty(), "names left");
    }
}

/// A batch handed to a connection's writer: whole lines; to a peer, our handshake lines
/// (`CONNECT`, `ACCEPT` addressed to no service: not a relayed line) fit `max_line`.
fn check_batch(batch: &[u8], peer: bool, max_line: usize) {
    assert!(batch.ends_with(b"\n"), "batch of partial lines");
    if !peer {
        return;
    }
    for line in batch[..batch.len() - 1].split(|&b| b == b'\n') {
        if let Ok(h) = cd_wire::peek_route(line) {
            let ours = h.server.is_empty() && h.service.is_empty();
            if ours && matches!(h.command, "CONNECT" | "ACCEPT") {
                assert!(
                    line.len() <= max_line,
                    "{} line of {} bytes, max_line {max_line}",
                    h.command,
                    line.len()
                );
            }
        }
    }
}

/// The `peer_link` fuzz target's body (module docs); panics when a property fails.
pub fn peer_link(data: &[u8]) {
    let Some((&config, mut data)) = data.split_first() else {
        return;
    };
    let mut h = Harness::new(config);
    while let Some((&tag, rest)) = data.split_first() {
        data = rest;
        h.step(tag, &mut data);
    }
    h.finish();
}
