//! Reference `nats`: NATS core (at-most-once) through its standard Rust client, async-nats,
//! against `$COMMS_BENCH_NATS` (default `nats://127.0.0.1:4222`).
//!
//! Measured fairly (docs/DESIGN.md §7): the subscription's capacity is sized to the message count
//! (the default 65,536 silently drops messages under a fast publisher) and the received count
//! is reported; a probe message must come back through the subscription before the clock
//! starts (`flush()` does not prove the subscription is live on the server).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::latency::Latencies;
use crate::report::{Mode, OneWay, Progress, Row};
use crate::scale::{Scale, PAYLOADS};
use crate::tally::Tally;

/// The server URL.
pub fn url() -> String {
    std::env::var("COMMS_BENCH_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

async fn connect(capacity: usize) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .subscription_capacity(capacity)
        .connect(url())
        .await
        .context("connect to nats-server")
}

/// The NATS rows (one per payload; NATS core has one mode).
pub async fn run(scale: &Scale, progress: &Progress) -> Vec<Row> {
    let mut rows = Vec::new();
    let down = crate::probe::tcp(&url()).await.err();
    for payload in PAYLOADS {
        if let Some(reason) = &down {
            rows.push(Row::skipped("nats", payload, Mode::Na, reason.clone()));
            continue;
        }
        progress.step(&format!("nats {payload} B"));
        let mut row = Row::new("nats", payload, Mode::Na);
        row.record_oneway(oneway(payload, scale).await);
        row.record_rtt(rtt(payload, scale).await);
        progress.done(&row);
        rows.push(row);
    }
    rows
}

async fn oneway(payload: usize, scale: &Scale) -> anyhow::Result<OneWay> {
    let n = scale.oneway_count(payload);
    let subject = format!("bench.oneway.{}", comms_core::MessageId::new());
    let rx = connect(n as usize + 1024).await?;
    let tx = connect(1024).await?;
    let mut sub = rx.subscribe(subject.clone()).await?;
    // Probe until one comes back: the subscription is live on the server.
    let probe_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tx.publish(subject.clone(), Bytes::from_static(b"probe"))
            .await?;
        tx.flush().await?;
        match tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            Ok(Some(_)) => break,
            Ok(None) => bail!("subscription ended"),
            Err(_) if Instant::now() > probe_deadline => bail!("probe never came back"),
            Err(_) => {}
        }
    }
    // Drain extra probes.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(20), sub.next()).await {}

    let body = Bytes::from(vec![b'x'; payload]);
    let tally = Arc::new(Tally::new());
    let t = tally.clone();
    let counter = tokio::spawn(async move {
        while sub.next().await.is_some() {
            t.hit();
        }
    });
    let t0 = tally.now();
    let sends = scale.sends(n);
    while sends.next() {
        tx.publish(subject.clone(), body.clone()).await?;
    }
    tx.flush().await?;
    let figures = tally.finish(t0, sends.sent(), scale.drain, payload).await;
    counter.abort();
    Ok(figures)
}

async fn rtt(payload: usize, scale: &Scale) -> anyhow::Result<Latencies> {
    let subject = format!("bench.echo.{}", comms_core::MessageId::new());
    let server = connect(65_536).await?;
    let client = connect(65_536).await?;
    let mut sub = server.subscribe(subject.clone()).await?;
    server.flush().await?;
    let responder = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = server.publish(reply, m.payload).await;
            }
        }
    });
    let body = Bytes::from(vec![b'x'; payload]);
    let result = async {
        // Warm-up doubles as the liveness probe (retried: the first may beat the SUB).
        let probe_deadline = Instant::now() + Duration::from_secs(10);
        let mut ok = 0;
        while ok < scale.warmup.max(1) {
            let r = tokio::time::timeout(
                Duration::from_millis(500),
                client.request(subject.clone(), body.clone()),
            )
            .await;
            match r {
                Ok(Ok(_)) => ok += 1,
                _ if Instant::now() > probe_deadline => bail!("echo never answered"),
                _ => {}
            }
        }
        let mut lat = Latencies::new();
        let deadline = Instant::now() + scale.rtt_cap;
        for _ in 0..scale.rtt_count {
            let t = Instant::now();
            client.request(subject.clone(), body.clone()).await?;
            lat.record(t.elapsed());
            if Instant::now() >= deadline {
                break;
            }
        }
        Ok(lat)
    }
    .await;
    responder.abort();
    result
}
