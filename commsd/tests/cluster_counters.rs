//! A ring of four **in-process** daemons (real sockets), to read their counters: a unicast
//! between opposite nodes costs exactly two forwards (one path, never flooded), a cluster
//! broadcast costs exactly four forwards in a ring of four, of which one duplicate copy is
//! dropped (at the opposite node) and none echoes back to the originator.
#![allow(clippy::unwrap_used)]

#[path = "cluster_util.rs"]
mod util;

use std::net::SocketAddr;
use std::time::Duration;

use commsd::{DaemonHandle, StatsSnapshot};
use util::{list, map, unique, Raw};

async fn start(dir: &tempfile::TempDir, name: &str, neighbors: Vec<SocketAddr>) -> DaemonHandle {
    util::in_process(dir.path(), name, neighbors, None).await
}

/// Polls until `f` holds (bounded).
async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + util::CONVERGE;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn forwarded(hs: &[DaemonHandle]) -> Vec<u64> {
    hs.iter().map(|h| h.stats().lines_forwarded).collect()
}

fn dups(hs: &[DaemonHandle]) -> Vec<u64> {
    hs.iter()
        .map(|h| {
            let s: StatsSnapshot = h.stats();
            s.broadcast_duplicates
        })
        .collect()
}

#[tokio::test]
async fn counters_prove_one_path_per_unicast_and_one_copy_per_node_per_broadcast() {
    let dir = tempfile::tempdir().unwrap();
    let base = unique("ct");
    let names: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|s| format!("{base}{s}"))
        .collect();
    let a = start(&dir, &names[0], vec![]).await;
    let b = start(&dir, &names[1], vec![a.peer_addr().unwrap()]).await;
    let c = start(&dir, &names[2], vec![b.peer_addr().unwrap()]).await;
    let d = start(
        &dir,
        &names[3],
        vec![c.peer_addr().unwrap(), a.peer_addr().unwrap()],
    )
    .await;
    let hs = [a, b, c, d];
    for h in &hs {
        until("the ring", async || list(&map(h).await, "links").len() == 4).await;
    }

    let mut listeners = Vec::new();
    for (i, h) in hs.iter().enumerate() {
        let l = util::service_on(h, &names[i], &format!("ct_l{i}"), "HELLO").await;
        listeners.push(l);
    }
    let mut sx = Raw::connect(hs[0].tcp_addr().unwrap()).await;
    sx.register(&names[0], "ct_sx", "PONG").await;
    until("every service announced", async || {
        list(&map(&hs[0]).await, "services").len() == 5
    })
    .await;

    // Unicast A → C (two hops, through B): two forwards in the whole ring.
    let before = forwarded(&hs);
    sx.send("ct_l2/HELLO n=1").await;
    listeners[2]
        .expect(&format!("<{}:ct_sx ct_l2/HELLO n=1", names[0]))
        .await;
    let after = forwarded(&hs);
    let delta: Vec<u64> = after.iter().zip(&before).map(|(x, y)| x - y).collect();
    assert_eq!(
        delta,
        vec![1, 1, 0, 0],
        "A and B forward once, C and D never"
    );

    // Broadcast from A: A→B, A→D, B→C, D→C = 4 forwards; C drops the second copy.
    let before = forwarded(&hs);
    let dups_before = dups(&hs);
    sx.send("*/HELLO n=2").await;
    for l in &mut listeners {
        l.expect(&format!("<{}:ct_sx */HELLO n=2", names[0])).await;
    }
    until("the duplicate copy reached C", async || {
        dups(&hs).iter().sum::<u64>() > dups_before.iter().sum::<u64>()
    })
    .await;
    for l in &mut listeners {
        l.silent(200).await;
    }
    let delta: Vec<u64> = forwarded(&hs)
        .iter()
        .zip(&before)
        .map(|(x, y)| x - y)
        .collect();
    assert_eq!(
        delta,
        vec![2, 1, 0, 1],
        "each link carries it once, nothing back to A"
    );
    let dup_delta: Vec<u64> = dups(&hs)
        .iter()
        .zip(&dups_before)
        .map(|(x, y)| x - y)
        .collect();
    assert_eq!(dup_delta, vec![0, 0, 1, 0], "only C sees a second copy");
    for h in hs {
        h.shutdown().await;
    }
}

/// Throughput through an intermediate (A → B → C) against one daemon (A → A), raw lines,
/// printed; `cargo nextest run -p comms-native --test cluster_counters --run-ignored only`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn measure_forwarding_throughput() {
    const N: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let base = unique("tp");
    let a = start(&dir, &format!("{base}a"), vec![]).await;
    let b = start(&dir, &format!("{base}b"), vec![a.peer_addr().unwrap()]).await;
    let c = start(&dir, &format!("{base}c"), vec![b.peer_addr().unwrap()]).await;
    until("the line", async || {
        list(&map(&a).await, "links").len() == 2
    })
    .await;
    let mut rx_local = Raw::connect(a.tcp_addr().unwrap()).await;
    rx_local
        .register(&format!("{base}a"), "tp_local", "X")
        .await;
    let mut rx_far = util::service_on(&c, &format!("{base}c"), "tp_far", "X").await;
    until("tp_far announced", async || {
        list(&map(&a).await, "services").len() == 2
    })
    .await;
    for (label, to, rx) in [
        ("one daemon", "tp_local", &mut rx_local),
        ("through an intermediate", "tp_far", &mut rx_far),
    ] {
        let mut tx = util::service_on(&a, &format!("{base}a"), &format!("tp_tx_{to}"), "Y").await;
        let started = std::time::Instant::now();
        let sender = tokio::spawn(async move {
            for i in 0..N {
                tx.send(&format!("{to}/X comms_id=abcdefghij{i};n={i}"))
                    .await;
            }
            tx
        });
        for _ in 0..N {
            rx.line().await;
        }
        let secs = started.elapsed().as_secs_f64();
        let _tx = sender.await.unwrap();
        println!(
            "{label}: {N} lines in {secs:.2} s = {:.0} lines/s",
            N as f64 / secs
        );
    }
    for h in [a, b, c] {
        h.shutdown().await;
    }
}
