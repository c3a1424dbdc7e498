//! The socket side of daemon-to-daemon links (docs/PROTOCOL.md §2.6): the peer listener, the
//! permanent outgoing links ("dialers") and the short-lived `GOSSIP` links.
//!
//! A peer link is an ordinary stream connection (`conn.rs` reader and writer) of kind
//! [`ConnKind::PeerIn`] or [`ConnKind::PeerOut`]; everything it carries is handled by the
//! router (handshake, link state, relaying: `peers.rs`, `state.rs`, `relay.rs`). This
//! module only opens sockets:
//! - the daemon's one **accept loop** (`listen.rs`) on the peer listener (`remote_listen`),
//!   admitting within a semaphore of
//!   `max_links` + [`PENDING_EXTRA`] sockets (the router refuses a `CONNECT` beyond
//!   `max_links` with a bare `REFUSE`, as the stock daemon);
//! - one **dialer** per neighbour whose address is smaller than ours (the stock rule: the
//!   larger address connects): connect, run the link until it ends, pause per the retry
//!   schedule (reset once a link was accepted; a `REFUSE` sets a longer pause), repeat until
//!   the daemon stops;
//! - one **gossip** task per neighbour whose address is larger: sends
//!   `GOSSIP my_address=<ours>` until answered `RECEIVED` (with or without a sent-from stamp:
//!   the stock daemon answers `<its_name:communicatord RECEIVED`), so that the neighbour dials us.
//!
//! With `PeerConfig::tls`, every one of these sockets is wrapped in mutual TLS
//! (`crate::tls::PeerTlsContext`) before a line crosses it: accepted sockets in their own task
//! (a silent or plain peer never holds up the accept loop), dialled ones before `CONNECT`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::conn::{self, ConnCtx};
use crate::event::{ConnKind, Origin};
use crate::listen::accept_loop;
use crate::stats::Stats;
use crate::tls::PeerTlsContext;

/// Sockets accepted beyond `max_links` (handshakes in progress, gossip links).
pub(crate) const PENDING_EXTRA: usize = 16;
/// Bound on one TCP connect or one gossip exchange.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the peer tasks share (cheap clones).
#[derive(Debug, Clone)]
pub(crate) struct PeerNet {
    pub ctx: ConnCtx,
    pub next_id: Arc<AtomicU64>,
    pub permits: Arc<Semaphore>,
    pub retry: Arc<[Duration]>,
    /// Our announced peer address.
    pub my_address: SocketAddr,
    /// Mutual TLS on every link (and gossip), when configured.
    pub tls: Option<Arc<PeerTlsContext>>,
    pub stats: Arc<Stats>,
    /// Never start a task (dialer, gossip): the fuzz harness (`crate::fuzzing`) drives the
    /// router without sockets or runtime. `false` in the daemon.
    pub offline: bool,
}

/// The router's controls on one dialer.
#[derive(Debug, Default)]
pub(crate) struct DialState {
    /// Pause before the next attempt, in ms, set by the router on `REFUSE` (0: schedule).
    pub refused_pause_ms: AtomicU64,
    /// Set by the router when the link was accepted (the schedule restarts).
    pub accepted: AtomicBool,
    /// Stops this dialer for good.
    pub stop: CancellationToken,
}

impl PeerNet {
    fn pause(&self, attempt: usize) -> Duration {
        let i = attempt.min(self.retry.len().saturating_sub(1));
        self.retry.get(i).copied().unwrap_or(Duration::from_secs(1))
    }

