//! Peer links over mutual TLS (`PeerConfig::tls`): daemons whose certificates chain to the
//! fleet CA and name an allowed peer link and route; a daemon with a certificate from another
//! CA, a fleet certificate that is not on the allow-list, or no TLS at all never gets a link.
//! In-process daemons, real sockets, certificates made here.
#![allow(clippy::unwrap_used)]

#[path = "cluster_util.rs"]
mod util;

use std::net::SocketAddr;
use std::time::Duration;

use comms_test_support::{Leaf, Pki};
use commsd::tls::PeerTls;
use commsd::DaemonHandle;
use util::{list, map, unique};

const ALLOWED: [&str; 2] = ["node-a", "node-b"];

async fn start(
    dir: &std::path::Path,
    name: &str,
    neighbors: Vec<SocketAddr>,
    tls: Option<(&Leaf, &std::path::Path)>,
) -> DaemonHandle {
    let tls = tls.map(|(leaf, ca)| PeerTls::new(&leaf.cert, &leaf.key, ca).allow(ALLOWED));
    util::in_process(dir, name, neighbors, tls).await
}

#[tokio::test]
async fn only_allowed_daemons_of_the_fleet_ca_link_and_they_route() {
    let pki = Pki::new().unwrap();
    let fleet = pki.ca("fleet").unwrap();
    let evil = pki.ca("evil").unwrap();
    let a_cert = pki.leaf(&fleet, "node-a", &["node-a"]).unwrap();
    let b_cert = pki.leaf(&fleet, "node-b", &["node-b"]).unwrap();
    let x_cert = pki.leaf(&fleet, "node-x", &["node-x"]).unwrap(); // right CA, not on the list
    let c_cert = pki.leaf(&evil, "node-c", &["node-b"]).unwrap(); // claims an allowed name, wrong CA
    let dir = tempfile::tempdir().unwrap();
    let base = unique("pt");
    let n = |s: &str| format!("{base}{s}");

    let a = start(dir.path(), &n("a"), vec![], Some((&a_cert, &fleet.pem))).await;
    let pa = a.peer_addr().unwrap();
    let b = start(dir.path(), &n("b"), vec![pa], Some((&b_cert, &fleet.pem))).await;
    let x = start(dir.path(), &n("x"), vec![pa], Some((&x_cert, &fleet.pem))).await;
    let c = start(dir.path(), &n("c"), vec![pa], Some((&c_cert, &evil.pem))).await;
    let plain = start(dir.path(), &n("p"), vec![pa], None).await;

    // A and B link over TLS and route a unicast from a service on B to one on A.
    let deadline = tokio::time::Instant::now() + util::CONVERGE;
    loop {
        if list(&map(&a).await, "links") == vec![format!("{}-{}", n("a"), n("b"))] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A and B never linked: {}",
            map(&a).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut on_a = util::service_on(&a, &n("a"), "svc_a", "PING").await;
    let mut on_b = util::service_on(&b, &n("b"), "svc_b", "PONG").await;
    let deadline = tokio::time::Instant::now() + util::CONVERGE;
    while !list(&map(&b).await, "services").contains(&format!("{}:svc_a", n("a"))) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never learnt svc_a"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    on_b.send("svc_a/PING n=1").await;
    on_a.expect(&format!("<{}:svc_b svc_a/PING n=1", n("b")))
        .await;

    // The others tried (every 200 ms) and never got a link: give them a few rounds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = map(&a).await;
    assert_eq!(list(&m, "nodes"), vec![n("a"), n("b")], "{m}");
    for (h, who) in [(&x, "x"), (&c, "c"), (&plain, "plain")] {
        assert!(
            list(&map(h).await, "links").is_empty(),
            "{who} got a link: {}",
            map(h).await
        );
    }
    assert!(a.stats().tls_handshake_failures >= 3, "{:?}", a.stats());
    for h in [a, b, x, c, plain] {
        h.shutdown().await;
    }
}
