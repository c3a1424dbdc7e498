//! Hostile UDP datagrams against the real `commsd` binary: each is dropped with a warning that
//! names the reason on the daemon's log (stderr); the daemon keeps running, a good datagram
//! sent after it is delivered (nothing accepted is lost), and two services on the same daemon
//! keep exchanging messages over their streams.
#![allow(clippy::unwrap_used)]

#[path = "daemon_util.rs"]
mod util;

use std::time::Duration;

use comms_test_support::{Commsd, CommsdSpec, Stderr};
use util::{Raw, NODE, WAIT};

/// A `commsd` child process (TCP, UDP and a Unix socket) with its log (stderr) captured.
async fn start(extra: &[&str]) -> Commsd {
    CommsdSpec::new(env!("CARGO_BIN_EXE_commsd"))
        .name(NODE)
        .tcp_any()
        .args(["--udp", "127.0.0.1:0"])
        .unix_in_dir()
        .args(extra)
        .env("RUST_LOG", "info,commsd=debug")
        .env("NO_COLOR", "1")
        .stderr(Stderr::Capture)
        .start()
        .await
        .unwrap()
}

/// Waits for a log line containing every one of `parts`; returns it.
async fn expect_log(d: &mut Commsd, parts: &[&str]) -> String {
    d.expect_stderr(parts, WAIT).await.unwrap()
}

/// Sends `datagram`, then checks: the drop is logged with `why`, the daemon is alive, a good
/// datagram to `victim` is delivered and the bystanders still talk.
async fn hostile(
    d: &mut Commsd,
    udp: &tokio::net::UdpSocket,
    victim: &mut Raw,
    by: &mut (Raw, Raw),
    datagram: &[u8],
    why: &[&str],
    n: u32,
) {
    udp.send_to(datagram, d.listeners().udp.unwrap())
        .await
        .unwrap();
    let l = expect_log(d, why).await;
    // Every drop is logged with its reason: at WARN the first of its kind in each interval,
    // at DEBUG the others (a flood must not flood the log).
    assert!(
        l.contains("WARN") || l.contains("DEBUG"),
        "not a drop log line: {l}"
    );
    assert!(d.is_running(), "commsd died on {datagram:?}");
    udp.send_to(
        format!("victim/PING n={n}").as_bytes(),
        d.listeners().udp.unwrap(),
    )
    .await
    .unwrap();
    victim.expect(&format!("<{NODE}: victim/PING n={n}")).await;
    by.0.send(&format!("by_b/CHAT n={n}")).await;
    by.1.expect(&format!("<{NODE}:by_a by_b/CHAT n={n}")).await;
}

#[tokio::test]
async fn hostile_datagrams_are_dropped_with_a_logged_reason() {
    let mut d = start(&[]).await;
    let h_unix = d.socket().unwrap().to_owned();
    let mut victim = Raw::unix_at(&h_unix).await;
    victim.send("REGISTER service=victim;version=1").await;
    victim.expect(&format!("<{NODE}:communicatord HELP")).await;
    victim
        .expect_prefix(&format!("<{NODE}:communicatord READY"))
        .await;
    let mut by = (Raw::unix_at(&h_unix).await, Raw::unix_at(&h_unix).await);
    for (raw, name) in [(&mut by.0, "by_a"), (&mut by.1, "by_b")] {
        raw.send(&format!("REGISTER service={name};version=1"))
            .await;
        raw.expect(&format!("<{NODE}:communicatord HELP")).await;
        raw.expect_prefix(&format!("<{NODE}:communicatord READY"))
            .await;
    }
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dropped = "udp datagram dropped";

    let mut deep = b"{\"command\":\"PING\",\"service\":\"victim\",\"parameters\":{\"p\":".to_vec();
    deep.resize(1000, b'[');
    let over = format!("victim/PING x={}", "y".repeat(1100));
    let huge = format!("victim/PING x={}", "y".repeat(60_000));
    let cases: Vec<(&[u8], Vec<&str>)> = vec![
        (
            b"victim/PING n=\xff\xfe",
            vec![dropped, "invalid UTF-8 at byte 14"],
        ),
        (b"\xc3", vec![dropped, "invalid UTF-8 at byte 0"]),
        (b"victim/PING n=a\0b", vec![dropped, "NUL byte at byte 15"]),
        (b"\0", vec![dropped, "NUL byte at byte 0"]),
        (&deep, vec![dropped, "recursion limit exceeded"]),
        (b"", vec![dropped, "empty message line"]),
        (
            over.as_bytes(),
            vec![dropped, "datagram too long: over 1024 bytes"],
        ),
        (
            huge.as_bytes(),
            vec![dropped, "datagram too long: over 1024 bytes"],
        ),
        (
            b"victim/lower-case x=1",
            vec!["udp datagram not routable", "invalid command"],
        ),
        (
            b"NO_SUCH_COMMAND a=1",
            vec!["not accepted over udp", "NO_SUCH_COMMAND"],
        ),
        (
            b"REGISTER service=victim;version=1",
            vec!["not accepted over udp", "REGISTER"],
        ),
        (b"STOP", vec!["not accepted over udp", "STOP"]),
        (
            b"communicatord/SHUTDOWN",
            vec!["not accepted over udp", "SHUTDOWN"],
        ),
    ];
    for (i, (datagram, why)) in cases.iter().enumerate() {
        hostile(&mut d, &udp, &mut victim, &mut by, datagram, why, i as u32).await;
    }
    // A spoofed prefix is replaced by the UDP stamp `<NODE: ` (no service can be claimed).
    for spoof in ["<evil:mallory ", "<vm:by_a ", "<vm:communicatord "] {
        udp.send_to(
            format!("{spoof}victim/PING s=1").as_bytes(),
            d.listeners().udp.unwrap(),
        )
        .await
        .unwrap();
        victim.expect(&format!("<{NODE}: victim/PING s=1")).await;
    }
    // The live name was not taken over by the UDP REGISTER, and the daemon never stopped.
    by.0.send("victim/PING from=by_a").await;
    victim
        .expect(&format!("<{NODE}:by_a victim/PING from=by_a"))
        .await;
    victim.silent(100).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(d.is_running());
    d.kill().await.unwrap();
}

/// With a secret configured, a missing or wrong secret is logged and the datagram dropped.
#[tokio::test]
async fn datagrams_without_the_secret_are_dropped_with_a_logged_reason() {
    let mut d = start(&["--udp-secret", "s3cret"]).await;
    let mut victim = Raw::unix_at(d.socket().unwrap()).await;
    victim.send("REGISTER service=victim;version=1").await;
    victim.expect(&format!("<{NODE}:communicatord HELP")).await;
    victim
        .expect_prefix(&format!("<{NODE}:communicatord READY"))
        .await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(b"victim/PING n=1", d.listeners().udp.unwrap())
        .await
        .unwrap();
    expect_log(
        &mut d,
        &["udp datagram dropped", "datagram has no secret_code"],
    )
    .await;
    udp.send_to(
        b"victim/PING n=2;secret_code=guess",
        d.listeners().udp.unwrap(),
    )
    .await
    .unwrap();
    expect_log(&mut d, &["udp datagram dropped", "wrong secret_code"]).await;
    udp.send_to(
        b"victim/PING n=3;secret_code=s3cret",
        d.listeners().udp.unwrap(),
    )
    .await
    .unwrap();
    victim.expect(&format!("<{NODE}: victim/PING n=3")).await;
    assert!(d.is_running());
    d.kill().await.unwrap();
}
