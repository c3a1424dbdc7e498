//! `cdu:` over real sockets: a send-only UDP transport reaches a `cd:` endpoint through the
//! daemon (secret checked and stripped); at-least-once sends, receiving, and oversize
//! messages are refused client-side with clear errors; the daemon drops and counts oversize,
//! unsigned and unparseable datagrams and keeps routing good ones.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use comms_core::Connect;
use std::time::Duration;

use comms_core::{Address, Advertisement, Endpoint, Error, Message, Transport};
use comms_native::transport::{DatagramTransport, NativeTransport};
use comms_test_support::Probe;
use commsd::{Daemon, DaemonConfig, DaemonHandle, StatsSnapshot};
use tokio::net::UdpSocket;

const SECRET: &str = "s3cret";
const NODE: &str = "vm";
const WAIT: Duration = Duration::from_secs(5);

/// An in-process daemon on a temp Unix socket and ephemeral TCP/UDP ports.
async fn start_with(f: impl FnOnce(&mut DaemonConfig)) -> (tempfile::TempDir, DaemonHandle) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = DaemonConfig::ephemeral(NODE, dir.path().join("commsd.sock"));
    f(&mut cfg);
    (dir, Daemon::start(cfg).await.expect("daemon starts"))
}

async fn wait_stats(h: &DaemonHandle, what: &str, ok: impl Fn(&StatsSnapshot) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = h.stats();
        if ok(&s) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_cdu_sender_reaches_a_cd_endpoint_and_refuses_what_udp_cannot_do() {
    let (dir, h) = start_with(|c| c.udp_secret = Some(SECRET.into())).await;
    let b = NativeTransport::connect_url(&format!(
        "cd://{}?node={NODE}&retry=0.05,0.1",
        dir.path().join("commsd.sock").display()
    ))
    .await
    .unwrap();
    b.advertise(&Advertisement::new(
        Address::new(NODE, "udp_b").unwrap(),
        vec!["SIGNAL"],
    ))
    .await
    .unwrap();
    let mut inbox = b.listen().await.unwrap();

    let udp = h.udp_addr().unwrap();
    let url = format!("cdu://127.0.0.1:{}?node={NODE}&secret={SECRET}", udp.port());
    let a = DatagramTransport::connect_url(&url).await.unwrap();
    a.advertise(&Advertisement::new(
        Address::new(NODE, "udp_a").unwrap(),
        Vec::<String>::new(),
    ))
    .await
    .unwrap();
    let to_b = b.local_address().unwrap();
    a.send(
        Message::new("SIGNAL", to_b.clone())
            .unwrap()
            .with_param("level", "7")
            .at_most_once(),
    )
    .await
    .unwrap();
    let d = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .unwrap_or_else(|_| panic!("no delivery; daemon stats {:?}", h.stats()))
        .unwrap();
    assert_eq!(d.message().command, "SIGNAL");
    assert_eq!(d.message().param("level"), Some("7"));
    assert_eq!(
        d.message().param("secret_code"),
        None,
        "the daemon strips the secret"
    );
    d.ack().await.unwrap();
    assert_eq!(h.stats().udp_dropped, 0);

    // At-least-once is refused, never silently downgraded.
    let e = a
        .send(Message::new("SIGNAL", to_b.clone()).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("at-least-once"), "{e}");

    // Oversize is refused client-side: nothing is sent.
    let received = h.stats().udp_received;
    let big = "x".repeat(2000);
    let e = a
        .send(
            Message::new("SIGNAL", to_b.clone())
                .unwrap()
                .with_param("blob", big)
                .at_most_once(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { max: 1024, .. }), "{e}");

    // Receiving is unsupported: listen, and so an Endpoint, fail clearly.
    let e = a.listen().await.unwrap_err();
    assert!(e.to_string().contains("send-only"), "{e}");
    let e = Endpoint::builder(DatagramTransport::connect_url(&url).await.unwrap(), "udp_c")
        .start()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("send-only"), "{e}");

    // A message sent after the refusals still arrives, and the oversize one never did.
    a.send(
        Message::new("SIGNAL", to_b)
            .unwrap()
            .with_param("level", "8")
            .at_most_once(),
    )
    .await
    .unwrap();
    let d = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.message().param("level"), Some("8"));
    assert_eq!(h.stats().udp_received, received + 1);
    b.close().await.unwrap();
    h.shutdown().await;
}

#[tokio::test]
async fn a_small_max_datagram_option_is_enforced_client_side() {
    let url = "cdu://127.0.0.1:9?node=vm&max_datagram=100";
    let a = DatagramTransport::connect_url(url).await.unwrap();
    let to = Address::new(NODE, "anyone").unwrap();
    let e = a
        .send(
            Message::new("SIGNAL", to)
                .unwrap()
                .with_param("blob", "y".repeat(100))
                .at_most_once(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { max: 100, .. }), "{e}");
    assert!(
        DatagramTransport::connect_url("cdu://127.0.0.1:9?max_datagram=0")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_daemon_drops_and_counts_oversize_unsigned_and_unparseable_datagrams() {
    let (_dir, h) = start_with(|c| {
        c.udp_secret = Some(SECRET.into());
        c.udp_max_datagram = 200;
    })
    .await;
    let mut listener = Probe::unix(h.unix_path().unwrap()).await;
    listener.send("REGISTER service=sink;version=1").await;
    listener
        .expect(&format!("<{NODE}:communicatord HELP"))
        .await;
    listener
        .expect_prefix(&format!("<{NODE}:communicatord READY "))
        .await;
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.connect(h.udp_addr().unwrap()).await.unwrap();

    // 201 bytes, otherwise valid: oversize (the limit is configurable, here 200).
    let mut big = format!("sink/PING secret_code={SECRET};pad=").into_bytes();
    big.resize(201, b'x');
    udp.send(&big).await.unwrap();
    wait_stats(&h, "oversize counted", |s| s.udp_oversize == 1).await;
    // No secret, then a wrong one: unsigned.
    udp.send(b"sink/PING n=1").await.unwrap();
    udp.send(b"sink/PING n=2;secret_code=guess").await.unwrap();
    wait_stats(&h, "unsigned counted", |s| s.udp_unsigned == 2).await;
    // Not a message.
    udp.send(b"<no-end").await.unwrap();
    wait_stats(&h, "unparseable counted", |s| s.udp_unparseable == 1).await;
    let s = h.stats();
    assert_eq!(s.udp_dropped, 4, "{s:?}");
    assert_eq!(s.udp_received, 4, "{s:?}");

    // Exactly 200 bytes with the right secret is routed, secret stripped, stamped <NODE: .
    let mut ok = format!("sink/PING secret_code={SECRET};pad=").into_bytes();
    ok.resize(200, b'z');
    udp.send(&ok).await.unwrap();
    let line = listener
        .expect_prefix(&format!("<{NODE}: sink/PING pad=zz"))
        .await;
    assert!(!line.contains("secret_code"), "{line}");
    assert_eq!(h.stats().udp_dropped, 4);
    h.shutdown().await;
}
