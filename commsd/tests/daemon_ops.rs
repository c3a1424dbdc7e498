//! Operations: UDP, limits (connections, slow consumers, loopback rule) and graceful stop.

#[path = "daemon_util.rs"]
mod util;

use std::time::Duration;

use commsd::{Daemon, DaemonConfig, DaemonError};
use util::{start, start_with, Raw, NODE};

async fn udp_send(to: std::net::SocketAddr, datagram: &[u8]) {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    s.send_to(datagram, to).await.expect("send");
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within 2 s");
}

#[tokio::test]
async fn udp_unknown_command_does_not_crash_and_datagrams_are_routed_stamped() {
    let (_d, h) = start().await;
    let udp = h.udp_addr().expect("udp");
    let mut b = Raw::tcp_as(&h, "probe_b").await;
    udp_send(udp, b"NO_SUCH_COMMAND a=1").await;
    udp_send(udp, b"REGISTER service=x;version=1").await;
    udp_send(udp, b"\xff\xfe garbage").await;
    udp_send(udp, b"<evil:mallory probe_b/PING n=1").await;
    b.expect(&format!("<{NODE}: probe_b/PING n=1")).await;
    let big = format!("probe_b/PING x={}", "y".repeat(1100));
    udp_send(udp, big.as_bytes()).await;
    wait_for(|| h.stats().udp_received == 5).await;
    assert_eq!(h.stats().udp_dropped, 4);
    b.send("ALIVE").await;
    b.expect_prefix(&format!("{NODE}:probe_b/ABSOLUTELY")).await;
    h.shutdown().await;
}

#[tokio::test]
async fn udp_secret_is_enforced_and_stripped() {
    let (_d, h) = start_with(|c| c.udp_secret = Some("s3cret".into())).await;
    let udp = h.udp_addr().expect("udp");
    let mut b = Raw::tcp_as(&h, "probe_b").await;
    udp_send(udp, b"probe_b/PING n=1").await;
    udp_send(udp, b"probe_b/PING n=2;secret_code=wrong").await;
    udp_send(udp, b"probe_b/PING n=3;secret_code=s3cret").await;
    b.expect(&format!("<{NODE}: probe_b/PING n=3")).await;
    assert_eq!(h.stats().udp_dropped, 2);
    h.shutdown().await;
}

#[tokio::test]
async fn tcp_listener_must_be_loopback() {
    let mut cfg = DaemonConfig::ephemeral(NODE, "/nonexistent/never-bound.sock");
    cfg.unix_path = None;
    cfg.tcp = Some("0.0.0.0:0".parse().expect("addr"));
    let r = Daemon::start(cfg).await;
    assert!(matches!(r, Err(DaemonError::NonLoopbackTcp(_))), "{r:?}");
    let mut cfg = DaemonConfig::ephemeral("bad-name", "/nonexistent/x.sock");
    cfg.unix_path = None;
    assert!(matches!(
        Daemon::start(cfg).await,
        Err(DaemonError::InvalidName(_))
    ));
}

#[tokio::test]
async fn connections_are_capped() {
    let (_d, h) = start_with(|c| c.max_connections = 2).await;
    // The TCP listener's own budget (Unix and TLS have theirs: issue 18).
    let a = Raw::tcp_as(&h, "a").await;
    let _b = Raw::tcp_as(&h, "b").await;
    let mut c = Raw::tcp(&h).await;
    assert!(c.eof().await.is_empty());
    assert_eq!(h.stats().connections_refused, 1);
    drop(a);
    wait_for(|| h.stats().connections_accepted == 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _d_client = Raw::tcp_as(&h, "d").await;
    h.shutdown().await;
}

#[tokio::test]
async fn a_service_that_does_not_read_is_disconnected_not_waited_for() {
    let (_d, h) = start_with(|c| c.outbound_queue = 4).await;
    let mut a = Raw::tcp_as(&h, "fast").await;
    let _slow = Raw::tcp_as(&h, "slow").await;
    let payload = "x".repeat(60_000);
    let line = format!("slow/FLOOD p={payload}\n");
    // Far more than the socket buffers hold; the daemon must drop `slow`, not stall.
    for _ in 0..2000 {
        a.send_raw(line.as_bytes()).await;
        if h.stats().slow_consumers_disconnected > 0 {
            break;
        }
    }
    wait_for(|| h.stats().slow_consumers_disconnected == 1).await;
    a.send("ALIVE").await;
    a.expect_prefix(&format!("{NODE}:fast/ABSOLUTELY")).await;
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_disconnecting_then_closes() {
    let (_d, h) = start().await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    a.commands("DISCONNECTING", Some("probe_a")).await;
    let mut b = Raw::unix_as(&h, "probe_b").await;
    let sock = h.unix_path().expect("unix").to_path_buf();
    h.shutdown().await;
    let got = a.eof().await;
    assert_eq!(got, vec![format!("<{NODE}:communicatord DISCONNECTING")]);
    assert!(b.eof().await.is_empty());
    assert!(!sock.exists(), "unix socket removed");
}

#[tokio::test]
async fn stop_from_unix_stops_and_late_senders_get_quitting() {
    let (_d, h) = start_with(|c| c.shutdown_grace = Duration::from_secs(2)).await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    let mut admin = Raw::unix(&h).await;
    admin.send("STOP").await;
    wait_for(|| h.is_stopping()).await;
    a.send("probe_a/PING").await;
    assert_eq!(
        a.eof().await,
        vec![format!("<{NODE}:communicatord QUITTING")]
    );
    tokio::time::timeout(Duration::from_secs(5), h.stopped())
        .await
        .expect("stopped");
}
