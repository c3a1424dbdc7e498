//! One stream connection (TCP or Unix): a reader task and a writer task.
//!
//! The **reader** frames nothing but `\n`: it hands the router every read chunk cut at its
//! last `\n` (one inbox event per chunk, however many lines it holds), keeps the partial
//! tail, and discards a partial line once it exceeds `max_line` (memory stays bounded by
//! `max_line` + one read chunk; the router answers `INVALID` when its `\n` arrives).
//!
//! The **writer** owns the write half and a bounded queue of batches (`Bytes`, whole lines).
//! The queue is bounded twice: in batches (`outbound_queue`) and in bytes ([`QueueBytes`]:
//! `outbound_queue_bytes` for the connection, `memory_budget` for all connections together;
//! a batch's bytes count from `try_send` until written or dropped). It coalesces what is
//! queued into one write.
//!
//! A consumer slower than its senders is not disconnected while it keeps reading: the
//! services sending to it are paused instead ([`flow`]); a consumer that stops reading still
//! is, once its queue is full.
//!
//! A service connection (not a peer link) that sends no complete valid line (the router
//! cancels `proven` on the first one) within `first_line_timeout` is closed by its reader. It stops when the router drops the queue's
//! sender (after flushing), when the router aborts it (slow consumer), on a write error, or
//! `flush_timeout` after the daemon began to stop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::event::{ConnHandles, ConnId, Event, Origin};
pub(crate) use flow::ReadGate;

mod flow;
use crate::ratelog::Gate;
use crate::stats::Stats;

/// Bytes requested per read.
const READ_CHUNK: usize = 64 * 1024;
/// Batches taken from the queue per write.
const WRITE_BATCH: usize = 64;

/// What every connection shares (cheap clones).
#[derive(Debug, Clone)]
pub(crate) struct ConnCtx {
    pub router: mpsc::Sender<Event>,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    pub max_line: usize,
    pub outbound_queue: usize,
    pub flush_timeout: Duration,
    /// Deadline for the first complete valid line of a service connection.
    pub first_line_timeout: Duration,
    pub outbound_queue_bytes: usize,
    pub memory_budget: usize,
    /// Bytes queued for all writers.
    pub queued_total: Arc<AtomicUsize>,
    pub stats: Arc<Stats>,
}

/// The bytes queued for one connection's writer, and for all of them.
#[derive(Debug)]
pub(crate) struct QueueBytes {
    conn: AtomicUsize,
    total: Arc<AtomicUsize>,
    max_conn: usize,
    max_total: usize,
    /// Whether the consumer reads, and senders waiting for its queue to drain ([`flow`]).
    flow: flow::Flow,
}

impl QueueBytes {
    fn new(total: Arc<AtomicUsize>, max_conn: usize, max_total: usize) -> Self {
        Self {
            conn: AtomicUsize::new(0),
            total,
            max_conn,
            max_total,
            flow: flow::Flow::new(),
        }
    }
}

/// One batch in a writer's queue; its bytes are released when it is dropped.
#[derive(Debug)]
pub(crate) struct Queued {
    bytes: Bytes,
    acct: Arc<QueueBytes>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        let n = self.bytes.len();
        let before = self.acct.conn.fetch_sub(n, Ordering::Relaxed);
        self.acct.total.fetch_sub(n, Ordering::Relaxed);
        self.acct.released(before - n);
    }
}

/// Why a batch was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// Over a bound (batches, connection bytes or daemon bytes): a slow consumer.
    Full,
    /// The writer is gone.
    Closed,
}

