//! The connection task: connect, register, pump lines, reconnect on the schedule.
//!
//! One task owns the socket (STYLE habit 3). See the state machine in the module docs of
//! [`crate::client`].

use std::collections::BTreeSet;
use std::future::Future;

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::{Encoder, FramedRead};
use tokio_util::sync::CancellationToken;

use super::config::{commands_list, ClientConfig};
use super::dial::{connect, ConnectFail, Stream};
use super::handle::Command;
use super::state::ConnectionState;
use cd_wire::raw::{scan_head, trim_bounds};
use cd_wire::{parse, LineCodec, RawLines, WireMessage, DAEMON_SERVICE};

/// Lines written per socket write at most (batching).
const WRITE_BATCH: usize = 512;
/// Bytes read per socket read at most (many lines per read under load).
const READ_BUFFER: usize = 16 * 1024;
/// Bytes buffered per socket write at most (batching).
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// How a session ended.
enum End {
    /// The connection was lost (or never registered); `registered` says whether READY came.
    Lost { registered: bool },
    /// REGISTER refused by the daemon.
    Refused(String),
    /// The TLS handshake failed (our certificate refused by the daemon, seen on first read).
    TlsFailed(String),
    /// Close asked (or every handle dropped): stop.
    Closed(Option<oneshot::Sender<()>>),
}

/// Where incoming lines go.
pub(crate) enum InSink {
    /// One parsed message at a time ([`super::Client::spawn`]).
    Parsed(mpsc::Sender<WireMessage>),
    /// Batches of raw lines, parsed by the reader in place ([`super::Client::spawn_raw`]).
    Raw(mpsc::Sender<Vec<Bytes>>),
}

/// Lines per batch handed to a raw sink at most.
pub(crate) const RAW_BATCH: usize = 64;

struct Ctx {
    cfg: ClientConfig,
    rx: mpsc::Receiver<Command>,
    in_tx: InSink,
    state: watch::Sender<ConnectionState>,
    commands: BTreeSet<String>,
    dropped: u64,
}

impl Ctx {
    fn new(
        cfg: ClientConfig,
        rx: mpsc::Receiver<Command>,
        in_tx: InSink,
        state: watch::Sender<ConnectionState>,
    ) -> Self {
        Self {
            commands: cfg.commands.clone(),
            cfg,
            rx,
            in_tx,
            state,
            dropped: 0,
        }
    }
}

pub(crate) async fn run(
    cfg: ClientConfig,
    rx: mpsc::Receiver<Command>,
    in_tx: InSink,
    state: watch::Sender<ConnectionState>,
    cancel: CancellationToken,
) {
    let mut ctx = Ctx::new(cfg, rx, in_tx, state);
    tokio::select! {
        done = lifecycle(&mut ctx) => {
            if let Some(done) = done {
                let _ = done.send(());
            }
        }
        _ = cancel.cancelled() => {}
    }
    ctx.state.send_replace(ConnectionState::Closed);
}

async fn lifecycle(ctx: &mut Ctx) -> Option<oneshot::Sender<()>> {
    let mut attempt = 0usize;
    let mut session = 0u64;
    loop {
        let target = ctx.cfg.target.clone();
        let tls = ctx.cfg.tls.clone();
        let end = match idle(ctx, connect(&target, tls)).await {
            Idle::Close(done) => return done,
            Idle::Done(Err(ConnectFail::Io(e))) => {
                tracing::debug!(target = %target, error = %e, "cannot connect to the daemon");
                End::Lost { registered: false }
            }
            Idle::Done(Err(ConnectFail::Tls(reason))) => End::TlsFailed(reason),
            Idle::Done(Ok(Stream::Tcp(s))) => {
                let _ = s.set_nodelay(true);
                self::session(ctx, s, session + 1).await
            }
            Idle::Done(Ok(Stream::Tls(s))) => self::session(ctx, s, session + 1).await,
            Idle::Done(Ok(Stream::Unix(s))) => self::session(ctx, s, session + 1).await,
        };
        match end {
            End::Closed(done) => return done,
            End::Lost { registered } => {
                if registered {
                    session += 1;
                    attempt = 0;
                    tracing::info!(target = %target, "connection to the daemon lost; reconnecting");
                }
                ctx.state.send_if_modified(|s| {
                    let changed = !matches!(s, ConnectionState::Disconnected);
                    *s = ConnectionState::Disconnected;
                    changed
                });
            }
            End::Refused(reason) => {
                tracing::warn!(service = %ctx.cfg.service, %reason, "the daemon refused REGISTER; retrying");
                ctx.state.send_replace(ConnectionState::Refused { reason });
            }
            End::TlsFailed(reason) => {
                // Logged once per distinct reason, not once per retry.
                ctx.state.send_if_modified(|s| {
                    let same = matches!(s, ConnectionState::TlsFailed { reason: r } if *r == reason);
                    if !same {
                        tracing::warn!(target = %target, %reason, "TLS handshake with the daemon failed; retrying");
                        *s = ConnectionState::TlsFailed { reason };
                    }
                    !same
                });
            }
        }
        let delay = super::target::jittered(ctx.cfg.retry[attempt.min(ctx.cfg.retry.len() - 1)]);
        attempt += 1;
        if let Idle::Close(done) = idle(ctx, tokio::time::sleep(delay)).await {
            return done;
        }
    }
}

