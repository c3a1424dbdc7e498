//! commsd linked with a stock-shaped C++ communicatord (a test double driven line by line,
//! sending and expecting the stock daemon's exact lines; issue 19 items 1, 2, 5, 10 and the
//! neighbour rules of the hardening issue): a stamped `RECEIVED` ends the gossip; broadcasts
//! name the stock peer by bare IP (no echo); service-only unicasts are flooded to stock
//! peers instead of cached; `GOSSIP`/`CONNECT` cannot grow the neighbour set without bound
//! nor push `ACCEPT` over `max_line`; `FORGET` and the persisted `neighbors.txt`.
#![allow(clippy::unwrap_used)]

#[path = "cluster_util.rs"]
mod util;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use util::{accept, unique, Node, Raw, WAIT};

/// A parameter of a line, stamped (`<node:svc ...`) or not.
fn param<'a>(line: &'a str, name: &str) -> &'a str {
    match line.strip_prefix('<') {
        Some(rest) => util::param(rest.split_once(' ').map_or("", |(_, l)| l), name),
        None => util::param(line, name),
    }
}

/// No connection to `l` within `ms`.
async fn no_connection(l: &TcpListener, ms: u64) {
    let r = tokio::time::timeout(Duration::from_millis(ms), l.accept()).await;
    assert!(r.is_err(), "unexpected connection: {r:?}");
}

/// A commsd on 127.0.0.2 dialing a stock peer on 127.0.0.1 (its configured neighbour), the
/// link up with the stock ACCEPT, and a registered local service `st_w`.
struct Linked {
    x: Node,
    fake: TcpListener,
    fake_addr: SocketAddr,
    stock: String,
    p: Raw,
    w: Raw,
}

async fn linked(tag: &str, extra: &[&str]) -> Linked {
    let base = unique(tag);
    let stock = format!("{base}cxx");
    let (fake, fake_addr) = util::stock_listener("127.0.0.1").await;
    let x = Node::start(
        &format!("{base}x"),
        "127.0.0.2:0".parse().unwrap(),
        &[fake_addr],
        extra,
    )
    .await;
    let xn = x.name.clone();
    let mut w = x
        .service("st_w", "NEW_REMOTE_CONNECTION,PING,TRANSMISSION_REPORT")
        .await;
    let mut p = accept(&fake).await;
    p.expect_prefix("CONNECT ").await;
    p.send(&format!(
        "ACCEPT my_address={fake_addr};server_name={stock}"
    ))
    .await;
    p.expect(&format!("<{xn}:communicatord HELP")).await;
    p.send("COMMANDS list=ACCEPT,CONNECT,FORGET,GOSSIP,HELP,PING")
        .await;
    w.expect(&format!(
        "<{xn}:communicatord NEW_REMOTE_CONNECTION server_name={stock}"
    ))
    .await;
    Linked {
        x,
        fake,
        fake_addr,
        stock,
        p,
        w,
    }
}

#[tokio::test]
async fn a_stamped_received_from_a_stock_daemon_ends_the_gossip() {
    let base = unique("sr");
    // The neighbour (127.0.0.2) is larger than commsd (127.0.0.1): commsd gossips to it.
    let (_y, fake, mut g) = util::gossiping_to_stock(&format!("{base}y")).await;
    // The C++ daemon's exact answer, then it closes the gossip connection.
    g.send(&format!("<{base}cxx:communicatord RECEIVED")).await;
    drop(g);
    // Acknowledged: no gossip again (the retry schedule is 1 s in tests).
    no_connection(&fake, 3000).await;
}

#[tokio::test]
async fn broadcasts_name_a_stock_peer_by_bare_ip_so_it_does_not_echo() {
    let mut l = linked("sb", &[]).await;
    let xn = l.x.name.clone();
    l.w.send("*/PING n=1").await;
    let line = l.p.expect_prefix(&format!("<{xn}:st_w */PING ")).await;
    // The stock daemon compares bare IPs: both daemons' IPs are listed bare (and with ports,
    // for comms daemons sharing an IP).
    assert_eq!(
        param(&line, "broadcast_informed_neighbors"),
        format!("127.0.0.2,{},127.0.0.1,{}", l.x.peer, l.fake_addr),
        "{line}"
    );
    assert_eq!(param(&line, "broadcast_hops"), "1");
    assert_eq!(param(&line, "n"), "1");
}

