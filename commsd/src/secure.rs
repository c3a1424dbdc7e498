//! The secure service listener (`secure_listen`, cd-wire §2.1; `cds:` URLs): TLS over TCP on
//! any address. Each accepted TCP stream takes one of `max_pending_handshakes` permits (none
//! left: closed at once, counted in `connections_refused`), then its handshake runs **in its
//! own task**, bounded by the handshake timeout: a slow, silent or non-TLS client never stalls
//! the accept loop, and a flood of them cannot take the `max_connections` permits local
//! services need (a TLS connection takes one only once its handshake is done; the TLS
//! listener has its own `max_connections` budget, apart from Unix and loopback TCP). One IP
//! address holds at most `max_per_address` TLS connections (pending and established; one
//! more is closed at once, counted in `connections_refused`). A failed handshake is counted
//! (`tls_handshake_failures`) and logged at most once a second (`LogGates`); a completed one hands the TLS stream to the same connection code as loopback TCP
//! (`conn.rs` is generic over `AsyncRead + AsyncWrite`), as a [`ConnKind::Tls`] connection:
//! same commands and routing as TCP; `STOP`/`SHUTDOWN`/`SNIFF` only with the admin token
//! ([`AdminRules`](super::AdminRules)).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsListenerConfig;
use crate::conn;
use crate::error::DaemonError;
use crate::event::{ConnKind, Origin};
use crate::listen::{accept_loop, Acceptor};
use crate::ratelog::Gate;
use crate::stats::Stats;

/// TLS connections per IP address (pending handshakes and established).
#[derive(Debug, Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in [`PerAddress`], given back on drop.
#[derive(Debug)]
struct AddressSlot {
    map: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn take(map: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut m = map.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            map: map.clone(),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut m = self.map.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Reads the certificate files and binds the secure listener.
pub(crate) async fn bind_tls(
    cfg: &TlsListenerConfig,
) -> Result<(TcpListener, TlsAcceptor), DaemonError> {
    let server = cfg.tls.server_config()?;
    let listener = TcpListener::bind(cfg.addr)
        .await
        .map_err(|source| DaemonError::Bind {
            what: "tls",
            addr: cfg.addr,
            source,
        })?;
    Ok((listener, TlsAcceptor::from(server)))
}

impl Acceptor {
    /// Serves the TLS listener until the daemon stops.
    pub(crate) async fn run_tls(
        self,
        listener: TcpListener,
        tls: TlsAcceptor,
        cfg: TlsListenerConfig,
    ) {
        let handshake_timeout = cfg.handshake_timeout;
        let max_pending = cfg.max_pending_handshakes;
        let max_per_address = cfg.max_per_address.max(1);
        let per_address = Arc::new(PerAddress::default());
        let pending = Arc::new(Semaphore::new(max_pending.max(1)));
        accept_loop(&listener, "tls", &self.ctx.shutdown, |stream, peer| {
            let logs = &self.stats.logs;
            let Some(addr_slot) = PerAddress::take(&per_address, peer.ip(), max_per_address)
            else {
                Stats::bump(&self.stats.connections_refused);
                if let Some(suppressed) = logs.allow(Gate::Refused) {
                    tracing::warn!(%peer, max_per_address, suppressed, "tls connection refused: too many from this address");
                }
                return;
            };
            let Ok(slot) = pending.clone().try_acquire_owned() else {
                Stats::bump(&self.stats.connections_refused);
                if let Some(suppressed) = logs.allow(Gate::Refused) {
                    tracing::warn!(%peer, max_pending, suppressed, "tls connection refused: too many handshakes in progress");
                }
                return;
            };
            let _ = stream.set_nodelay(true);
            let acceptor = self.clone();
            let tls = tls.clone();
            self.ctx.tracker.spawn(async move {
                let _addr_slot = addr_slot;
                let ctx = acceptor.ctx.clone();
                let stats = acceptor.stats.clone();
                let done = handshake(stream, &tls, handshake_timeout, &ctx.shutdown).await;
                drop(slot);
                let Some(stream) = done else {
                    return;
                };
                match stream {
                    Ok(s) => {
                        Stats::bump(&stats.tls_handshakes);
                        let Some((id, permit)) = acceptor.admit() else {
                            return;
                        };
                        let (r, w) = tokio::io::split(s);
                        let origin = Origin {
                            kind: ConnKind::Tls,
                            peer: format!("tls {peer}"),
                            uid: None,
                        };
                        conn::run(id, origin, r, w, ctx, permit).await;
                    }
                    Err(reason) => {
                        Stats::bump(&stats.tls_handshake_failures);
                        if let Some(suppressed) = stats.logs.allow(Gate::TlsHandshake) {
                            tracing::warn!(%peer, %reason, suppressed, "tls handshake failed, connection dropped");
                        }
                    }
                }
            });
        })
        .await;
    }
}

/// The handshake, bounded by `timeout`; `None` when the daemon stops meanwhile.
async fn handshake(
    stream: TcpStream,
    tls: &TlsAcceptor,
    timeout: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<Result<tokio_rustls::server::TlsStream<TcpStream>, String>> {
    let attempt = tokio::time::timeout(timeout, tls.accept(stream));
    tokio::select! {
        _ = shutdown.cancelled() => None,
        r = attempt => Some(match r {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(cd_wire::tls::tls_reason(&e).unwrap_or_else(|| e.to_string())),
            Err(_) => Err(format!("no handshake within {timeout:?}")),
        }),
    }
}
