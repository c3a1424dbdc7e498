//! Reference `tcp`: raw TCP on loopback, the floor. Frames are a 4-byte length then the
//! payload. One-way: a buffered writer streams frames, the reader counts them. Ping-pong: one
//! frame out, one echoed back, `TCP_NODELAY` on both ends.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

use crate::latency::Latencies;
use crate::report::{Mode, OneWay, Progress, Row};
use crate::scale::{Scale, PAYLOADS};

/// The TCP rows (one per payload).
pub async fn run(scale: &Scale, progress: &Progress) -> Vec<Row> {
    let mut rows = Vec::new();
    for payload in PAYLOADS {
        progress.step(&format!("tcp {payload} B"));
        let mut row = Row::new("tcp", payload, Mode::Na);
        match oneway(payload, scale).await {
            Ok(o) => row.oneway = Some(o),
            Err(e) => row.notes.push(format!("one-way failed: {e:#}")),
        }
        match ping_pong(payload, scale).await {
            Ok(l) => row.rtt = l.summary(),
            Err(e) => row.notes.push(format!("ping-pong failed: {e:#}")),
        }
        progress.done(&row);
        rows.push(row);
    }
    rows
}

async fn pair() -> anyhow::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (a, (b, _)) = (a?, b?);
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok((a, b))
}

async fn read_frame(r: &mut BufReader<impl AsyncReadExt + Unpin>, buf: &mut Vec<u8>) -> bool {
    let Ok(len) = r.read_u32().await else {
        return false;
    };
    buf.resize(len as usize, 0);
    r.read_exact(buf).await.is_ok()
}

async fn oneway(payload: usize, scale: &Scale) -> anyhow::Result<OneWay> {
    let (a, b) = pair().await?;
    let n = scale.oneway_count(payload);
    let origin = Instant::now();
    let reader = tokio::spawn(async move {
        let mut r = BufReader::with_capacity(64 * 1024, b);
        let mut buf = Vec::new();
        let (mut count, mut last) = (0u64, Duration::ZERO);
        while read_frame(&mut r, &mut buf).await {
            count += 1;
            last = origin.elapsed();
        }
        (count, last)
    });
    let mut w = BufWriter::with_capacity(64 * 1024, a);
    let body = vec![b'x'; payload];
    let deadline = origin + scale.oneway_cap;
    let mut sent = 0u64;
    while sent < n {
        if sent % 64 == 0 && Instant::now() >= deadline {
            break;
        }
        w.write_u32(payload as u32).await?;
        w.write_all(&body).await?;
        sent += 1;
    }
    w.flush().await?;
    w.shutdown().await?;
    let (received, last) = tokio::time::timeout(scale.drain, reader)
        .await
        .context("reader did not finish")??;
    Ok(OneWay::new(sent, received, last, payload))
}

async fn ping_pong(payload: usize, scale: &Scale) -> anyhow::Result<Latencies> {
    let (a, b) = pair().await?;
    let echo = tokio::spawn(async move {
        let (r, mut w) = b.into_split();
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        while read_frame(&mut r, &mut buf).await {
            let mut frame = Vec::with_capacity(4 + buf.len());
            frame.extend_from_slice(&(buf.len() as u32).to_be_bytes());
            frame.extend_from_slice(&buf);
            if w.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let (r, mut w) = a.into_split();
    let mut r = BufReader::new(r);
    let mut frame = (payload as u32).to_be_bytes().to_vec();
    frame.extend(std::iter::repeat_n(b'x', payload));
    let mut buf = Vec::new();
    for _ in 0..scale.warmup {
        w.write_all(&frame).await?;
        anyhow::ensure!(read_frame(&mut r, &mut buf).await, "echo closed");
    }
    let mut lat = Latencies::new();
    let deadline = Instant::now() + scale.rtt_cap;
    for _ in 0..scale.rtt_count {
        let t = Instant::now();
        w.write_all(&frame).await?;
        anyhow::ensure!(read_frame(&mut r, &mut buf).await, "echo closed");
        lat.record(t.elapsed());
        if Instant::now() >= deadline {
            break;
        }
    }
    drop(w);
    echo.abort();
    Ok(lat)
}