#[tokio::test]
async fn service_only_unicasts_are_flooded_to_a_stock_peer_not_cached() {
    let mut l = linked("su", &[]).await;
    let xn = l.x.name.clone();
    for (i, head) in ["py_c/HELLO", "*:py_c/HELLO", "?:py_c/HELLO"]
        .iter()
        .enumerate()
    {
        l.w.send(&format!("{head} n={i};transmission_report=failure"))
            .await;
        let line = l.p.expect_prefix(&format!("<{xn}:st_w {head} ")).await;
        assert_eq!(param(&line, "n"), i.to_string(), "{line}");
        assert_eq!(param(&line, "broadcast_hops"), "1", "{line}");
        assert!(
            param(&line, "broadcast_msgid").starts_with(&format!("{xn}-")),
            "{line}"
        );
        assert!(
            param(&line, "broadcast_informed_neighbors").contains("127.0.0.1"),
            "{line}"
        );
    }
    // Delivered, not cached: no `TRANSMISSION_REPORT ...;status=cached` to the sender.
    l.w.silent(300).await;
    // The stock node's service answers through the link.
    l.p.send(&format!("<{}:py_c {xn}:st_w/PING x=c1", l.stock))
        .await;
    l.w.expect(&format!("<{}:py_c {xn}:st_w/PING x=c1", l.stock))
        .await;
}

#[tokio::test]
async fn gossip_and_connect_cannot_grow_the_neighbour_set_nor_the_accept_line() {
    let base = unique("sn");
    let x = Node::start(
        &format!("{base}x"),
        util::loopback0(),
        &[],
        &["--max-line", "1024"],
    )
    .await;
    let mut g = Raw::connect(x.peer).await;
    // No handshake (as stock daemons gossip): 100 addresses, and addresses never allowed.
    let mut bad = vec![
        "0.0.0.0:4042".to_owned(),
        "224.0.0.1:4042".to_owned(),
        "8.8.8.8:4042".to_owned(),
        x.peer.to_string(),
    ];
    bad.extend((0..100).map(|i| format!("192.168.{}.{}:4042", 200 + i / 250, i % 250 + 1)));
    for a in &bad {
        g.send(&format!("GOSSIP my_address={a}")).await;
        g.expect("RECEIVED").await;
    }
    // A CONNECT's my_address is held to the same rules.
    let mut c = Raw::connect(x.peer).await;
    let acc = c
        .stock_connect(&x.name, "0.0.0.0:9", &format!("{base}rogue"))
        .await;
    assert!(acc.len() < 1024, "ACCEPT over max_line: {} B", acc.len());
    let ns = util::list(&acc, "neighbors");
    assert!(ns.len() <= 64, "{} neighbours", ns.len());
    assert!(ns.iter().all(|n| n.starts_with("192.168.")), "{ns:?}");
    // The neighbour set is capped (64 learned), the rogue address not kept.
    let mut s = x
        .service(
            "st_s",
            "CLUSTER_UP,CLUSTER_DOWN,CLUSTER_COMPLETE,CLUSTER_INCOMPLETE",
        )
        .await;
    s.send("CLUSTER_STATUS").await;
    let st = loop {
        let l = s.line().await;
        if l.contains("CLUSTER_UP ") || l.contains("CLUSTER_DOWN ") {
            break l;
        }
    };
    let count: usize = st
        .rsplit("neighbors_count=")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(count, 65, "{st}");
}

#[tokio::test]
async fn forget_drops_the_neighbour_persists_and_is_rebroadcast() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap().to_owned();
    let mut l = linked("sf", &["--peer-state-dir", &state]).await;
    let xn = l.x.name.clone();
    let file = dir.path().join("neighbors.txt");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert_eq!(saved, format!("{}\n", l.fake_addr));
    assert!(dir.path().join("cluster-status.txt").exists());

    l.w.send("FORGET ip=127.0.0.1").await;
    let line =
        l.p.expect_prefix(&format!("<{xn}:communicatord *:communicatord/FORGET "))
            .await;
    assert_eq!(param(&line, "ip"), "127.0.0.1", "{line}");
    assert_eq!(param(&line, "broadcast_hops"), "1", "{line}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while std::fs::read_to_string(&file).unwrap() != "" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "neighbors.txt kept the address"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Forgotten: once the link drops, commsd does not dial it again.
    drop(l.p);
    no_connection(&l.fake, 3000).await;

    // A FORGET from a peer that already travelled (broadcast_hops) is not sent on.
    drop(l.x);
    let (fake2, fake2_addr) = util::stock_listener("127.0.0.1").await;
    // The persisted list (stock format, one address a line) is read at start.
    std::fs::write(&file, format!("{fake2_addr}\n")).unwrap();
    let base = unique("sg2");
    let y = Node::start(
        &format!("{base}y"),
        "127.0.0.2:0".parse().unwrap(),
        &[],
        &["--peer-state-dir", &state],
    )
    .await;
    let mut p = accept(&fake2).await;
    p.expect_prefix("CONNECT ").await;
    p.send(&format!(
        "ACCEPT my_address={fake2_addr};server_name={base}cxx"
    ))
    .await;
    p.expect(&format!("<{}:communicatord HELP", y.name)).await;
    p.send(&format!(
        "<{base}cxx:communicatord *:communicatord/FORGET broadcast_hops=1;broadcast_msgid={base}cxx-1;ip=10.9.9.9"
    ))
    .await;
    p.send("ALIVE serial=1").await;
    p.expect_prefix("ABSOLUTELY ").await;
    drop(y);
}
