//! N registered, idle service connections on one `commsd`: its memory per connection, and
//! proof that it still routes among them; the RSS after closing them is reported too.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::commsd;
use crate::rss::rss_kib;

type Conn = BufReader<UnixStream>;

/// Reads lines until one contains `needle`, for at most `within`.
pub async fn read_until<R: AsyncBufRead + Unpin>(
    conn: &mut R,
    needle: &str,
    within: Duration,
) -> anyhow::Result<String> {
    let mut line = String::new();
    tokio::time::timeout(within, async {
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                bail!("connection closed before `{needle}`");
            }
            if line.contains(needle) {
                return Ok(line.clone());
            }
        }
    })
    .await
    .with_context(|| format!("no `{needle}` within {within:?}"))?
}

/// How long one expected line may take here.
const WAIT: Duration = Duration::from_secs(30);

async fn open(socket: &std::path::Path, i: usize) -> anyhow::Result<Conn> {
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connection {i}"))?;
    let mut conn = BufReader::new(stream);
    conn.get_mut()
        .write_all(format!("REGISTER service=load_{i};version=1\n").as_bytes())
        .await?;
    read_until(&mut conn, "READY", WAIT).await?;
    Ok(conn)
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Runs the connection load and returns the report.
pub async fn run(count: usize, concurrency: usize) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(count >= 2, "--count must be at least 2");
    let daemon = commsd::start(count + 16).await?;
    let pid = commsd::pid(&daemon)?;
    let socket = commsd::socket(&daemon)?;
    settle().await;
    let before = rss_kib(Some(pid))?;
    let client_before = rss_kib(None)?;

    eprintln!("comms-load: opening {count} connections ({concurrency} at a time)...");
    let started = Instant::now();
    let mut conns: Vec<Conn> = stream::iter(0..count)
        .map(|i| open(socket, i))
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    let connect_secs = started.elapsed().as_secs_f64();
    settle().await;
    let after = rss_kib(Some(pid))?;
    let client_after = rss_kib(None)?;

    // Still serving: the first connection reaches the last one, and a new connection gets
    // the full service list.
    let last = count - 1;
    let sent = Instant::now();
    conns[0]
        .get_mut()
        .write_all(format!("load_{last}/LOAD_PING n=1\n").as_bytes())
        .await?;
    let got = read_until(&mut conns[last], "LOAD_PING", WAIT).await?;
    let ping_ms = sent.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(got.starts_with("<load:load_0 "), "unexpected {got:?}");
    let mut probe = BufReader::new(UnixStream::connect(socket).await?);
    probe.get_mut().write_all(b"LIST_SERVICES\n").await?;
    let list = read_until(&mut probe, "SERVICES", WAIT).await?;
    let listed = list
        .split("list=")
        .nth(1)
        .and_then(|l| l.split(';').next())
        .map_or(0, |l| l.split(',').filter(|s| !s.is_empty()).count());
    anyhow::ensure!(
        listed == count,
        "LIST_SERVICES lists {listed}, expected {count}"
    );

    drop(conns);
    drop(probe);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let closed = rss_kib(Some(pid))?;
    let per_conn = (after.saturating_sub(before)) as f64 / count as f64;
    Ok(json!({
        "connections": count,
        "connect_and_register_secs": round(connect_secs),
        "registrations_per_sec": round(count as f64 / connect_secs),
        "daemon_rss_idle_kib": before,
        "daemon_rss_with_connections_kib": after,
        "daemon_kib_per_connection": round(per_conn),
        "daemon_rss_after_close_kib": closed,
        "client_kib_per_connection": round(client_after.saturating_sub(client_before) as f64 / count as f64),
        "first_to_last_ping_ms": round(ping_ms),
        "listed_services": listed,
    }))
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
