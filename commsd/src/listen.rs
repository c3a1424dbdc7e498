//! Listeners: binding (with the loopback rule and stale-socket handling), the one accept loop
//! every stream listener runs ([`accept_loop`]; TLS in `secure.rs` and peer links in
//! `cluster/net.rs` use it too), the TCP and Unix admission (each listener its own
//! `max_connections` budget),
//! and the UDP receive loop (size, secret, counters).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket, UnixListener};
use tokio::sync::Semaphore;

use crate::conn::{self, ConnCtx};
use crate::error::DaemonError;
use crate::event::{ConnKind, Event, Origin};
use crate::ratelog::{Gate, LogGate};
use crate::stats::Stats;
use cd_wire::{parse_datagram, DatagramError};

/// At most one warning per this interval for each kind of bad datagram.
const UDP_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// What the accept loops share.
#[derive(Debug, Clone)]
pub(crate) struct Acceptor {
    pub ctx: ConnCtx,
    pub stats: Arc<Stats>,
    pub permits: Arc<Semaphore>,
    pub next_id: Arc<AtomicU64>,
}

/// Binds the loopback TCP service listener.
pub(crate) async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    if !addr.ip().is_loopback() {
        return Err(DaemonError::NonLoopbackTcp(addr));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind {
            what: "tcp",
            addr,
            source,
        })
}

/// Binds the UDP signal socket.
pub(crate) async fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, DaemonError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind {
            what: "udp",
            addr,
            source,
        })
}

/// Binds the Unix socket (mode 0660). A stale socket file (nobody answers on it) is replaced;
/// a live one is an error.
pub(crate) fn bind_unix(path: &Path) -> Result<UnixListener, DaemonError> {
    let err = |source| DaemonError::BindUnix {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
    }
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(err(e));
            }
            tracing::info!(path = %path.display(), "replacing stale unix socket");
            std::fs::remove_file(path).map_err(err)?;
            UnixListener::bind(path).map_err(err)?
        }
        Err(e) => return Err(err(e)),
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o660);
        std::fs::set_permissions(path, mode).map_err(err)?;
    }
    Ok(listener)
}

impl Acceptor {
    /// A permit of this listener's `max_connections` budget and a connection id; none left:
    /// counted, logged (gated) and `None` (the caller drops the connection).
    pub(crate) fn admit(&self) -> Option<(u64, tokio::sync::OwnedSemaphorePermit)> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => {
                Stats::bump(&self.stats.connections_accepted);
                Some((self.next_id.fetch_add(1, Ordering::Relaxed), p))
            }
            Err(_) => {
                Stats::bump(&self.stats.connections_refused);
                if let Some(suppressed) = self.stats.logs.allow(Gate::Refused) {
                    tracing::warn!(suppressed, "connection refused: max_connections reached");
                }
                None
            }
        }
    }

    /// Serves the loopback TCP listener until the daemon stops.
    pub(crate) async fn run_tcp(self, listener: TcpListener) {
        accept_loop(&listener, "tcp", &self.ctx.shutdown, |stream, peer| {
            let Some((id, permit)) = self.admit() else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            let origin = Origin {
                kind: ConnKind::Tcp,
                peer: peer.to_string(),
                uid: None,
            };
            let ctx = self.ctx.clone();
            self.ctx
                .tracker
                .spawn(conn::run(id, origin, r, w, ctx, permit));
        })
        .await;
    }

    /// Serves the Unix listener until the daemon stops, then removes the socket file.
    pub(crate) async fn run_unix(self, listener: UnixListener, path: PathBuf) {
        accept_loop(&listener, "unix", &self.ctx.shutdown, |stream, _| {
            let Some((id, permit)) = self.admit() else {
                return;
            };
            let uid = stream.peer_cred().ok().map(|c| c.uid());
            let peer = uid.map_or_else(|| "unix".to_owned(), |u| format!("unix uid={u}"));
            let (r, w) = stream.into_split();
            let origin = Origin {
                kind: ConnKind::Unix,
                peer,
                uid,
            };
            let ctx = self.ctx.clone();
            self.ctx
                .tracker
                .spawn(conn::run(id, origin, r, w, ctx, permit));
        })
        .await;
        drop(listener);
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::debug!(path = %path.display(), error = %e, "cannot remove unix socket");
        }
    }
}