enum Idle<T> {
    Done(T),
    Close(Option<oneshot::Sender<()>>),
}

/// Run `fut` while no connection is registered, still serving the handles: lines are dropped
/// (and counted), command changes remembered, close honoured.
async fn idle<T>(ctx: &mut Ctx, fut: impl Future<Output = T>) -> Idle<T> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            v = &mut fut => return Idle::Done(v),
            cmd = ctx.rx.recv() => match cmd {
                None => return Idle::Close(None),
                Some(Command::Close(done)) => return Idle::Close(Some(done)),
                Some(Command::SetCommands(c)) => ctx.commands = c,
                Some(Command::Line(_) | Command::Raw(_)) => {
                    ctx.dropped += 1;
                    tracing::debug!(dropped = ctx.dropped, "line dropped: not connected");
                }
            }
        }
    }
}

fn register_line(service: &str) -> WireMessage {
    WireMessage::new("REGISTER")
        .with_param("service", service)
        .with_param("version", "1")
}

async fn session<S>(ctx: &mut Ctx, stream: S, session_no: u64) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (r, mut w) = tokio::io::split(stream);
    let mut reader = FramedRead::with_capacity(
        r,
        RawLines::with_max_line_length(ctx.cfg.max_line_length),
        READ_BUFFER,
    );
    let mut codec = LineCodec::new();
    let mut buf = BytesMut::new();
    let mut registered = false;
    if write_one(
        &mut w,
        &mut codec,
        &mut buf,
        register_line(&ctx.cfg.service),
    )
    .await
    .is_err()
    {
        return End::Lost { registered };
    }
    loop {
        tokio::select! {
            item = reader.next() => {
                let first = match item {
                    Some(Err(e)) if !registered => {
                        return match crate::tls::tls_reason(&e) {
                            Some(reason) => End::TlsFailed(reason),
                            None => End::Lost { registered },
                        };
                    }
                    None | Some(Err(_)) => return End::Lost { registered },
                    Some(Ok(line)) => line,
                };
                // Take what else is already buffered: one hand-over per batch, not per line.
                let mut lines = Vec::with_capacity(8);
                let mut ended = false;
                let mut next = Some(first);
                loop {
                    match next.take() {
                        Some(Ok(line)) => lines.push(line),
                        Some(Err(e)) => tracing::warn!(error = %e, "unreadable line from the daemon skipped"),
                        None => {}
                    }
                    if lines.len() >= RAW_BATCH {
                        break;
                    }
                    match reader.next().now_or_never() {
                        Some(Some(Ok(item))) => next = Some(item),
                        Some(None | Some(Err(_))) => {
                            ended = true;
                            break;
                        }
                        None => break,
                    }
                }
                let mut pass = Vec::with_capacity(lines.len());
                for line in lines {
                    let Some(msg) = daemon_line(&line) else {
                        pass.push(line);
                        continue;
                    };
                    match msg.command.as_str() {
                        "HELP" => {
                            let list = WireMessage::new("COMMANDS")
                                .with_param("list", commands_list(&ctx.commands));
                            if write_one(&mut w, &mut codec, &mut buf, list).await.is_err() {
                                return End::Lost { registered };
                            }
                        }
                        "READY" => {
                            registered = true;
                            let node = msg.sent_from_server.clone();
                            if session_no > 1 {
                                tracing::info!(%node, service = %ctx.cfg.service, "reconnected to the daemon");
                            } else {
                                tracing::debug!(%node, service = %ctx.cfg.service, "registered");
                            }
                            ctx.state.send_replace(ConnectionState::Connected { node, session: session_no });
                        }
                        "INVALID" if !registered && msg.param("command") == Some("REGISTER") => {
                            let reason = msg.param("reason").unwrap_or("refused").to_owned();
                            let _ = w.shutdown().await;
                            return End::Refused(reason);
                        }
                        "QUITTING" => {
                            tracing::info!("the daemon is quitting");
                            // What came before it in this batch is delivered, as line by line.
                            hand_over(&ctx.in_tx, std::mem::take(&mut pass)).await;
                            return End::Lost { registered };
                        }
                        _ => pass.push(line),
                    }
                }
                // A slow application slows the reading of the socket (bounded channel).
                if !hand_over(&ctx.in_tx, pass).await {
                    tracing::trace!("incoming message dropped: nobody reads the client");
                }
                if ended {
                    return End::Lost { registered };
                }
            }
            cmd = ctx.rx.recv() => match cmd {
                None => return End::Closed(None),
                Some(Command::Close(done)) => {
                    if registered {
                        let bye = WireMessage::new("UNREGISTER").with_param("service", ctx.cfg.service.clone());
                        let _ = write_one(&mut w, &mut codec, &mut buf, bye).await;
                    }
                    let _ = w.shutdown().await;
                    return End::Closed(Some(done));
                }
                Some(Command::SetCommands(c)) => {
                    ctx.commands = c;
                    if registered {
                        let list = WireMessage::new("COMMANDS").with_param("list", commands_list(&ctx.commands));
                        if write_one(&mut w, &mut codec, &mut buf, list).await.is_err() {
                            return End::Lost { registered };
                        }
                    }
                }
                Some(first @ (Command::Line(_) | Command::Raw(_))) => {
                    if !registered {
                        ctx.dropped += 1;
                        continue;
                    }
                    buf.clear();
                    let mut next = Some(first);
                    let mut n = 0;
                    // Batch what is already queued into one write.
                    while n < WRITE_BATCH && buf.len() < WRITE_BATCH_BYTES {
                        let cmd = match next.take() {
                            Some(c) => Ok(c),
                            None => ctx.rx.try_recv(),
                        };
                        match cmd {
                            Ok(Command::Line(m)) => { encode(&mut codec, &mut buf, m); n += 1; }
                            Ok(Command::Raw(b)) => { buf.extend_from_slice(&b); n += 1; }
                            Ok(Command::SetCommands(c)) => {
                                ctx.commands = c;
                                let list = WireMessage::new("COMMANDS").with_param("list", commands_list(&ctx.commands));
                                encode(&mut codec, &mut buf, list);
                            }
                            Ok(Command::Close(done)) => {
                                let bye = WireMessage::new("UNREGISTER").with_param("service", ctx.cfg.service.clone());
                                encode(&mut codec, &mut buf, bye);
                                let _ = w.write_all(&buf).await;
                                let _ = w.shutdown().await;
                                return End::Closed(Some(done));
                            }
                            Err(_) => break,
                        }
                    }
                    if w.write_all(&buf).await.is_err() {
                        return End::Lost { registered };
                    }
                }
            }
        }
    }
}