impl Queued {
    /// The batch's length in bytes.
    #[cfg(feature = "bench")]
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The batch (whole lines).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl ConnHandles {
    /// Handles over `out` with generous byte bounds and fresh tokens (the routing bench).
    #[cfg(feature = "bench")]
    pub(crate) fn unbounded(out: mpsc::Sender<Queued>) -> Self {
        Self::bounded(
            out,
            usize::MAX / 4,
            Arc::new(AtomicUsize::new(0)),
            usize::MAX / 4,
        )
    }

    /// Handles over `out` with the given byte bounds (this connection's, and the daemon's
    /// over `total`) and fresh tokens, as `run` builds them (the bench, the fuzz harness).
    #[cfg(any(feature = "bench", feature = "fuzzing"))]
    pub(crate) fn bounded(
        out: mpsc::Sender<Queued>,
        max_conn: usize,
        total: Arc<AtomicUsize>,
        max_total: usize,
    ) -> Self {
        Self {
            out,
            queued: Arc::new(QueueBytes::new(total, max_conn, max_total)),
            gate: Arc::default(),
            proven: CancellationToken::new(),
            stop_reader: CancellationToken::new(),
            abort_writer: CancellationToken::new(),
        }
    }

    /// Bytes queued for this connection's writer (the fuzz harness checks the bound).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued.conn.load(Ordering::Relaxed)
    }

    /// Queues `bytes` for the writer without waiting, within every bound.
    pub(crate) fn try_send(&self, bytes: Bytes) -> Result<(), QueueError> {
        let n = bytes.len();
        let a = &self.queued;
        if a.conn.load(Ordering::Relaxed) + n > a.max_conn
            || a.total.load(Ordering::Relaxed) + n > a.max_total
        {
            return Err(QueueError::Full);
        }
        a.conn.fetch_add(n, Ordering::Relaxed);
        a.total.fetch_add(n, Ordering::Relaxed);
        let q = Queued {
            bytes,
            acct: a.clone(),
        };
        match self.out.try_send(q) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(QueueError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(QueueError::Closed),
        }
    }
}

