//! Local round trips on one `commsd` while a peer floods it with link-state announcements
//! (issue 18, point 4): a rogue comms peer links (plain, `--insecure-peers` on loopback) and
//! sends `--rate` `NODE_STATE` lines a second about 200 made-up nodes, each naming all the
//! others as peers (the costly shape: every new announcement changes the graph); meanwhile two
//! local services exchange PINGs (send, wait for it, 1 ms pause), timed into a histogram.
//! The same round trips are timed first without the flood, as the baseline.

use std::time::{Duration, Instant};

use anyhow::Context;
use comms_test_support::{CommsdSpec, Stderr};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::conns::read_until;

type Conn = BufReader<TcpStream>;

const FAKE_NODES: usize = 200;

/// How long one expected line may take here.
const WAIT: Duration = Duration::from_secs(10);

async fn line_with(conn: &mut Conn, needle: &str) -> anyhow::Result<String> {
    read_until(conn, needle, WAIT).await
}

async fn service(addr: std::net::SocketAddr, name: &str) -> anyhow::Result<Conn> {
    let mut c = BufReader::new(TcpStream::connect(addr).await?);
    c.get_mut()
        .write_all(format!("REGISTER service={name};version=1\n").as_bytes())
        .await?;
    line_with(&mut c, "READY").await?;
    Ok(c)
}

/// Times round trips tx → rx for `secs`; the histogram (µs).
async fn round_trips(tx: &mut Conn, rx: &mut Conn, secs: u64) -> anyhow::Result<Histogram<u64>> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let t = Instant::now();
        tx.get_mut()
            .write_all(format!("an_rx/PING n={n}\n").as_bytes())
            .await?;
        line_with(rx, &format!("PING n={n}")).await?;
        h.record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX))?;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(h)
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "round_trips": h.len(),
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

/// Runs the flood for `secs` at `rate` announcements a second; the report.
pub async fn run(secs: u64, rate: u64) -> anyhow::Result<serde_json::Value> {
    let daemon = CommsdSpec::find()?
        .name("announce")
        .tcp_any()
        .args(["--no-udp"])
        .peers("127.0.0.1:0".parse()?, &[])
        .env("RUST_LOG", "warn")
        .stderr(Stderr::Inherit)
        .start()
        .await?;
    let l = daemon.listeners();
    let (tcp, peer) = (
        l.tcp.context("no tcp listener")?,
        l.peer.context("no peer listener")?,
    );
    let mut rx = service(tcp, "an_rx").await?;
    let mut tx = service(tcp, "an_tx").await?;
    let quiet = round_trips(&mut tx, &mut rx, secs.min(5)).await?;

    let mut rogue = BufReader::new(TcpStream::connect(peer).await?);
    rogue
        .get_mut()
        .write_all(
            b"CONNECT comms_link_state=1;my_address=127.0.0.1:9;server_name=rogue;version=1\n",
        )
        .await?;
    line_with(&mut rogue, "ACCEPT").await?;
    let (rd, mut wr) = rogue.into_inner().into_split();
    tokio::spawn(async move {
        // Read and drop what the daemon says (its flood of our announcements back, etc.).
        let mut rd = BufReader::new(rd);
        let mut s = String::new();
        while rd.read_line(&mut s).await.is_ok_and(|n| n > 0) {
            s.clear();
        }
    });
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros();
    let fakes: Vec<String> = (0..FAKE_NODES).map(|i| format!("fake{i}")).collect();
    let peers = format!("rogue,{}", fakes.join(","));
    let flood = tokio::spawn(async move {
        // Batches every 10 ms.
        let per_batch = (rate / 100).max(1);
        let mut seq = 1u64;
        let mut sent = 0u64;
        let end = Instant::now() + Duration::from_secs(secs);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while Instant::now() < end {
            tick.tick().await;
            let mut batch = String::new();
            for k in 0..per_batch {
                let node = if k == 0 {
                    "rogue"
                } else {
                    fakes[(sent as usize + k as usize) % FAKE_NODES].as_str()
                };
                batch.push_str(&format!(
                    "NODE_STATE address=127.0.0.1:9;epoch={epoch};node={node};peers={peers};seq={seq};services=svc{k}\n"
                ));
            }
            seq += 1;
            sent += per_batch;
            if wr.write_all(batch.as_bytes()).await.is_err() {
                break;
            }
        }
        sent
    });
    let flooded = round_trips(&mut tx, &mut rx, secs).await?;
    let sent = flood.await?;
    Ok(json!({
        "announcements_sent": sent,
        "announcements_per_s": sent / secs.max(1),
        "quiet": summary(&quiet),
        "during_flood": summary(&flooded),
    }))
}
