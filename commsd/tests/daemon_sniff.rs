//! `SNIFF` (comms extension, docs/NATIVE.md) against an in-process daemon: the wire shape,
//! refusals, loss without slowing services, and `NativeTransport::sniff` decoding.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

#[path = "daemon_util.rs"]
mod daemon_util;

use comms_core::Connect;
use std::time::Duration;

use comms_core::{Address, Advertisement, Destination, Message, Transport};
use comms_native::transport::NativeTransport;
use daemon_util::{start, start_with, Raw, NODE, WAIT};

async fn sniffer(h: &commsd::DaemonHandle) -> Raw {
    let mut s = Raw::unix(h).await;
    s.send("SNIFF").await;
    s.expect(&format!("<{NODE}:communicatord SNIFFING max_round=4194304"))
        .await;
    s
}

#[tokio::test]
async fn sniffer_gets_stamped_copies_of_unicast_broadcast_and_cached_lines() {
    let (_dir, h) = start().await;
    let mut s = sniffer(&h).await;
    let mut a = Raw::unix_as(&h, "a").await;
    let mut b = Raw::tcp_as(&h, "b").await;
    b.commands("PING", Some("b")).await;

    a.send("b/PING n=1").await;
    b.expect(&format!("<{NODE}:a b/PING n=1")).await;
    s.expect(&format!("<{NODE}:a b/PING n=1")).await;

    a.send("./PING n=2").await;
    b.expect(&format!("<{NODE}:a ./PING n=2")).await;
    s.expect(&format!("<{NODE}:a ./PING n=2")).await;

    a.send("nobody/PING n=3").await;
    s.expect(&format!("<{NODE}:a nobody/PING n=3")).await;

    // Daemon commands and their replies are not routed traffic: not copied.
    a.send("LIST_SERVICES").await;
    a.expect_prefix(&format!("{NODE}:a/SERVICES list=a,b"))
        .await;
    s.silent(200).await;
    assert!(h.stats().sniff_copies >= 3);

    // A sniffing connection is not a service.
    s.send("REGISTER service=s;version=1").await;
    s.expect_prefix("INVALID command=REGISTER;reason=a sniffing connection")
        .await;
}

#[tokio::test]
async fn sniff_is_refused_to_services_and_by_admin_rules() {
    let (_dir, h) = start().await;
    let mut a = Raw::unix_as(&h, "a").await;
    a.send("SNIFF").await;
    a.expect_prefix(&format!(
        "{NODE}:a/INVALID command=SNIFF;reason=SNIFF needs a dedicated connection"
    ))
    .await;
    let mut t = Raw::tcp(&h).await;
    t.send("SNIFF").await;
    t.expect_prefix("INVALID command=SNIFF;reason=SNIFF refused: not allowed on a TCP connection")
        .await;
    sniffer(&h).await; // the daemon's own user on the Unix socket is an admin
                       // (more admin cases: daemon_sniff_admin.rs)
}

#[tokio::test]
async fn a_slow_sniffer_loses_copies_and_never_slows_or_disconnects_services() {
    let (_dir, h) = start_with(|c| c.outbound_queue = 2).await;
    let mut s = sniffer(&h).await;
    let mut a = Raw::unix_as(&h, "a").await;
    let mut b = Raw::unix_as(&h, "b").await;
    const N: usize = 20_000;
    let pad = "x".repeat(200);
    let reader = tokio::spawn(async move {
        for i in 0..N {
            let l = b.line().await;
            assert!(l.contains(&format!("n={i};")), "line {i}: {l}");
        }
        b
    });
    // The sniffer reads nothing meanwhile.
    for i in 0..N {
        a.send(&format!("b/DATA n={i};pad={pad}")).await;
    }
    let _b = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("b gets every line while the sniffer sleeps")
        .unwrap();
    let stats = h.stats();
    assert_eq!(stats.slow_consumers_disconnected, 0);
    assert!(stats.sniff_lost > 0, "{stats:?}");
    // Now the sniffer reads: copies, then the in-band loss report once a batch fits.
    a.send("b/DATA n=last").await;
    let mut saw_loss = false;
    loop {
        let l = s.line().await;
        if l.starts_with(&format!("<{NODE}:communicatord SNIFF_LOST lost=")) {
            saw_loss = true;
        }
        if l.contains("n=last") {
            break;
        }
    }
    assert!(saw_loss, "the sniffer is told it lost copies");
}

async fn bound(url: &str, service: &str, commands: &[&str]) -> NativeTransport {
    let t = NativeTransport::connect_url(url).await.unwrap();
    let ad = Advertisement::new(Address::new(t.node(), service).unwrap(), commands.to_vec());
    t.advertise(&ad).await.unwrap();
    t
}

#[tokio::test]
async fn native_transport_sniff_decodes_messages_and_leaves_delivery_alone() {
    let (_dir, h) = start().await;
    let url = format!(
        "cd://{}?node={NODE}&retry=0.05",
        h.unix_path().unwrap().display()
    );
    let sniffing = NativeTransport::connect_url(&url).await.unwrap();
    let mut copies = sniffing.sniff().await.unwrap(); // no advertise needed
    let b = bound(&url, "b", &["PING"]).await;
    let mut inbox = b.listen().await.unwrap();
    let a = bound(&url, "a", &[]).await;
    let msg = Message::new("PING", Destination::Service("b".into()))
        .unwrap()
        .with_param("k", "v w");
    let id = msg.id().clone();
    a.send(msg).await.unwrap();
    let d = loop {
        let d = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .unwrap()
            .unwrap();
        if d.message().command == "PING" {
            break d;
        }
        d.ack().await.unwrap();
    };
    d.ack().await.unwrap();
    let copy = loop {
        let c = tokio::time::timeout(WAIT, copies.recv())
            .await
            .unwrap()
            .unwrap();
        assert_ne!(c.message().command, "COMMS_ACK", "acks are not messages");
        if c.message().command == "PING" {
            break c;
        }
    };
    let m = copy.message();
    assert_eq!(m.id(), id);
    assert_eq!(m.from(), Some(&Address::new(NODE, "a").unwrap()));
    assert_eq!(m.to, Destination::Service("b".into()));
    assert_eq!(m.param("k"), Some("v w"));
    // The sender's copy is released by the real receiver's ack, not by the sniffer.
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.unacknowledged() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.unacknowledged(), 0);
    for t in [&a, &b, &sniffing] {
        t.close().await.unwrap();
    }
    h.shutdown().await;
}
