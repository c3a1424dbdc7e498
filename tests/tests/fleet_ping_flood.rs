//! Issue 17, point 4: a local raw client that floods an agent with fake `PING`s and never
//! acknowledges a `PONG` cannot wedge the agent: the next `commsctl run` on it still succeeds,
//! within 2 s, on a real commsd (the one the server embeds). Nor can a flood of requests the
//! agent answers with an error reply.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test body: failures should be loud

use std::time::{Duration, Instant};

use comms_tests::fleet::Fleet;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const PINGS: usize = 10_000;
/// Requests for a command the agent does not have: each provokes an `UNKNOWN` reply, which is
/// at-least-once (the native transport's per-destination reply quota is what bounds those).
const UNKNOWNS: usize = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_pings_never_wedge_an_agent() {
    let mut fleet = Fleet::start("url = \"cd://{dir}/commsd.sock?retry=0.1,0.2,0.5\"");
    fleet.start_agent(1, "web");
    fleet
        .wait_agents("agent_1 up", Duration::from_secs(60), |agents| {
            agents.iter().any(|a| a["up"] == Value::Bool(true))
        })
        .await;

    // A raw line client: registers, sends PINGs with made-up ids, reads (and never acks) PONGs.
    let socket = fleet.dir.path().join("commsd.sock");
    let stream = UnixStream::connect(&socket).await.expect("connect commsd");
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"REGISTER service=flooder;version=1\n")
        .await
        .unwrap();
    let drain = tokio::spawn(async move {
        let mut lines = BufReader::new(read).lines();
        let mut pongs = 0usize;
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("PONG") {
                pongs += 1;
            }
        }
        pongs
    });
    let mut batch = String::new();
    for i in 0..PINGS + UNKNOWNS {
        let id = format!("01FLOOD{i:019}");
        let command = if i < PINGS { "PING" } else { "NOPE" };
        batch.push_str(&format!("agent_1/{command} comms_id={id}\n"));
        if i % 500 == 499 {
            write.write_all(batch.as_bytes()).await.unwrap();
            batch.clear();
        }
    }
    write.write_all(batch.as_bytes()).await.unwrap();
    write.flush().await.unwrap();
    // Let the agent answer the flood (its PONGs would fill a shared outbox before the fix).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let started = Instant::now();
    let (code, lines) = fleet
        .ctl(&[
            "run",
            "--agent",
            "agent_1",
            "--timeout",
            "10",
            "--",
            "sh",
            "-c",
            "echo still-here",
        ])
        .await;
    let took = started.elapsed();
    if code != 0 || took > Duration::from_secs(2) {
        fleet.dump_logs();
    }
    assert_eq!(code, 0, "commsctl run after the PING flood: {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["data"].as_str().is_some_and(|d| d.contains("still-here"))),
        "{lines:?}"
    );
    assert!(took <= Duration::from_secs(2), "commsctl run took {took:?}");
    drop(write);
    drain.abort();
}
