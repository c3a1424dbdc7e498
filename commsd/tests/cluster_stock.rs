//! commsd peering with a daemon that speaks only the stock parameter sets (a test double
//! of the C++ communicatord, driven line by line): GOSSIP → RECEIVED → commsd dials back
//! with the stock CONNECT; routing by server name; the stock loop fields on a unicast are
//! de-duplicated and stripped; link notifications; redial after a hang-up.
#![allow(clippy::unwrap_used)]

#[path = "cluster_util.rs"]
mod util;

use std::time::{SystemTime, UNIX_EPOCH};

use util::{accept, param, unique, Node, Raw};

#[tokio::test]
async fn a_stock_peer_gossips_is_dialed_routed_to_and_redialed_after_hangup() {
    let base = unique("st");
    let stock = format!("{base}stock");
    // The stock peer's address (127.0.0.1) is smaller than commsd's (127.0.0.2): commsd dials.
    let (fake, fake_addr) = util::stock_listener("127.0.0.1").await;
    let x = Node::start(
        &format!("{base}x"),
        "127.0.0.2:0".parse().unwrap(),
        &[],
        &[],
    )
    .await;
    let xn = x.name.clone();
    let mut w = x
        .service(
            "st_w",
            "CLUSTER_DOWN,CLUSTER_INCOMPLETE,HANGUP,NEW_REMOTE_CONNECTION,PONG",
        )
        .await;

    let mut g = Raw::connect(x.peer).await;
    g.send(&format!("GOSSIP my_address={fake_addr}")).await;
    g.expect("RECEIVED").await;

    let mut p = accept(&fake).await;
    p.expect(&format!(
        "CONNECT comms_link_state=1;my_address={};neighbors={fake_addr};server_name={xn};services=st_w;version=1",
        x.peer
    ))
    .await;
    p.send(&format!(
        "ACCEPT my_address={fake_addr};server_name={stock}"
    ))
    .await;
    p.expect(&format!("<{xn}:communicatord HELP")).await;
    p.send("COMMANDS list=ACCEPT,CONNECT,HELP").await;
    w.expect(&format!(
        "<{xn}:communicatord NEW_REMOTE_CONNECTION server_name={stock}"
    ))
    .await;

    // Routed by server name to the stock peer, origin stamp kept.
    w.send(&format!("{stock}:far_svc/PING n=1")).await;
    p.expect(&format!("<{xn}:st_w {stock}:far_svc/PING n=1"))
        .await;

    // A stock daemon forwards with the loop fields: delivered once, fields stripped.
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 10;
    let line = format!(
        "<{stock}:far_svc {xn}:st_w/PONG broadcast_hops=1;broadcast_informed_neighbors=127.0.0.1;\
         broadcast_msgid={stock}-7;broadcast_originator={fake_addr};broadcast_timeout={t};n=2"
    );
    p.send(&line).await;
    p.send(&line).await;
    w.expect(&format!("<{stock}:far_svc {xn}:st_w/PONG n=2"))
        .await;
    w.silent(300).await;

    // HELP between daemons.
    p.send("HELP").await;
    let cmds = p.expect_prefix("COMMANDS list=").await;
    assert!(
        param(&cmds, "list").split(',').any(|c| c == "GOSSIP"),
        "{cmds}"
    );

    // Hang-up: local services told, quorum lost (1 of 2), and commsd dials again.
    drop(p);
    w.expect(&format!("<{xn}:communicatord HANGUP server_name={stock}"))
        .await;
    w.expect(&format!(
        "<{xn}:communicatord CLUSTER_DOWN neighbors_count=2"
    ))
    .await;
    w.expect(&format!(
        "<{xn}:communicatord CLUSTER_INCOMPLETE neighbors_count=2"
    ))
    .await;
    let mut p = accept(&fake).await;
    p.expect_prefix("CONNECT ").await;
    p.send("REFUSE shutdown=true").await;
}

#[tokio::test]
async fn commsd_gossips_to_a_larger_neighbour_until_received() {
    let base = unique("sg");
    // The neighbour (127.0.0.2) is larger than commsd (127.0.0.1): commsd gossips, it dials.
    let (y, fake, g) = util::gossiping_to_stock(&format!("{base}y")).await;
    // Not answered: the gossip comes again on the retry schedule (1 s in tests).
    drop(g);
    let mut g = accept(&fake).await;
    g.expect(&format!("GOSSIP my_address={}", y.peer)).await;
    g.send("RECEIVED").await;
    // The stock side then dials commsd; commsd accepts with the stock parameter set.
    let mut p = Raw::connect(y.peer).await;
    let accept_line = p
        .stock_connect(&y.name, fake.local_addr().unwrap(), &format!("{base}stock"))
        .await;
    assert_eq!(param(&accept_line, "server_name"), y.name);
    assert_eq!(param(&accept_line, "comms_link_state"), "1");
    p.expect(&format!("<{}:communicatord HELP", y.name)).await;
    let map = y
        .wait_map("the stock link", |l| param(l, "links").contains("stock"))
        .await;
    assert_eq!(
        util::list(&map, "nodes"),
        vec![format!("{base}stock"), y.name.clone()]
    );
}

/// In process (to hold the stop grace open): a CONNECT that arrives while the daemon stops
/// is refused `shutdown=true`, and the peer listener rejects non-private addresses.
#[tokio::test]
async fn connect_during_stop_is_refused_shutdown_and_public_peer_addresses_are_rejected() {
    use commsd::{Daemon, DaemonConfig, PeerConfig};
    let dir = tempfile::tempdir().unwrap();
    let base = unique("sd");
    let mut cfg = DaemonConfig::ephemeral(format!("{base}d"), dir.path().join("d.sock"));
    cfg.shutdown_grace = std::time::Duration::from_secs(5);
    cfg.peers = PeerConfig {
        listen: Some(util::loopback0()),
        allow_loopback: true,
        insecure: true,
        ..PeerConfig::default()
    };
    let h = Daemon::start(cfg.clone()).await.unwrap();
    let mut p = Raw::connect(h.peer_addr().unwrap()).await;
    // The daemon knows the connection (a HELP round trip) before it is told to stop.
    p.send("HELP").await;
    p.expect_prefix("COMMANDS list=").await;
    h.stop();
    p.send(&format!(
        "CONNECT my_address=127.0.0.1:9;server_name={base}e;version=1"
    ))
    .await;
    p.expect("REFUSE shutdown=true").await;
    h.shutdown().await;

    cfg.unix_path = Some(dir.path().join("e.sock"));
    cfg.peers.listen = Some("8.8.8.8:0".parse().unwrap());
    let e = Daemon::start(cfg.clone()).await.unwrap_err();
    assert!(e.to_string().contains("private IPv4"), "{e}");
    cfg.peers.listen = Some(util::loopback0());
    cfg.peers.allow_loopback = false;
    let e = Daemon::start(cfg).await.unwrap_err();
    assert!(e.to_string().contains("allow_loopback_peers"), "{e}");
}