    /// Serves the peer listener until the daemon stops.
    pub(crate) async fn run_accept(self, listener: TcpListener) {
        accept_loop(&listener, "peer", &self.ctx.shutdown, |stream, peer| {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                if let Some(suppressed) = self.stats.logs.allow(crate::ratelog::Gate::Refused) { tracing::warn!(%peer, suppressed, "peer connection refused: too many sockets"); }
                return;
            };
            let _ = stream.set_nodelay(true);
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let origin = Origin {
                kind: ConnKind::PeerIn,
                peer: peer.to_string(),
                uid: None,
            };
            match &self.tls {
                None => {
                    let (r, w) = stream.into_split();
                    self.ctx
                        .tracker
                        .spawn(conn::run(id, origin, r, w, self.ctx.clone(), permit));
                }
                // The handshake runs in the link's own task: a silent or plain-text
                // peer never holds up the accept loop (bounded by the TLS timeout).
                Some(tls) => {
                    let (tls, net) = (tls.clone(), self.clone());
                    self.ctx.tracker.spawn(async move {
                        match tls.accept(stream).await {
                            Ok((stream, who)) => {
                                Stats::bump(&net.stats.tls_handshakes);
                                tracing::debug!(%peer, peer_name = %who.name, "peer TLS link accepted");
                                let (r, w) = tokio::io::split(stream);
                                conn::run(id, origin, r, w, net.ctx.clone(), permit).await;
                            }
                            Err(e) => {
                                Stats::bump(&net.stats.tls_handshake_failures);
                                if let Some(suppressed) = net.stats.logs.allow(crate::ratelog::Gate::TlsHandshake) { tracing::warn!(%peer, error = %e, suppressed, "peer link refused: TLS"); }
                            }
                        }
                    });
                }
            }
        })
        .await;
    }

    /// Starts the permanent link to `addr`.
    pub(crate) fn spawn_dialer(&self, addr: SocketAddr) -> Arc<DialState> {
        let state = Arc::new(DialState::default());
        if self.offline {
            return state;
        }
        self.ctx
            .tracker
            .spawn(self.clone().run_dialer(addr, state.clone()));
        state
    }

    async fn run_dialer(self, addr: SocketAddr, state: Arc<DialState>) {
        let mut attempt = 0usize;
        let shutdown = self.ctx.shutdown.clone();
        loop {
            if shutdown.is_cancelled() || state.stop.is_cancelled() {
                return;
            }
            let connected = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = state.stop.cancelled() => return,
                c = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)) => c,
            };
            match connected {
                Ok(Ok(stream)) => {
                    let permit = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        p = self.permits.clone().acquire_owned() => p,
                    };
                    let Ok(permit) = permit else { return };
                    let _ = stream.set_nodelay(true);
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%addr, conn = id, "peer link connected");
                    let origin = Origin {
                        kind: ConnKind::PeerOut,
                        peer: addr.to_string(),
                        uid: None,
                    };
                    match &self.tls {
                        None => {
                            let (r, w) = stream.into_split();
                            conn::run(id, origin, r, w, self.ctx.clone(), permit).await;
                        }
                        Some(tls) => match tls.connect(stream, None).await {
                            Ok((stream, who)) => {
                                Stats::bump(&self.stats.tls_handshakes);
                                tracing::debug!(%addr, peer_name = %who.name, "peer TLS link up");
                                let (r, w) = tokio::io::split(stream);
                                conn::run(id, origin, r, w, self.ctx.clone(), permit).await;
                            }
                            Err(e) => {
                                Stats::bump(&self.stats.tls_handshake_failures);
                                tracing::warn!(%addr, error = %e, "peer link not established: TLS");
                            }
                        },
                    }
                    if state.accepted.swap(false, Ordering::Relaxed) {
                        attempt = 0;
                    }
                }
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "peer connect failed"),
                Err(_) => tracing::debug!(%addr, "peer connect timed out"),
            }
            let refused = state.refused_pause_ms.swap(0, Ordering::Relaxed);
            let pause = if refused > 0 {
                Duration::from_millis(refused)
            } else {
                self.pause(attempt)
            };
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = state.stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Sends `GOSSIP my_address=<ours>` to `addr` until it answers `RECEIVED`.
    pub(crate) fn spawn_gossip(&self, addr: SocketAddr) {
        if self.offline {
            return;
        }
        self.ctx.tracker.spawn(self.clone().run_gossip(addr));
    }

    async fn run_gossip(self, addr: SocketAddr) {
        let shutdown = self.ctx.shutdown.clone();
        let mut attempt = 0usize;
        loop {
            let r = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout(CONNECT_TIMEOUT, gossip_once(addr, self.my_address, self.tls.as_deref())) => r,
            };
            match r {
                Ok(Ok(())) => {
                    tracing::debug!(%addr, "gossip received");
                    return;
                }
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "gossip failed"),
                Err(_) => tracing::debug!(%addr, "gossip timed out"),
            }
            let pause = self.pause(attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

async fn gossip_once(
    addr: SocketAddr,
    mine: SocketAddr,
    tls: Option<&PeerTlsContext>,
) -> std::io::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    match tls {
        None => gossip_over(stream, mine).await,
        Some(tls) => {
            let (stream, _) = tls
                .connect(stream, None)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            gossip_over(stream, mine).await
        }
    }
}

async fn gossip_over<S>(stream: S, mine: SocketAddr) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (r, mut w) = tokio::io::split(stream);
    w.write_all(format!("GOSSIP my_address={mine}\n").as_bytes())
        .await?;
    let mut reader = BufReader::new(r.take(4096));
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        // Parsed with the codec: a stock daemon stamps its answer
        // (`<cxxnode:communicatord RECEIVED`); any stamp is fine, the command decides.
        let received = cd_wire::parse(line.trim_end_matches(['\r', '\n']).as_bytes())
            .is_ok_and(|m| m.command == "RECEIVED");
        if received {
            let _ = w.shutdown().await;
            return Ok(());
        }
    }
}
