//! Issue 19, the local-client items: what a stock Communicator service (or `ed-signal`, or a
//! stock daemon on the peer link) sends, and the exact lines the C++ communicatord answers
//! (docs/NATIVE.md "Stock clients and plugin commands").
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "daemon_util.rs"]
mod util;

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use util::{start, start_with, Raw, NODE};

/// `ed-signal --type tcp`: a connection that never registers sends `svc/CMD`; the stock
/// daemon routes it. commsd stamps it `<NODE: ` (it does not know the sender, and never
/// trusts a client's prefix); daemon commands keep their rules (STOP from TCP refused).
#[tokio::test]
async fn unregistered_tcp_and_unix_senders_are_routed() {
    let (_d, h) = start().await;
    let mut d2 = Raw::unix_as(&h, "d2").await;
    let mut signal = Raw::tcp(&h).await;
    signal.send("d2/PING x=1").await;
    d2.expect(&format!("<{NODE}: d2/PING x=1")).await;
    signal.send("<vm:d2 d2/PING x=2").await;
    d2.expect(&format!("<{NODE}: d2/PING x=2")).await;
    let mut unix = Raw::unix(&h).await;
    unix.send(&format!("{NODE}:d2/PING x=3")).await;
    d2.expect(&format!("<{NODE}: {NODE}:d2/PING x=3")).await;
    // Unknown service, nothing registered: the report comes back to the unregistered sender.
    signal
        .send(&format!(
            "{NODE}:nosuch/PING cache=no;transmission_report=failure"
        ))
        .await;
    signal
        .expect(&format!(
            "<{NODE}:communicatord TRANSMISSION_REPORT command=PING;status=failed"
        ))
        .await;
    signal.send("STOP").await;
    signal
        .expect_prefix("INVALID command=STOP;reason=STOP refused")
        .await;
    assert!(!h.is_stopping());
    d2.silent(100).await;
    h.shutdown().await;
}

/// `d2/ping x=lower`: the stock daemon forwards lowercase commands between services.
#[tokio::test]
async fn lowercase_commands_between_services_are_forwarded() {
    let (_d, h) = start().await;
    let mut d1 = Raw::tcp_as(&h, "d1").await;
    let mut d2 = Raw::unix_as(&h, "d2").await;
    d1.send("d2/ping x=lower").await;
    d2.expect(&format!("<{NODE}:d1 d2/ping x=lower")).await;
    // Non-canonical parameters are re-serialized as the C++ does (sorted).
    d1.send("d2/mixedCase b=2;a=\"x;y\"").await;
    d2.expect(&format!("<{NODE}:d1 d2/mixedCase a=\"x;y\";b=2"))
        .await;
    d1.send("d2/ping").await;
    d2.expect(&format!("<{NODE}:d1 d2/ping")).await;
    // Still no routing of what is not a name.
    d1.send("d2/9ping").await;
    d1.expect_prefix(&format!("{NODE}:d1/INVALID command=9ping;reason="))
        .await;
    d2.silent(100).await;
    h.shutdown().await;
}

/// The stock plugin commands: CLOCK_STATUS, PUBLIC_IP, the LOADAVG family, LOG_ROTATE.
#[tokio::test]
async fn clock_public_ip_and_loadavg_are_answered_as_stock() {
    let (_d, h) = start_with(|c| c.public_ip = Some("203.0.113.5".to_owned())).await;
    let mut a = Raw::tcp_as(&h, "svc_a").await;
    a.send("CLOCK_STATUS").await;
    let l = a
        .expect_prefix(&format!(
            "<{NODE}:communicatord CLOCK_STABLE cache=no;clock_resolution="
        ))
        .await;
    assert!(l.ends_with("=verified") || l.ends_with("=no_ntp"), "{l}");
    a.send("PUBLIC_IP").await;
    a.expect(&format!(
        "<{NODE}:communicatord SERVER_PUBLIC_IP public_ip=203.0.113.5"
    ))
    .await;
    a.send("LOG_ROTATE").await;
    a.send("REGISTER_FOR_LOADAVG").await;
    for _ in 0..2 {
        let l = a
            .expect_prefix(&format!("<{NODE}:communicatord LOADAVG avg="))
            .await;
        assert!(
            l.contains(&format!(";my_address={};timestamp=", h.my_address())),
            "{l}"
        );
    }
    a.send("UNREGISTER_FROM_LOADAVG").await;
    a.send("HELP").await;
    // At most one tick was already on its way, then the HELP answer, then nothing.
    let mut l = a.line().await;
    if l.contains(" LOADAVG ") {
        l = a.line().await;
    }
    assert!(
        l.starts_with(&format!("{NODE}:svc_a/COMMANDS list=")),
        "{l}"
    );
    a.silent(1500).await;

    // Without a configured public IP: the bare answer.
    let (_d2, h2) = start().await;
    let mut b = Raw::unix(&h2).await;
    b.send("PUBLIC_IP").await;
    b.expect(&format!("<{NODE}:communicatord SERVER_PUBLIC_IP"))
        .await;
    h2.shutdown().await;
    h.shutdown().await;
}

