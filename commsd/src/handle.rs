//! [`Daemon::start`] and the [`DaemonHandle`] it returns.

use crate::event::Event;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::Cluster;
use crate::cluster::{self, PeerNet};
use crate::config::DaemonConfig;
use crate::conn::ConnCtx;
use crate::error::DaemonError;
use crate::listen::{self, Acceptor};
use crate::router::{Router, RouterConfig};
use crate::secure;
use crate::stats::{Stats, StatsSnapshot};
use cd_wire::is_valid_name;

/// Capacity of the router's inbox (events, each one read chunk or one datagram).
const INBOX: usize = 4096;

/// Entry point: `Daemon::start(config).await` runs a daemon inside the current tokio runtime.
#[derive(Debug, Clone, Copy)]
pub struct Daemon;

/// A running daemon. Dropping it requests a stop (without waiting); prefer
/// [`DaemonHandle::shutdown`], which waits until every task is done.
#[derive(Debug)]
pub struct DaemonHandle {
    name: String,
    my_address: String,
    tcp_addr: Option<SocketAddr>,
    udp_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    peer_addr: Option<SocketAddr>,
    unix_path: Option<PathBuf>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    router: mpsc::Sender<Event>,
}

/// Asks a running daemon for its cluster map (cheap to clone; for the server's web view).
#[derive(Debug, Clone)]
pub struct ClusterMapSource(mpsc::Sender<Event>);

impl ClusterMapSource {
    /// The map now; `None` once the daemon stopped.
    pub async fn get(&self) -> Option<crate::ClusterMap> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.0.send(Event::ClusterMap { reply }).await.ok()?;
        rx.await.ok()
    }
}

impl Daemon {
    /// Binds every configured listener, then starts the router and the accept loops on the
    /// current runtime. Returns once everything is bound (addresses are in the handle).
    pub async fn start(cfg: DaemonConfig) -> Result<DaemonHandle, DaemonError> {
        if !is_valid_name(&cfg.name) {
            return Err(DaemonError::InvalidName(cfg.name));
        }
        cfg.validate()?;
        let tcp = match cfg.tcp {
            Some(a) => Some(listen::bind_tcp(a).await?),
            None => None,
        };
        let udp = match cfg.udp {
            Some(a) => Some(listen::bind_udp(a).await?),
            None => None,
        };
        let tls = match &cfg.tls {
            Some(t) => Some(secure::bind_tls(t).await?),
            None => None,
        };
        let unix = match &cfg.unix_path {
            Some(p) => Some(listen::bind_unix(p)?),
            None => None,
        };
        if let Some(why) = cfg.peers.refusal() {
            return Err(DaemonError::Config(why.to_owned()));
        }
        if cfg.peers.listen.is_some() && cfg.peers.tls.is_none() {
            if cfg.peers.insecure {
                tracing::warn!(
                    "INSECURE PEERS: any host that reaches the peer listener can link without \
                     credentials and inject routes and stamped lines (--insecure-peers)"
                );
            } else {
                tracing::warn!(plain_peers = ?cfg.peers.plain_peers, "plain peer links allowed for these addresses only");
            }
        }
        let peer_listener = match cfg.peers.listen {
            Some(a) => Some(cluster::address::bind(a, cfg.peers.allow_loopback).await?),
            None => None,
        };
        for n in &cfg.peers.neighbors {
            if let Some(why) = cluster::address::refusal(*n, cfg.peers.allow_loopback) {
                return Err(DaemonError::Config(format!("neighbour {n}: {why}")));
            }
        }
        let peer_addr = peer_listener.as_ref().and_then(|l| l.local_addr().ok());
        let mut admin = cfg.admin.clone();
        if admin.unix_admin_uids.is_empty() {
            // Root and whoever owns the socket we just bound: the daemon's own user.
            admin.unix_admin_uids.push(0);
            if let Some(p) = &cfg.unix_path {
                use std::os::unix::fs::MetadataExt;
                if let Ok(m) = std::fs::metadata(p) {
                    admin.unix_admin_uids.push(m.uid());
                }
            }
        }
        let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
        let udp_addr = udp.as_ref().and_then(|s| s.local_addr().ok());
        let tls_addr = tls.as_ref().and_then(|(l, _)| l.local_addr().ok());
        let my_address = cfg
            .my_address
            .clone()
            .or_else(|| peer_addr.map(|bound| cfg.peers.my_address.unwrap_or(bound).to_string()))
            .or_else(|| tcp_addr.map(|a| a.to_string()))
            .unwrap_or_else(|| "127.0.0.1:4040".to_owned());

        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let stats = Arc::new(Stats::default());
        let (router_tx, inbox) = mpsc::channel(INBOX);
        let router = Router::new(
            RouterConfig {
                node: cfg.name.clone(),
                my_address: my_address.clone(),
                public_ip: cfg.public_ip.clone(),
                max_line: cfg.max_line,
                admin,
                cache: cfg.cache.clone(),
                shutdown_grace: cfg.shutdown_grace,
                allow_loopback_peers: cfg.peers.allow_loopback,
                plain_peers: (cfg.peers.tls.is_none() && !cfg.peers.insecure)
                    .then(|| cfg.peers.plain_peers.clone()),
                peer_retry_max: cfg.peers.retry.last().copied().unwrap_or_default(),
            },
            stats.clone(),
            shutdown.clone(),
        );
        let ctx = ConnCtx {
            router: router_tx.clone(),
            tracker: tracker.clone(),
            shutdown: shutdown.clone(),
            max_line: cfg.max_line,
            outbound_queue: cfg.outbound_queue,
            flush_timeout: cfg.flush_timeout,
            first_line_timeout: cfg.first_line_timeout,
            outbound_queue_bytes: cfg.outbound_queue_bytes,
            memory_budget: cfg.memory_budget,
            queued_total: stats.queue_bytes.clone(),
            stats: stats.clone(),
        };
        let next_id = Arc::new(AtomicU64::new(1));
        let router = match peer_addr {
            Some(bound) => {
                let mine = cfg.peers.my_address.unwrap_or(bound);
                let tls = match &cfg.peers.tls {
                    Some(t) => Some(Arc::new(t.load()?)),
                    None => None,
                };
                let net = PeerNet {
                    tls,
                    stats: stats.clone(),
                    ctx: ctx.clone(),
                    next_id: next_id.clone(),
                    permits: Arc::new(Semaphore::new(
                        cfg.peers.max_links.max(1) + cluster::PENDING_EXTRA,
                    )),
                    retry: cfg.peers.retry.clone().into(),
                    my_address: mine,
                    offline: false,
                };
                if let Some(l) = peer_listener {
                    tracker.spawn(net.clone().run_accept(l));
                }
                let mut neighbors = cfg.peers.neighbors.clone();
                if let Some(dir) = &cfg.peers.state_dir {
                    for a in cluster::persist::load_neighbors(dir) {
                        if !neighbors.contains(&a) {
                            neighbors.push(a);
                        }
                    }
                }
                let mut c = Cluster::new(
                    &cfg.name,
                    Some(net),
                    mine.to_string(),
                    cfg.peers.max_links,
                    neighbors,
                );
                c.state_dir = cfg.peers.state_dir.clone();
                router.with_cluster(c)
            }
            None => router,
        };
        tracker.spawn(router.run(inbox));
        let acceptor = Acceptor {
            ctx,
            stats: stats.clone(),
            permits: Arc::new(Semaphore::new(cfg.max_connections)),
            next_id,
        };
        // Each listener has its own `max_connections` budget (a flood on one cannot take
        // another's slots).
        let own_budget = || Acceptor {
            permits: Arc::new(Semaphore::new(cfg.max_connections)),
            ..acceptor.clone()
        };
        if let Some(l) = tcp {
            tracker.spawn(own_budget().run_tcp(l));
        }
        if let (Some((l, acceptor_tls)), Some(t)) = (tls, &cfg.tls) {
            tracker.spawn(own_budget().run_tls(l, acceptor_tls, t.clone()));
        }
        if let (Some(l), Some(p)) = (unix, cfg.unix_path.clone()) {
            tracker.spawn(own_budget().run_unix(l, p));
        }
        if let Some(s) = udp {
            tracker.spawn(listen::run_udp(
                s,
                acceptor,
                cfg.udp_max_datagram,
                cfg.udp_secret.clone(),
            ));
        }
        tracker.close();
        tracing::info!(node = %cfg.name, ?tcp_addr, ?udp_addr, ?tls_addr, ?peer_addr, unix = ?cfg.unix_path, "commsd started");
        Ok(DaemonHandle {
            name: cfg.name,
            my_address,
            tcp_addr,
            udp_addr,
            tls_addr,
            peer_addr,
            unix_path: cfg.unix_path,
            stats,
            shutdown,
            tracker,
            router: router_tx,
        })
    }
}

