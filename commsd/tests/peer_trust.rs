//! Peer trust (docs/HARDENING.md "Peer trust"), with in-process daemons on real sockets and a
//! rogue peer speaking raw lines:
//! - a forged `NODE_STATE` for a linked node (`seq=u64::MAX`, no peers, its service claimed)
//!   changes nothing: routing to that node's service works, also after the rogue leaves and
//!   after the node restarts;
//! - forged origin stamps (the local node, `communicatord`, a node not behind the peer) are
//!   refused and counted;
//! - a line whose origin the peer announces just after it (routes lagging the line) is held,
//!   then delivered, not refused;
//! - 1,000 announcements a second from a peer do not stall local round trips (< 100 ms);
//! - a peer listener needs authentication, `plain_peers` or `insecure`.
#![allow(clippy::unwrap_used)]

#[path = "cluster_util.rs"]
mod util;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use commsd::{Daemon, DaemonConfig, DaemonHandle, PeerConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use util::{list, loopback0, unique, Raw};

fn config(
    dir: &tempfile::TempDir,
    name: &str,
    listen: SocketAddr,
    neighbors: Vec<SocketAddr>,
) -> DaemonConfig {
    let mut cfg = DaemonConfig::ephemeral(
        name,
        dir.path().join(format!("{name}-{}.sock", unique("s"))),
    );
    cfg.udp = None;
    cfg.peers = PeerConfig {
        listen: Some(listen),
        allow_loopback: true,
        neighbors,
        retry: vec![Duration::from_millis(200)],
        insecure: true,
        ..PeerConfig::default()
    };
    cfg
}

async fn start(dir: &tempfile::TempDir, name: &str, neighbors: Vec<SocketAddr>) -> DaemonHandle {
    Daemon::start(config(dir, name, loopback0(), neighbors))
        .await
        .unwrap()
}

async fn map(h: &DaemonHandle) -> String {
    let mut c = Raw::connect(h.tcp_addr().unwrap()).await;
    c.send("CLUSTER_MAP").await;
    c.expect_prefix("CLUSTER_MAP ").await
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + util::CONVERGE;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A rogue comms peer: links to `to` as `name`, reads and discards whatever it is sent.
async fn rogue(to: SocketAddr, name: &str, comms: bool) -> tokio::net::tcp::OwnedWriteHalf {
    let s = TcpStream::connect(to).await.unwrap();
    let (r, mut w) = s.into_split();
    let flag = if comms { "comms_link_state=1;" } else { "" };
    w.write_all(
        format!("CONNECT {flag}my_address=127.0.0.1:9;server_name={name};version=1\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut r = BufReader::new(r);
    let mut first = String::new();
    r.read_line(&mut first).await.unwrap();
    assert!(
        first.contains(":communicatord ACCEPT "),
        "rogue not accepted: {first:?}"
    );
    tokio::spawn(async move {
        let mut s = String::new();
        while r.read_line(&mut s).await.is_ok_and(|n| n > 0) {
            s.clear();
        }
    });
    w
}

fn now_us() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// `pt_cli` on `a` sends to `pt_svc` (on b): the listener gets it.
async fn reaches(cli: &mut Raw, listener: &mut Raw, a: &str, n: u32) {
    cli.send(&format!("pt_svc/PING n={n}")).await;
    listener
        .expect(&format!("<{a}:pt_cli pt_svc/PING n={n}"))
        .await;
}

#[tokio::test]
async fn forged_node_state_changes_nothing_also_after_the_rogue_leaves_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let base = unique("pt");
    let (an, bn, rn) = (
        format!("{base}a"),
        format!("{base}b"),
        format!("{base}0rogue"),
    );
    let a = start(&dir, &an, vec![]).await;
    let b_listen = loopback0();
    let b = Daemon::start(config(&dir, &bn, b_listen, vec![a.peer_addr().unwrap()]))
        .await
        .unwrap();
    let b_peer = b.peer_addr().unwrap();
    let mut listener = util::service_on(&b, &bn, "pt_svc", "PING").await;
    let mut cli = util::service_on(&a, &an, "pt_cli", "PONG").await;
    until("b's service seen from a", async || {
        list(&map(&a).await, "services").contains(&format!("{bn}:pt_svc"))
    })
    .await;
    reaches(&mut cli, &mut listener, &an, 1).await;

    let mut w = rogue(a.peer_addr().unwrap(), &rn, true).await;
    let epoch = now_us();
    let attack = format!(
        "NODE_STATE node={bn};seq=18446744073709551615;peers=\n\
         NODE_STATE address=127.0.0.1:9;epoch={epoch};node={bn};peers={rn};seq=999;services=pt_svc\n\
         NODE_STATE address=127.0.0.1:9;epoch={epoch};node={rn};peers={an},{bn};seq=1;services=\n"
    );
    w.write_all(attack.as_bytes()).await.unwrap();
    until("the forgeries counted", async || {
        a.stats().node_states_refused >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = map(&a).await;
    assert!(
        list(&m, "links")
            .iter()
            .any(|l| l.contains(&an) && l.contains(&bn)),
        "a-b link kept: {m}"
    );
    for n in 2..5 {
        reaches(&mut cli, &mut listener, &an, n).await;
    }

    drop(w);
    until("the rogue gone", async || !map(&a).await.contains(&rn)).await;
    reaches(&mut cli, &mut listener, &an, 5).await;

    b.shutdown().await;
    drop(listener);
    let b2 = Daemon::start(config(&dir, &bn, b_peer, vec![a.peer_addr().unwrap()]))
        .await
        .unwrap();
    let mut listener = util::service_on(&b2, &bn, "pt_svc", "PING").await;
    until("restarted b's service seen from a", async || {
        list(&map(&a).await, "services").contains(&format!("{bn}:pt_svc"))
    })
    .await;
    reaches(&mut cli, &mut listener, &an, 6).await;
    b2.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_line_ahead_of_the_announcement_that_links_its_origin_is_delivered() {
    // A relay forwards a line as soon as its link is up; the announcement that puts the
    // origin behind it may come just after. The line waits for the routes, it is not lost.
    let dir = tempfile::tempdir().unwrap();
    let an = unique("pth");
    let a = start(&dir, &an, vec![]).await;
    let mut agent = util::service_on(&a, &an, "agent_one", "RUN").await;

    let (rn, gn) = (unique("pthr"), unique("pthg"));
    let mut w = rogue(a.peer_addr().unwrap(), &rn, true).await;
    let epoch = now_us();
    let lines = format!(
        "<{gn}:server agent_one/RUN n=1\n<{rn}:x agent_one/RUN n=2\n\
         NODE_STATE address=127.0.0.1:9;epoch={epoch};node={rn};peers={an},{gn};seq=1;services=\n\
         NODE_STATE address=127.0.0.1:8;epoch={epoch};node={gn};peers={rn};seq=1;services=server\n"
    );
    w.write_all(lines.as_bytes()).await.unwrap();
    agent
        .expect(&format!("<{gn}:server agent_one/RUN n=1"))
        .await;
    agent.expect(&format!("<{rn}:x agent_one/RUN n=2")).await;
    assert_eq!(a.stats().forged_origins, 0);
    a.shutdown().await;
}

#[tokio::test]
async fn forged_origin_stamps_from_a_peer_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let an = unique("pta");
    let a = start(&dir, &an, vec![]).await;
    let mut agent = util::service_on(&a, &an, "agent_one", "RUN,QUITTING").await;

    let rn = unique("ptr");
    let mut w = rogue(a.peer_addr().unwrap(), &rn, true).await;
    let lines = format!(
        "<{an}:server agent_one/RUN n=1\n<{an}:communicatord */QUITTING\n\
         <ghost:server agent_one/RUN n=2\n<{rn}:communicatord */QUITTING\n<{rn}:x agent_one/RUN n=3\n"
    );
    w.write_all(lines.as_bytes()).await.unwrap();
    agent.expect(&format!("<{rn}:x agent_one/RUN n=3")).await;
    assert_eq!(a.stats().forged_origins, 4);

    let sn = unique("pts");
    let mut s = rogue(a.peer_addr().unwrap(), &sn, false).await;
    let lines = format!("<{an}:communicatord */QUITTING\n<{sn}:communicatord */QUITTING\n<{sn}:x agent_one/RUN n=4\n");
    s.write_all(lines.as_bytes()).await.unwrap();
    agent.expect(&format!("<{sn}:x agent_one/RUN n=4")).await;
    assert_eq!(a.stats().forged_origins, 6);
    a.shutdown().await;
}

#[tokio::test]
async fn announcement_flood_does_not_stall_local_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let an = unique("ptf");
    let a = start(&dir, &an, vec![]).await;
    let mut rx = util::service_on(&a, &an, "pt_rx", "PING").await;
    let mut tx = util::service_on(&a, &an, "pt_tx", "PONG").await;

    let rn = unique("ptr");
    let mut w = rogue(a.peer_addr().unwrap(), &rn, true).await;
    let fakes: Vec<String> = (0..200).map(|i| format!("{rn}f{i}")).collect();
    let epoch = now_us();
    let flood = tokio::spawn(async move {
        let mut all = fakes.clone();
        all.push(rn.clone());
        let peers = all.join(",");
        let mut seq = 1u64;
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_secs(3) {
            // 100 announcements every 100 ms: 1,000 a second.
            let mut batch = String::new();
            for k in 0..100 {
                let node = if k == 0 {
                    rn.clone()
                } else {
                    fakes[(sent as usize + k) % fakes.len()].clone()
                };
                batch.push_str(&format!(
                    "NODE_STATE address=127.0.0.1:9;epoch={epoch};node={node};peers={peers};seq={seq};services=svc{k}\n"
                ));
            }
            seq += 1;
            sent += 100;
            if w.write_all(batch.as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    });
    let mut worst = Duration::ZERO;
    let mut n = 0u32;
    while !flood.is_finished() {
        n += 1;
        let t = Instant::now();
        tx.send(&format!("pt_rx/PING n={n}")).await;
        rx.expect(&format!("<{an}:pt_tx pt_rx/PING n={n}")).await;
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = flood.await.unwrap();
    assert!(sent >= 2_500, "the flood ran ({sent} announcements)");
    assert!(n > 50, "round trips measured: {n}");
    assert!(
        worst < Duration::from_millis(100),
        "a local round trip took {worst:?} during the flood"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn a_peer_listener_needs_authentication_plain_peers_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir, &unique("ptc"), loopback0(), vec![]);
    cfg.peers.insecure = false;
    let err = match Daemon::start(cfg.clone()).await {
        Ok(_) => panic!("started without peer authentication"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("insecure_peers"), "{err}");

    // Plain peers named: only those addresses link.
    cfg.peers.plain_peers = vec!["127.0.0.2".parse().unwrap()];
    let a = Daemon::start(cfg).await.unwrap();
    let mut p = Raw::connect(a.peer_addr().unwrap()).await;
    p.send(&format!(
        "CONNECT my_address=127.0.0.1:9;server_name={};version=1",
        unique("ptx")
    ))
    .await;
    p.expect("REFUSE").await;
    assert_eq!(a.stats().peer_plain_refused, 1);
    a.shutdown().await;
}
