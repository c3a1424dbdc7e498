//! The measurement every comms backend shares, through [`Endpoint`] exactly as a user writes
//! it: a sink endpoint whose handler counts messages (one-way), an echo endpoint answering
//! `request()` (round trip). Backends only say how to connect a transport ([`Connector`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use comms_core::{Endpoint, Message, Outcome, Request, Transport};
use futures_util::future::BoxFuture;

use crate::latency::Latencies;
use crate::report::{Mode, OneWay, Progress, Row};
use crate::scale::{Scale, PAYLOADS};
use crate::tally::Tally;
use crate::window::Window;

/// How a backend makes a fresh transport (one per endpoint, as separate processes would).
pub trait Connector: Sync {
    /// A new, unadvertised transport (for the sending side: sender, request client).
    fn connect(&self) -> BoxFuture<'_, anyhow::Result<Arc<dyn Transport>>>;

    /// A new transport for the receiving side (sink, echo); the same as [`Self::connect`]
    /// unless the backend puts the two sides on different nodes.
    fn connect_receiver(&self) -> BoxFuture<'_, anyhow::Result<Arc<dyn Transport>>> {
        self.connect()
    }
}

/// How long an endpoint may take to close (flushing) before the row moves on.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// How long one probe or warm-up request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Every row of one backend: each payload, at-most-once then at-least-once.
pub async fn rows(
    backend: &str,
    c: &dyn Connector,
    scale: &Scale,
    progress: &Progress,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for payload in PAYLOADS {
        for mode in [Mode::AtMostOnce, Mode::AtLeastOnce] {
            progress.step(&format!("{backend} {payload} B {}", mode.label()));
            let row = measure(backend, c, payload, mode, scale).await;
            progress.done(&row);
            rows.push(row);
        }
    }
    rows
}

/// One row: one-way throughput, then request/reply latency.
pub async fn measure(
    backend: &str,
    c: &dyn Connector,
    payload: usize,
    mode: Mode,
    scale: &Scale,
) -> Row {
    let mut row = Row::new(backend, payload, mode);
    row.record_oneway(oneway(c, payload, mode, scale).await);
    row.record_rtt(rtt(c, payload, mode, scale).await);
    row
}

fn message(command: &str, to: &Endpoint, mode: Mode) -> anyhow::Result<Message> {
    Ok(mode.apply(Message::new(command, to.address().clone())?))
}

async fn close_all(eps: &[&Endpoint]) {
    for ep in eps {
        let _ = tokio::time::timeout(CLOSE_WAIT, ep.close()).await;
    }
}

async fn oneway(
    c: &dyn Connector,
    payload: usize,
    mode: Mode,
    scale: &Scale,
) -> anyhow::Result<OneWay> {
    let tally = Arc::new(Tally::new());
    // Counts only this measurement's messages (a durable broker queue may hold older ones).
    let tag = Arc::new(comms_core::MessageId::new().to_string());
    let (t, g) = (tally.clone(), tag.clone());
    let rx = Endpoint::builder(c.connect_receiver().await?, "bench_sink")
        .handle("BENCH", move |req: Request| {
            if req.message().param("r") == Some(g.as_str()) {
                t.hit();
            }
            std::future::ready(Ok(Outcome::Done))
        })
        .handle("PING", |req: Request| {
            std::future::ready(req.reply("PONG").map(Outcome::Reply).map_err(Into::into))
        })
        .start()
        .await
        .context("start the sink endpoint")?;
    let tx = Arc::new(
        Endpoint::builder(c.connect().await?, "bench_src")
            .start()
            .await
            .context("start the sender endpoint")?,
    );
    let result = async {
        // The path is live both ways before the clock starts.
        tx.request(message("PING", &rx, Mode::AtLeastOnce)?, REQUEST_TIMEOUT)
            .await
            .context("probe before timing")?;
        let body: Arc<str> = "x".repeat(payload).into();
        let n = scale.oneway_count(payload);
        let t0 = tally.now();
        let sends = Arc::new(scale.sends(n));
        let mut senders = tokio::task::JoinSet::new();
        for _ in 0..scale.senders.max(1) {
            let (tx, to, sends) = (tx.clone(), rx.address().clone(), sends.clone());
            let (body, tag) = (body.clone(), tag.clone());
            let window = scale.window;
            senders.spawn(async move {
                let mut receipts = Window::new(window);
                while sends.next() {
                    let m = mode
                        .apply(Message::new("BENCH", to.clone())?)
                        .with_param("p", &*body)
                        .with_param("r", tag.as_str());
                    if window == 0 {
                        tx.send(m).await.context("send")?;
                        continue;
                    }
                    let receipt = tx.submit(m).await.context("submit")?;
                    receipts
                        .push(async { receipt.await.context("confirmation") })
                        .await?;
                }
                receipts.drain().await
            });
        }
        while let Some(done) = senders.join_next().await {
            done.context("sending task")??;
        }
        Ok(tally.finish(t0, sends.sent(), scale.drain, payload).await)
    }
    .await;
    close_all(&[&tx, &rx]).await;
    result
}

async fn rtt(
    c: &dyn Connector,
    payload: usize,
    mode: Mode,
    scale: &Scale,
) -> anyhow::Result<Latencies> {
    let echo = Endpoint::builder(c.connect_receiver().await?, "bench_echo")
        .handle("ECHO", |req: Request| {
            let reply = req.reply("ECHOED").map(|mut r| {
                r.params = req.message().params.clone();
                r.mode = req.message().mode;
                Outcome::Reply(r)
            });
            std::future::ready(reply.map_err(Into::into))
        })
        .start()
        .await
        .context("start the echo endpoint")?;
    let client = Endpoint::builder(c.connect().await?, "bench_client")
        .start()
        .await
        .context("start the client endpoint")?;
    let result = async {
        let body = "x".repeat(payload);
        let ask = || -> anyhow::Result<Message> {
            Ok(message("ECHO", &echo, mode)?.with_param("p", body.as_str()))
        };
        for _ in 0..scale.warmup {
            client
                .request(ask()?, REQUEST_TIMEOUT)
                .await
                .context("warm-up request")?;
        }
        let mut lat = Latencies::new();
        let deadline = Instant::now() + scale.rtt_cap;
        for _ in 0..scale.rtt_count {
            let m = ask()?;
            let t = Instant::now();
            client
                .request(m, REQUEST_TIMEOUT)
                .await
                .context("request")?;
            lat.record(t.elapsed());
            if Instant::now() >= deadline {
                break;
            }
        }
        Ok(lat)
    }
    .await;
    close_all(&[&client, &echo]).await;
    result
}