/// READY carries the peer (remote) address when clustering, as the stock daemon; a stock peer's
/// `REGISTER_FOR_LOADAVG` is served (never `UNKNOWN`); the CLUSTER_STATUS answer has the
/// stock `./CLUSTER_UP` form.
#[tokio::test]
async fn ready_my_address_peer_loadavg_and_cluster_status_form() {
    let (_d, h) = start_with(|c| {
        c.peers.listen = Some("127.0.0.2:0".parse().unwrap());
        c.peers.allow_loopback = true;
        c.peers.insecure = true;
    })
    .await;
    let peer = h.peer_addr().expect("peer listener");
    assert_eq!(h.my_address(), peer.to_string());
    let mut a = Raw::tcp(&h).await;
    a.send("REGISTER service=svc_r;version=1").await;
    a.expect(&format!("<{NODE}:communicatord HELP")).await;
    a.expect(&format!("<{NODE}:communicatord READY my_address={peer}"))
        .await;
    a.send("CLUSTER_STATUS").await;
    a.expect(&format!(
        "<{NODE}:communicatord ./CLUSTER_UP neighbors_count=1"
    ))
    .await;
    a.expect(&format!(
        "<{NODE}:communicatord ./CLUSTER_COMPLETE neighbors_count=1"
    ))
    .await;

    let s = TcpStream::connect(peer).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r).lines();
    let stock = format!("cxx{}", std::process::id());
    w.write_all(
        format!(
            "CONNECT my_address=127.0.0.1:9;server_name={stock};version=1\nREGISTER_FOR_LOADAVG\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let accept = next_line(&mut r).await;
    // Stamped as the stock daemon stamps them.
    assert!(
        accept.starts_with(&format!("<{NODE}:communicatord ACCEPT ")),
        "{accept}"
    );
    assert_eq!(
        next_line(&mut r).await,
        format!("<{NODE}:communicatord HELP")
    );
    loop {
        let l = next_line(&mut r).await;
        assert!(!l.contains("UNKNOWN"), "{l}");
        if l.starts_with("LOADAVG ") {
            assert!(
                l.starts_with("LOADAVG avg=")
                    && l.contains(&format!(";my_address={peer};timestamp=")),
                "{l}"
            );
            break;
        }
    }
    drop(w);
    h.shutdown().await;
}

async fn next_line(r: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>) -> String {
    tokio::time::timeout(Duration::from_secs(5), r.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("open")
}

/// A comms message (`comms_id`) for a server that does not exist is answered at once, asked or
/// not (its sender would wait or resend for nothing); a stock line gets its asked report.
#[tokio::test]
async fn a_comms_message_for_an_unknown_node_is_answered() {
    let (_d, h) = start().await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    a.send("far:pb_sink/REQ comms_id=R1").await;
    a.expect(&format!(
        "{NODE}:probe_a/SERVICE_UNAVAILABLE comms_corr=R1;destination_service=pb_sink;unsent_command=REQ"
    ))
    .await;
    a.send("far:pb_sink/PING transmission_report=failure").await;
    a.expect(&format!(
        "<{NODE}:communicatord TRANSMISSION_REPORT command=PING;status=failed"
    ))
    .await;
    h.shutdown().await;
}
