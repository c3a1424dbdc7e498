//! One stream connection (TCP or Unix): a reader task and a writer task.
//!
//! The **reader** frames nothing but `\n`: it hands the router every read chunk cut at its
//! last `\n` (one inbox event per chunk, however many lines it holds), keeps the partial
//! tail, and discards a partial line once it exceeds `max_line` (memory stays bounded by
//! `max_line` + one read chunk; the router answers `INVALID` when its `\n` arrives).
//!
//! The **writer** owns the write half and a bounded queue of batches (`Bytes`, whole lines).
//! It coalesces what is queued into one write. It stops when the router drops the queue's
//! sender (after flushing), when the router aborts it (slow consumer), on a write error, or
//! `flush_timeout` after the daemon began to stop.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::event::{ConnHandles, ConnId, Event, Origin};

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
    let handles = ConnHandles {
        out,
        stop_reader: stop_reader.clone(),
        abort_writer: abort_writer.clone(),
    };
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
        abort_writer,
        stop_reader.clone(),
        ctx.shutdown.clone(),
        ctx.flush_timeout,
    ));
    run_reader(id, read, &ctx, &stop_reader).await;
    let _ = ctx.router.send(Event::Closed { id }).await;
    let _ = writer.await;
    drop(permit);
}

async fn run_reader<R: AsyncRead + Unpin>(
    id: ConnId,
    mut read: R,
    ctx: &ConnCtx,
    stop: &CancellationToken,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Bytes of `buf` already known to hold no `\n`.
    let mut scanned = 0usize;
    // `Some(n)`: discarding an oversize line, `n` bytes dropped so far.
    let mut discarding: Option<usize> = None;
    loop {
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
    mut rx: mpsc::Receiver<Bytes>,
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
    let mut batch: Vec<Bytes> = Vec::with_capacity(WRITE_BATCH);
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
        let chunk = if batch.len() == 1 {
            batch.pop().unwrap_or_default()
        } else {
            for b in batch.drain(..) {
                coalesced.extend_from_slice(&b);
            }
            coalesced.split().freeze()
        };
        let result = tokio::select! {
            biased;
            _ = abort.cancelled() => return,
            _ = &mut deadline => return,
            r = write.write_all(&chunk) => r,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "write error, closing connection");
            stop_reader.cancel();
            return;
        }
    }
    let _ = tokio::time::timeout(flush_timeout, write.shutdown()).await;
}