/// The line parsed, when it is the daemon's own (prefix `<NODE:communicatord ` or none),
/// which the task may answer itself; `None` for every other line (not parsed here).
fn daemon_line(line: &[u8]) -> Option<WireMessage> {
    let (start, end) = trim_bounds(line);
    let t = &line[start..end];
    let head = scan_head(t, start).ok()?;
    let sfv = &t[head.sent_from_service];
    if sfv != DAEMON_SERVICE.as_bytes() && !sfv.is_empty() {
        return None;
    }
    parse(line).ok()
}

/// Hands `lines` to the sink (parsed one by one for a parsed sink, where an unreadable line
/// is skipped with a warning); false when nobody reads.
async fn hand_over(sink: &InSink, lines: Vec<Bytes>) -> bool {
    match sink {
        InSink::Raw(tx) => lines.is_empty() || tx.send(lines).await.is_ok(),
        InSink::Parsed(tx) => {
            for line in lines {
                match parse(&line) {
                    Ok(msg) => {
                        if tx.send(msg).await.is_err() {
                            return false;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable line from the daemon skipped"),
                }
            }
            true
        }
    }
}

fn encode(codec: &mut LineCodec, buf: &mut BytesMut, msg: WireMessage) {
    if let Err(e) = codec.encode(&msg, buf) {
        tracing::warn!(error = %e, command = %msg.command, "line not written");
    }
}

async fn write_one<W: AsyncWrite + Unpin>(
    w: &mut W,
    codec: &mut LineCodec,
    buf: &mut BytesMut,
    msg: WireMessage,
) -> std::io::Result<()> {
    buf.clear();
    encode(codec, buf, msg);
    w.write_all(buf).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    /// The handshake over an in-memory duplex pipe: REGISTER first, COMMANDS on HELP,
    /// Connected on READY (node from the prefix), lines then written, refusal reported.
    #[tokio::test]
    async fn handshake_over_duplex() {
        let (ours, theirs) = tokio::io::duplex(4096);
        let cfg = ClientConfig::from_url("cd:///unused.sock", "svc")
            .unwrap()
            .with_commands(["PING"]);
        let (tx, rx) = mpsc::channel(8);
        let (in_tx, mut in_rx) = mpsc::channel(8);
        let (state_tx, mut state) = watch::channel(ConnectionState::Disconnected);
        let mut ctx = Ctx::new(cfg, rx, InSink::Parsed(in_tx), state_tx);
        let daemon = tokio::spawn(async move {
            let (r, mut w) = tokio::io::split(theirs);
            let mut lines = BufReader::new(r).lines();
            let register = lines.next_line().await.unwrap().unwrap();
            w.write_all(b"<vm:communicatord HELP\n").await.unwrap();
            let commands = lines.next_line().await.unwrap().unwrap();
            w.write_all(
                b"<vm:communicatord READY my_address=127.0.0.1:4042\n<vm:peer svc/PING n=1\n",
            )
            .await
            .unwrap();
            let sent = lines.next_line().await.unwrap().unwrap();
            let unregister = lines.next_line().await.unwrap().unwrap();
            (register, commands, sent, unregister)
        });
        let client = tokio::spawn(async move { session(&mut ctx, ours, 1).await });
        state.wait_for(|s| s.is_connected()).await.unwrap();
        assert_eq!(
            *state.borrow(),
            ConnectionState::Connected {
                node: "vm".into(),
                session: 1
            }
        );
        let ping = in_rx.recv().await.unwrap();
        assert_eq!(
            (ping.sent_from_service.as_str(), ping.command.as_str()),
            ("peer", "PING")
        );
        tx.send(Command::Line(WireMessage::new("PONG").with_service("peer")))
            .await
            .unwrap();
        let (done_tx, done_rx) = oneshot::channel();
        tx.send(Command::Close(done_tx)).await.unwrap();
        let (register, commands, sent, unregister) = daemon.await.unwrap();
        assert_eq!(register, "REGISTER service=svc;version=1");
        assert_eq!(
            commands,
            "COMMANDS list=HELP,INVALID,PING,QUITTING,READY,STOP,UNKNOWN"
        );
        assert_eq!(sent, "peer/PONG");
        assert_eq!(unregister, "UNREGISTER service=svc");
        match client.await.unwrap() {
            End::Closed(Some(done)) => done.send(()).unwrap(),
            _ => panic!("expected a clean close"),
        }
        done_rx.await.unwrap();
    }

    #[tokio::test]
    async fn refused_register_ends_the_session() {
        let (ours, theirs) = tokio::io::duplex(4096);
        let cfg = ClientConfig::from_url("cd:///unused.sock", "dup").unwrap();
        let (_tx, rx) = mpsc::channel(8);
        let (in_tx, _in_rx) = mpsc::channel(8);
        let (state_tx, _state) = watch::channel(ConnectionState::Disconnected);
        let mut ctx = Ctx::new(cfg, rx, InSink::Parsed(in_tx), state_tx);
        let (r, mut w) = tokio::io::split(theirs);
        w.write_all(
            b"<vm:communicatord INVALID command=REGISTER;reason=\"dup is live\";service=dup\n",
        )
        .await
        .unwrap();
        match session(&mut ctx, ours, 1).await {
            End::Refused(reason) => assert_eq!(reason, "dup is live"),
            _ => panic!("expected a refusal"),
        }
        drop(r);
    }
}
