//! The secure service listener (`secure_listen`, cd-wire §2.1; `cds:` URLs): TLS over TCP on
//! any address. Each accepted TCP stream takes one of `max_pending_handshakes` permits (none
//! left: closed at once, counted in `connections_refused`), then its handshake runs **in its
//! own task**, bounded by the handshake timeout: a slow, silent or non-TLS client never stalls
//! the accept loop, and a flood of them cannot take the `max_connections` permits local
//! services need (a TLS connection takes one only once its handshake is done). A failed handshake is counted (`tls_handshake_failures`) and logged at most once per
//! 5 s; a completed one hands the TLS stream to the same connection code as loopback TCP
//! (`conn.rs` is generic over `AsyncRead + AsyncWrite`), as a [`ConnKind::Tls`] connection:
//! same commands and routing as TCP; `STOP`/`SHUTDOWN` only with the admin token, `SNIFF`
//! only with [`AdminRules::allow_sniff_from_tls`](super::AdminRules::allow_sniff_from_tls).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::config::TlsListenerConfig;
use super::conn;
use super::error::DaemonError;
use super::event::{ConnKind, Origin};
use super::listen::Acceptor;
use super::ratelog::LogGate;
use super::stats::Stats;

/// At most one handshake-failure warning per this interval.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(5);

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
    /// Accepts TLS connections until the daemon stops.
    pub(crate) async fn run_tls(
        self,
        listener: TcpListener,
        tls: TlsAcceptor,
        handshake_timeout: Duration,
        max_pending: usize,
    ) {
        let gate = Arc::new(LogGate::new(FAILURE_LOG_INTERVAL));
        let pending = Arc::new(Semaphore::new(max_pending.max(1)));
        loop {
            let accepted = tokio::select! {
                _ = self.ctx.shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = pending.clone().try_acquire_owned() else {
                        Stats::bump(&self.stats.connections_refused);
                        if let Some(suppressed) = gate.allow() {
                            tracing::warn!(%peer, max_pending, suppressed, "tls connection refused: too many handshakes in progress");
                        }
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let acceptor = self.clone();
                    let tls = tls.clone();
                    let gate = gate.clone();
                    self.ctx.tracker.spawn(async move {
                        let ctx = acceptor.ctx.clone();
                        let stats = acceptor.stats.clone();
                        let done =
                            handshake(stream, &tls, handshake_timeout, &ctx.shutdown).await;
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
                                conn::run(id, origin, r, w, ctx, permit)
                                    .await;
                            }
                            Err(reason) => {
                                Stats::bump(&stats.tls_handshake_failures);
                                if let Some(suppressed) = gate.allow() {
                                    tracing::warn!(%peer, %reason, suppressed, "tls handshake failed, connection dropped");
                                }
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tls accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
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
            Ok(Err(e)) => Err(crate::tls::tls_reason(&e).unwrap_or_else(|| e.to_string())),
            Err(_) => Err(format!("no handshake within {timeout:?}")),
        }),
    }
}