/// A stream listener the accept loop serves.
pub(crate) trait Accept {
    /// An accepted connection.
    type Stream;
    /// Who connected.
    type Peer;
    /// The next connection.
    fn accept(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, Self::Peer)>> + Send;
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;
    type Peer = SocketAddr;
    fn accept(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, Self::Peer)>> + Send {
        TcpListener::accept(self)
    }
}

impl Accept for UnixListener {
    type Stream = tokio::net::UnixStream;
    type Peer = tokio::net::unix::SocketAddr;
    fn accept(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, Self::Peer)>> + Send {
        UnixListener::accept(self)
    }
}

/// **The** accept loop of every stream listener (TCP, Unix, TLS, peer): accepts until
/// `shutdown`, hands each connection to `admit`, and on an accept error (out of file
/// descriptors...) logs it and pauses 50 ms. `admit` applies the listener kind's own
/// connection budget (a semaphore permit, taken without waiting: none left, the connection
/// is closed and counted) and spawns the connection's task; it never blocks the loop.
pub(crate) async fn accept_loop<L: Accept>(
    listener: &L,
    what: &'static str,
    shutdown: &tokio_util::sync::CancellationToken,
    mut admit: impl FnMut(L::Stream, L::Peer),
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => admit(stream, peer),
            Err(e) => {
                tracing::warn!(error = %e, "{what} accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Receives UDP datagrams until the daemon stops: one message each, at most `max_len`
/// bytes, `secret_code` checked and stripped. Bad datagrams are dropped and counted
/// (`udp_dropped` and one of `udp_oversize` / `udp_unsigned` / `udp_unparseable`), and logged
/// with their reason at most once per 5 s per kind (a flood cannot flood the log).
pub(crate) async fn run_udp(
    socket: UdpSocket,
    acceptor: Acceptor,
    max_len: usize,
    secret: Option<String>,
) {
    // One byte more than allowed, so an oversize datagram is detected, not truncated.
    let mut buf = vec![0u8; max_len.saturating_add(1)];
    let gates = [
        LogGate::new(UDP_LOG_INTERVAL),
        LogGate::new(UDP_LOG_INTERVAL),
        LogGate::new(UDP_LOG_INTERVAL),
    ];
    loop {
        let received = tokio::select! {
            _ = acceptor.ctx.shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, peer) = match received {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        Stats::bump(&acceptor.stats.udp_received);
        // Drops by kind: 0 oversize, 1 unsigned, 2 unparseable.
        let parsed = if n > max_len {
            // The OS truncated it to our buffer: its real length is unknown, only "more".
            Err((0, format!("datagram too long: over {max_len} bytes")))
        } else {
            parse_datagram(&buf[..n], max_len, secret.as_deref()).map_err(|e| {
                let kind = match &e {
                    DatagramError::TooLong { .. } => 0,
                    DatagramError::MissingSecret | DatagramError::WrongSecret => 1,
                    _ => 2,
                };
                (kind, e.to_string())
            })
        };
        match parsed {
            Ok(msg) => {
                if acceptor
                    .ctx
                    .router
                    .send(Event::Datagram { msg, peer })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Err((k, reason)) => {
                let stats = &acceptor.stats;
                let (kind, counter) = [
                    ("oversize", &stats.udp_oversize),
                    ("unsigned", &stats.udp_unsigned),
                    ("unparseable", &stats.udp_unparseable),
                ][k];
                Stats::bump(&stats.udp_dropped);
                Stats::bump(counter);
                // Every drop is logged at debug; at warn, one line per kind every interval
                // (with how many were suppressed), so a flood cannot flood the log.
                match gates[k].allow() {
                    Some(suppressed) => {
                        tracing::warn!(%peer, kind, %reason, suppressed, "udp datagram dropped");
                    }
                    None => tracing::debug!(%peer, kind, %reason, "udp datagram dropped"),
                }
            }
        }
    }
}