impl DaemonHandle {
    /// This node's name (`server_name`).
    pub fn node_name(&self) -> &str {
        &self.name
    }

    /// The `my_address` sent in `READY`.
    pub fn my_address(&self) -> &str {
        &self.my_address
    }

    /// The bound loopback TCP address, if listening on TCP.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The bound UDP address, if listening on UDP.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The bound secure (TLS) listener address, if listening on one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The bound peer (daemon-to-daemon) listener address, if clustering.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The Unix socket path, if listening on one.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix_path.as_deref()
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The daemon's Prometheus metrics ([`crate::metrics`]), read at each scrape.
    pub fn metrics(&self) -> crate::metrics::DaemonCollector {
        crate::metrics::DaemonCollector::new(self.stats.clone())
    }

    /// Where to ask for the cluster map while the daemon runs.
    pub fn cluster_map_source(&self) -> ClusterMapSource {
        ClusterMapSource(self.router.clone())
    }

    /// Every live level (connections, services, cache, queue bytes, peers).
    pub fn levels(&self) -> crate::stats::Levels {
        self.stats.levels()
    }

    /// Requests a graceful stop without waiting (see [`DaemonHandle::stopped`]).
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Whether a stop was requested (by [`stop`](Self::stop), `shutdown`, or a `STOP` command).
    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Waits until the daemon has stopped (e.g. after a `STOP` command) and every task ended.
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await;
        self.tracker.wait().await;
    }

    /// Graceful stop: stop accepting, `DISCONNECTING` to services that declared it,
    /// `QUITTING` to whoever still sends, flush outbound queues (bounded), close, and wait.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.wait().await;
    }
}

impl Drop for DaemonHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
