//! Listeners: binding (with the loopback rule and stale-socket handling), the TCP and Unix
//! accept loops (connection cap), and the UDP receive loop (size, secret, counters).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket, UnixListener};
use tokio::sync::Semaphore;

use super::conn::{self, ConnCtx};
use super::error::DaemonError;
use super::event::{ConnKind, Event};
use super::stats::Stats;
use crate::codec::parse_datagram;

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
    fn admit(&self) -> Option<(u64, tokio::sync::OwnedSemaphorePermit)> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => {
                Stats::bump(&self.stats.connections_accepted);
                Some((self.next_id.fetch_add(1, Ordering::Relaxed), p))
            }
            Err(_) => {
                Stats::bump(&self.stats.connections_refused);
                tracing::warn!("connection refused: max_connections reached");
                None
            }
        }
    }

    /// Accepts TCP connections until the daemon stops.
    pub(crate) async fn run_tcp(self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                _ = self.ctx.shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let Some((id, permit)) = self.admit() else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let (r, w) = stream.into_split();
                    let ctx = self.ctx.clone();
                    self.ctx.tracker.spawn(conn::run(
                        id,
                        ConnKind::Tcp,
                        peer.to_string(),
                        r,
                        w,
                        ctx,
                        permit,
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Accepts Unix connections until the daemon stops, then removes the socket file.
    pub(crate) async fn run_unix(self, listener: UnixListener, path: PathBuf) {
        loop {
            let accepted = tokio::select! {
                _ = self.ctx.shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => {
                    let Some((id, permit)) = self.admit() else {
                        continue;
                    };
                    let (r, w) = stream.into_split();
                    let ctx = self.ctx.clone();
                    self.ctx.tracker.spawn(conn::run(
                        id,
                        ConnKind::Unix,
                        "unix".to_owned(),
                        r,
                        w,
                        ctx,
                        permit,
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unix accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        drop(listener);
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::debug!(path = %path.display(), error = %e, "cannot remove unix socket");
        }
    }
}

/// Receives UDP datagrams until the daemon stops: one message each, at most `max_len`
/// bytes, `secret_code` checked and stripped. Bad datagrams are dropped, logged and counted.
pub(crate) async fn run_udp(
    socket: UdpSocket,
    acceptor: Acceptor,
    max_len: usize,
    secret: Option<String>,
) {
    // One byte more than allowed, so an oversize datagram is detected, not truncated.
    let mut buf = vec![0u8; max_len.saturating_add(1)];
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
        if n > max_len {
            // The OS truncated it to our buffer: its real length is unknown, only "more".
            Stats::bump(&acceptor.stats.udp_dropped);
            tracing::warn!(%peer, reason = %format!("datagram too long: over {max_len} bytes"), "udp datagram dropped");
            continue;
        }
        match parse_datagram(&buf[..n], max_len, secret.as_deref()) {
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
            Err(e) => {
                Stats::bump(&acceptor.stats.udp_dropped);
                tracing::warn!(%peer, reason = %e, "udp datagram dropped");
            }
        }
    }
}
