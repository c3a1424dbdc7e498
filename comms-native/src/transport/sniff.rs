//! [`NativeTransport::sniff`](super::NativeTransport): a dedicated, **unregistered**
//! connection to commsd that sends `SNIFF` (docs/NATIVE.md) and decodes every copy the
//! daemon hands it with the transport's own [`mapping`](super::mapping).
//!
//! Why a raw connection and not a [`Client`](crate::client::Client): the client always
//! REGISTERs, and a registered name could be sent real traffic (or collide); the daemon only
//! lets unregistered connections sniff, so nothing but copies and daemon notifications ever
//! reach this socket.
//!
//! - `SNIFF admin_token=<token>` when the options carry one
//!   ([`NativeOptions::admin_token`](super::NativeOptions)): commsd lets only admins sniff
//!   (the token, root or the daemon's user on its Unix socket, or an opt-in for loopback TCP).
//! - Accepted: the daemon answers `<NODE:communicatord SNIFFING`; refused (`INVALID`, admin
//!   rules: its reason says what would allow it) or unknown (`UNKNOWN`: a stock Communicator daemon) → an error from `sniff()`.
//! - `COMMS_ACK` lines are skipped: they are this transport's acknowledgements, not comms
//!   messages. Lost copies (`SNIFF_LOST lost=N;total=T`, the daemon's queue to us was full)
//!   are logged and counted; while the inbox is full this task stops reading, so the daemon's
//!   queue fills and the daemon drops copies (never waits).
//! - The inbox ends when the transport closes or the daemon connection is lost (no reconnect:
//!   a sniffer is a live view, call `sniff()` again).

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use comms_core::transport::NoAck;
use comms_core::{Address, Delivery, Error, Inbox, Result};

use super::mapping::{from_wire, ACK_COMMAND};
use super::NativeOptions;
use crate::client::{Target, CONNECT_TIMEOUT, DAEMON_SERVICE, DEFAULT_MAX_LINE};
use cd_wire::LineCodec;

/// The daemon command (a comms extension of the cd: protocol).
pub const SNIFF_COMMAND: &str = "SNIFF";
/// The daemon's acceptance notification.
pub const SNIFFING: &str = "SNIFFING";
/// The daemon's notification that copies were lost (`lost=N;total=T`).
pub const SNIFF_LOST: &str = "SNIFF_LOST";

fn err(message: String) -> Error {
    Error::transport_msg("native", message, false)
}

/// Connects, sends `SNIFF`, waits for `SNIFFING`, then spawns the decoding task on `tracker`.
pub(crate) async fn open(
    opts: &NativeOptions,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> Result<Inbox> {
    let target = Target::parse(&opts.url).map_err(Error::from)?;
    let (tx, rx) = mpsc::channel(opts.prefetch.max(1));
    let wait = opts.register_timeout;
    let url = opts.url.clone();
    let connect = async {
        match &target {
            Target::Unix(path) => tokio::net::UnixStream::connect(path).await.map(|s| {
                let (r, w) = s.into_split();
                (
                    Box::new(r) as Box<dyn AsyncRead + Unpin + Send>,
                    Box::new(w) as Box<dyn AsyncWrite + Unpin + Send>,
                )
            }),
            Target::Tcp { host, port } => tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map(|s| {
                    let (r, w) = s.into_split();
                    (
                        Box::new(r) as Box<dyn AsyncRead + Unpin + Send>,
                        Box::new(w) as Box<dyn AsyncWrite + Unpin + Send>,
                    )
                }),
            Target::Tls { host, port, tls } => {
                let invalid = |e: crate::tls::TlsError| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
                };
                let name = tls.verify_name(host).map_err(invalid)?;
                let config = tls.client_config().map_err(invalid)?;
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                let s = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await?;
                let (r, w) = tokio::io::split(s);
                Ok((
                    Box::new(r) as Box<dyn AsyncRead + Unpin + Send>,
                    Box::new(w) as Box<dyn AsyncWrite + Unpin + Send>,
                ))
            }
        }
    };
    let (r, mut w) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| err(format!("sniff: connecting to {target} timed out")))?
        .map_err(|e| {
            Error::transport("native", format!("sniff: connecting to {target}"), true, e)
        })?;
    let mut reader = FramedRead::new(r, LineCodec::with_max_line_length(DEFAULT_MAX_LINE));
    let mut request = cd_wire::WireMessage::new(SNIFF_COMMAND);
    if let Some(t) = &opts.admin_token {
        request = request.with_param("admin_token", t.0.clone());
    }
    let mut line = Vec::with_capacity(64);
    cd_wire::serialize(&request, &mut line)
        .map_err(|e| err(format!("sniff: the admin token cannot be sent: {e}")))?;
    line.push(b'\n');
    w.write_all(&line)
        .await
        .map_err(|e| err(format!("sniff: writing SNIFF to {target}: {e}")))?;
    let node = tokio::time::timeout(wait, accepted(&mut reader))
        .await
        .map_err(|_| err(format!("sniff: {url} did not answer SNIFF within {wait:?}")))??;
    tracing::info!(%url, %node, "native: sniffing");
    let local = Address::new(&node, DAEMON_SERVICE).map_err(|e| err(e.to_string()))?;
    tracker.spawn(async move {
        // Kept open for the life of the sniff: closing it would end the daemon side.
        let _writer = w;
        let mut lost = 0u64;
        loop {
            let item = tokio::select! {
                _ = cancel.cancelled() => break,
                item = reader.next() => item,
            };
            let w = match item {
                None | Some(Err(_)) => {
                    tracing::info!("native: sniff connection closed");
                    break;
                }
                Some(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "native: unreadable sniffed line skipped");
                    continue;
                }
                Some(Ok(Ok(w))) => w,
            };
            if w.sent_from_service == DAEMON_SERVICE {
                match w.command.as_str() {
                    SNIFF_LOST => {
                        let n: u64 = w.param("lost").and_then(|n| n.parse().ok()).unwrap_or(0);
                        lost += n;
                        tracing::warn!(
                            lost = n,
                            total_lost = lost,
                            "native: sniffer fell behind, copies lost"
                        );
                    }
                    "QUITTING" | "DISCONNECTING" => break,
                    c => tracing::debug!(
                        command = c,
                        "native: daemon notification on the sniff connection"
                    ),
                }
                continue;
            }
            if w.command == ACK_COMMAND {
                continue;
            }
            let copy = Delivery::new(from_wire(w, &local).message, false, Box::new(NoAck));
            tokio::select! {
                _ = cancel.cancelled() => break,
                r = tx.send(copy) => if r.is_err() { break },
            }
        }
    });
    Ok(Inbox::new(rx))
}

/// Waits for `SNIFFING`; the daemon's node name.
async fn accepted<R: AsyncRead + Unpin>(reader: &mut FramedRead<R, LineCodec>) -> Result<String> {
    loop {
        let w = match reader.next().await {
            None | Some(Err(_)) => {
                return Err(err("sniff: the daemon closed the connection".into()))
            }
            Some(Ok(Err(_))) => continue,
            Some(Ok(Ok(w))) => w,
        };
        match w.command.as_str() {
            SNIFFING => return Ok(w.sent_from_server),
            "UNKNOWN" => {
                return Err(Error::Unsupported {
                    backend: "native",
                    operation: "sniff (this daemon does not know SNIFF: a stock Communicator daemon, not commsd)",
                })
            }
            "INVALID" => {
                return Err(err(format!(
                    "sniff refused by the daemon: {}",
                    w.param("reason").unwrap_or("no reason given")
                )))
            }
            _ => continue,
        }
    }
}