/// Runs one connection until both halves are done. `permit` counts it against `max_connections`.
pub(crate) async fn run<R, W>(
    id: ConnId,
    origin: Origin,
    read: R,
    write: W,
    ctx: ConnCtx,
    permit: OwnedSemaphorePermit,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, rx) = mpsc::channel(ctx.outbound_queue.max(1));
    let stop_reader = CancellationToken::new();
    let abort_writer = CancellationToken::new();
    let proven = CancellationToken::new();
    let deadline = (!origin.kind.is_peer()).then_some(ctx.first_line_timeout);
    let queued = Arc::new(QueueBytes::new(
        ctx.queued_total.clone(),
        ctx.outbound_queue_bytes,
        ctx.memory_budget,
    ));
    let gate = Arc::new(ReadGate::default());
    let handles = ConnHandles {
        out,
        queued: queued.clone(),
        gate: gate.clone(),
        stop_reader: stop_reader.clone(),
        abort_writer: abort_writer.clone(),
        proven: proven.clone(),
    };
    let peer = origin.peer.clone();
    if ctx
        .router
        .send(Event::Opened {
            id,
            kind: origin.kind,
            peer: origin.peer,
            uid: origin.uid,
            handles,
        })
        .await
        .is_err()
    {
        return;
    }
    let writer = ctx.tracker.spawn(run_writer(
        write,
        rx,
        queued,
        abort_writer,
        stop_reader.clone(),
        ctx.shutdown.clone(),
        ctx.flush_timeout,
    ));
    let first_line = async {
        match deadline {
            Some(d) => tokio::select! {
                _ = proven.cancelled() => std::future::pending::<()>().await,
                _ = tokio::time::sleep(d) => {}
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = run_reader(id, read, &ctx, &stop_reader, &gate) => {}
        _ = first_line => {
            Stats::bump(&ctx.stats.idle_connections_closed);
            if let Some(suppressed) = ctx.stats.logs.allow(Gate::IdleClosed) {
                tracing::warn!(conn = id, %peer, timeout = ?ctx.first_line_timeout, suppressed,
                    "no valid line in time: connection closed");
            }
        }
    }
    let _ = ctx.router.send(Event::Closed { id }).await;
    let _ = writer.await;
    drop(permit);
}

async fn run_reader<R: AsyncRead + Unpin>(
    id: ConnId,
    mut read: R,
    ctx: &ConnCtx,
    stop: &CancellationToken,
    gate: &ReadGate,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Bytes of `buf` already known to hold no `\n`.
    let mut scanned = 0usize;
    // `Some(n)`: discarding an oversize line, `n` bytes dropped so far.
    let mut discarding: Option<usize> = None;
    loop {
        // What this connection last sent went to a consumer that is behind: read on once
        // it has caught up (or stopped reading).
        gate.wait(stop).await;
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let read_result = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = ctx.router.closed() => return,
            r = read.read_buf(&mut buf) => r,
        };
        match read_result {
            Ok(0) => {
                if !buf.is_empty() || discarding.is_some() {
                    tracing::debug!(conn = id, "unterminated last line dropped at end of stream");
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(conn = id, error = %e, "read error");
                return;
            }
        }
        if let Some(dropped) = discarding {
            match memchr::memchr(b'\n', &buf[..]) {
                Some(i) => {
                    let _ = buf.split_to(i + 1);
                    discarding = None;
                    scanned = 0;
                    let ev = Event::TooLong {
                        id,
                        length: dropped + i,
                    };
                    if ctx.router.send(ev).await.is_err() {
                        return;
                    }
                }
                None => {
                    discarding = Some(dropped + buf.len());
                    buf.clear();
                    continue;
                }
            }
        }
        if let Some(k) = memchr::memrchr(b'\n', &buf[scanned..]) {
            let data = buf.split_to(scanned + k + 1).freeze();
            if ctx.router.send(Event::Input { id, data }).await.is_err() {
                return;
            }
        }
        // What is left holds no `\n`.
        scanned = buf.len();
        if buf.len() > ctx.max_line {
            discarding = Some(buf.len());
            buf.clear();
            scanned = 0;
        }
    }
}

async fn run_writer<W: AsyncWrite + Unpin>(
    mut write: W,
    mut rx: mpsc::Receiver<Queued>,
    queued: Arc<QueueBytes>,
    abort: CancellationToken,
    stop_reader: CancellationToken,
    shutdown: CancellationToken,
    flush_timeout: Duration,
) {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(flush_timeout).await;
    };
    tokio::pin!(deadline);
    let mut batch: Vec<Queued> = Vec::with_capacity(WRITE_BATCH);
    let mut coalesced = BytesMut::new();
    loop {
        let n = tokio::select! {
            biased;
            _ = abort.cancelled() => return,
            _ = &mut deadline => return,
            n = rx.recv_many(&mut batch, WRITE_BATCH) => n,
        };
        if n == 0 {
            break;
        }
        // The batches stay in `batch` (their bytes counted) until written.
        let chunk = if batch.len() == 1 {
            batch[0].bytes.clone()
        } else {
            for b in &batch {
                coalesced.extend_from_slice(&b.bytes);
            }
            coalesced.split().freeze()
        };
        let result = tokio::select! {
            biased;
            _ = abort.cancelled() => return,
            _ = &mut deadline => return,
            r = write_reporting(&mut write, &chunk, &queued) => r,
        };
        batch.clear();
        if let Err(e) = result {
            tracing::debug!(error = %e, "write error, closing connection");
            stop_reader.cancel();
            return;
        }
    }
    let _ = tokio::time::timeout(flush_timeout, write.shutdown()).await;
}

/// `write_all`, telling the flow control each time the consumer took some bytes.
async fn write_reporting<W: AsyncWrite + Unpin>(
    write: &mut W,
    mut chunk: &[u8],
    queued: &QueueBytes,
) -> std::io::Result<()> {
    while !chunk.is_empty() {
        let n = write.write(chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        chunk = &chunk[n..];
        queued.flow.wrote();
    }
    Ok(())
}
