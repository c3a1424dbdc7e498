//! Connection budgets (issue 18, point 5): a service connection that sends no complete valid
//! line within `first_line_timeout` is closed (one that sends keeps working without
//! REGISTER); Unix, loopback TCP and TLS have separate `max_connections` budgets; the TLS
//! listener caps connections per address.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

#[path = "daemon_util.rs"]
mod daemon_util;

use std::time::Duration;

use comms_test_support::{client_config, LineClient, Pki};
use daemon_util::{start_with, Raw};
use tokio::io::AsyncReadExt;

/// 1,000 idle loopback TCP connections (the whole TCP budget) do not stop a new Unix
/// REGISTER; one more TCP connection is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_flood_does_not_take_unix_slots() {
    let (_dir, h) = start_with(|c| c.max_connections = 1000).await;
    let addr = h.tcp_addr().unwrap();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Every one of them has its permit once the daemon counted it accepted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.stats().connections_accepted < 1000 {
        assert!(tokio::time::Instant::now() < deadline, "1000 TCP accepts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _svc = Raw::unix_as(&h, "budget_svc").await;
    // The TCP budget itself is full: one more TCP connection is closed at once.
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf))
        .await
        .expect("refused connection closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "over-budget TCP connection gets EOF");
    assert!(h.stats().connections_refused >= 1);
    drop(idle);
}

/// A connection that sends nothing, or only a partial line, is closed after the deadline; one
/// that sent a valid line (a stock sender that never registers) stays open.
#[tokio::test]
async fn idle_connections_closed_after_the_deadline() {
    let (_dir, h) = start_with(|c| c.first_line_timeout = Duration::from_millis(300)).await;
    let mut silent = Raw::tcp(&h).await;
    let mut partial = Raw::unix(&h).await;
    partial.send_raw(b"REGISTER service=never_fin").await;
    let mut sender = Raw::tcp(&h).await;
    sender.send("CLUSTER_STATUS").await;
    let t0 = std::time::Instant::now();
    assert!(silent.eof().await.is_empty(), "silent connection closed");
    assert!(
        partial.eof().await.is_empty(),
        "partial-line connection closed"
    );
    assert!(t0.elapsed() < Duration::from_secs(3));
    // The sender's line was answered (unregistered senders are served, as by the stock
    // daemon: `CLUSTER_UP`/`DOWN` and `CLUSTER_COMPLETE`/`INCOMPLETE`), and it stays connected (no EOF) well past the deadline.
    for _ in 0..2 {
        let reply = sender.line().await;
        assert!(reply.contains("CLUSTER_"), "{reply}");
    }
    sender.silent(900).await;
    sender.send("CLUSTER_STATUS").await;
    for _ in 0..2 {
        let reply = sender.line().await;
        assert!(reply.contains("CLUSTER_"), "{reply}");
    }
    assert_eq!(h.stats().idle_connections_closed, 2);
}

/// The TLS listener accepts at most `max_per_address` connections from one address; others
/// (and local services) are unaffected.
#[tokio::test]
async fn tls_per_address_cap() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("ca").unwrap();
    let server = pki.leaf(&ca, "server", &["localhost"]).unwrap();
    let (_dir, h) = start_with(|c| {
        let mut t = commsd::TlsListenerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            &server.cert,
            &server.key,
        );
        t.max_per_address = 3;
        c.tls = Some(t);
    })
    .await;
    let addr = h.tls_addr().unwrap();
    let cfg = client_config(&ca.pem, None).unwrap();
    let mut held = Vec::new();
    for i in 0..3 {
        let mut c = LineClient::tls(addr, cfg.clone()).await.unwrap();
        let (help, _ready) = c.register(&format!("tls_svc_{i}")).await.unwrap();
        assert!(help.contains("communicatord HELP"), "{help}");
        held.push(c);
    }
    // The fourth from the same address is closed before it can say anything.
    let fourth = async {
        let mut c = LineClient::tls(addr, cfg.clone()).await?;
        c.send("REGISTER service=tls_svc_4;version=1").await?;
        c.line().await
    };
    assert!(
        fourth.await.is_err(),
        "4th TLS connection from one address refused"
    );
    // A local service still registers.
    let _svc = Raw::unix_as(&h, "local_svc").await;
    // Closing one frees its place.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = LineClient::tls(addr, cfg).await.unwrap();
    let (help, _) = again.register("tls_svc_again").await.unwrap();
    assert!(help.contains("communicatord HELP"), "{help}");
}
