//! A line of three real `commsd` processes, A – B – C (A and C not linked): handshake,
//! link state, unicast through the intermediate (and only through it), quorum status,
//! cluster map, stock refusals; B down → cache / SERVICE_UNAVAILABLE; B restarted → healed.
#![allow(clippy::unwrap_used)]

#[path = "cluster_util.rs"]
mod util;

use util::{list, loopback0, param, unique, Node, Raw};

/// Starts B (no neighbours), then A and C each with B as neighbour; waits until A and C
/// both see the two links.
async fn line(tag: &str, c_extra: &[&str]) -> (Node, Node, Node) {
    let base = unique(tag);
    let b = Node::start(&format!("{base}b"), loopback0(), &[], &[]).await;
    let a = Node::start(&format!("{base}a"), loopback0(), &[b.peer], &[]).await;
    let c = Node::start(&format!("{base}c"), loopback0(), &[b.peer], c_extra).await;
    let want = vec![
        format!("{}-{}", a.name, b.name),
        format!("{}-{}", b.name, c.name),
    ];
    for n in [&a, &c] {
        n.wait_map("the line", |l| list(l, "links") == want).await;
    }
    (a, b, c)
}

#[tokio::test]
async fn unicast_crosses_the_intermediate_once_and_status_map_and_refusals_are_stock() {
    let (a, b, c) = line("ln", &["--max-peer-links", "1"]).await;
    let (an, bn, cn) = (a.name.clone(), b.name.clone(), c.name.clone());

    let mut sniff_b = b.client().await;
    sniff_b.sniff(&bn).await;
    let mut sa = a.service("ln_sa", "PONG").await;
    let mut sc = c.service("ln_sc", "PING").await;
    let mut wb = b.service("ln_wb", "DISCONNECTED").await;

    // A service on A reaches a service on C through B; the origin stamp survives.
    sa.send("ln_sc/PING n=1").await;
    sc.expect(&format!("<{an}:ln_sa ln_sc/PING n=1")).await;
    sc.send(&format!("{an}:ln_sa/PONG n=2")).await;
    sa.expect(&format!("<{cn}:ln_sc {an}:ln_sa/PONG n=2")).await;
    // B carried each exactly once.
    sniff_b.expect(&format!("<{an}:ln_sa ln_sc/PING n=1")).await;
    sniff_b
        .expect(&format!("<{cn}:ln_sc {an}:ln_sa/PONG n=2"))
        .await;
    sniff_b.silent(300).await;

    // The map is the same from every daemon; it names services per node.
    let map = c
        .wait_map("both services", |l| {
            list(l, "services")
                == vec![
                    format!("{an}:ln_sa"),
                    format!("{bn}:ln_wb"),
                    format!("{cn}:ln_sc"),
                ]
        })
        .await;
    assert_eq!(
        list(&map, "nodes"),
        vec![an.clone(), bn.clone(), cn.clone()]
    );
    assert_eq!(param(&map, "server_name"), cn);

    // SERVICE_STATUS knows services hosted elsewhere in the cluster.
    let mut q = a.client().await;
    q.send("SERVICE_STATUS service=ln_sc").await;
    q.expect(&format!(
        "<{an}:communicatord STATUS cache=no;server_name={cn};service=ln_sc;status=up"
    ))
    .await;

    // Quorum: 3 of 3 reachable.
    let mut q = a.client().await;
    q.send("CLUSTER_STATUS").await;
    q.expect(&format!(
        "<{an}:communicatord ./CLUSTER_UP neighbors_count=3"
    ))
    .await;
    q.expect(&format!(
        "<{an}:communicatord ./CLUSTER_COMPLETE neighbors_count=3"
    ))
    .await;

    // Stock refusals: a name already linked; a daemon at its link cap (C allows 1).
    let mut p = Raw::connect(b.peer).await;
    p.send(&format!(
        "CONNECT my_address=127.0.0.1:9;server_name={an};version=1"
    ))
    .await;
    p.expect("REFUSE conflict=name").await;
    let mut p = Raw::connect(c.peer).await;
    p.send(&format!(
        "CONNECT my_address=127.0.0.1:9;server_name={an}x;version=1"
    ))
    .await;
    p.expect("REFUSE").await;

    // A stock-shaped peer is accepted with the stock parameter set, then HELP/COMMANDS.
    let mut p = Raw::connect(a.peer).await;
    let accept = p.stock_connect(&an, "127.0.0.1:9", &format!("{an}z")).await;
    assert_eq!(param(&accept, "server_name"), an);
    assert_eq!(param(&accept, "my_address"), a.peer.to_string());
    assert_eq!(param(&accept, "services"), "ln_sa");
    p.expect(&format!("<{an}:communicatord HELP")).await;
    p.send("HELP").await;
    let cmds = p.expect_prefix("COMMANDS list=").await;
    assert!(
        cmds.contains("CONNECT") && cmds.contains("GOSSIP"),
        "{cmds}"
    );
    // Routed to by name: a line for the stock peer's service goes down its link.
    sa.send(&format!("{an}z:stock_svc/PING n=3")).await;
    p.expect(&format!("<{an}:ln_sa {an}z:stock_svc/PING n=3"))
        .await;
    p.send("DISCONNECT").await;

    // A graceful stop says DISCONNECT to its peers: B's services hear DISCONNECTED.
    let mut admin = a.client().await;
    admin.send("STOP").await;
    wb.skip_to(&format!(
        "<{bn}:communicatord DISCONNECTED server_name={an}"
    ))
    .await;
}

#[tokio::test]
async fn line_with_b_down_caches_or_answers_and_restarting_b_heals() {
    let (a, mut b, c) = line("lc", &[]).await;
    let (an, cn) = (a.name.clone(), c.name.clone());
    let mut sa = a
        .service("lc_sa", "SERVICE_UNAVAILABLE,TRANSMISSION_REPORT")
        .await;
    let mut sc = c.service("lc_sc", "PING").await;
    a.wait_map("lc_sc on C", |l| {
        list(l, "services").contains(&format!("{cn}:lc_sc"))
    })
    .await;

    b.kill().await;
    a.wait_map("A alone", |l| list(l, "nodes") == vec![an.clone()])
        .await;
    c.wait_map("C alone", |l| list(l, "nodes") == vec![cn.clone()])
        .await;

    // cache=no;reply → SERVICE_UNAVAILABLE at once; default → cached (reported).
    sa.send("lc_sc/PING cache=\"no;reply\";n=1").await;
    sa.expect(&format!(
        "{an}:lc_sa/SERVICE_UNAVAILABLE destination_service=lc_sc;unsent_command=PING"
    ))
    .await;
    sa.send("lc_sc/PING n=2;transmission_report=failure").await;
    sa.expect(&format!(
        "<{an}:communicatord TRANSMISSION_REPORT command=PING;status=cached"
    ))
    .await;

    // B comes back with the same configuration: links and routes heal, the cache drains.
    b.restart().await;
    sc.expect(&format!(
        "<{an}:lc_sa lc_sc/PING n=2;transmission_report=failure"
    ))
    .await;
    sc.silent(300).await;
    let want = vec![an.clone(), b.name.clone(), cn.clone()];
    a.wait_map("healed", |l| list(l, "nodes") == want).await;
}

#[tokio::test]
async fn a_line_cached_for_a_service_not_yet_up_reaches_it_when_it_registers_on_another_node() {
    // The route appears only through C's announcement (nothing changes on A itself): A must
    // replay its cache when a remote announcement makes the service reachable, not at its
    // next re-announcement half a minute later.
    let (a, _b, c) = line("lr", &[]).await;
    let (an, cn) = (a.name.clone(), c.name.clone());
    let mut sa = a.service("lr_sa", "TRANSMISSION_REPORT").await;
    sa.send("lr_late/PING n=1;transmission_report=failure")
        .await;
    sa.expect(&format!(
        "<{an}:communicatord TRANSMISSION_REPORT command=PING;status=cached"
    ))
    .await;

    // Registered by hand: the helper skips lines until its COMMANDS reply, and the cached
    // line may come first.
    let mut sc = c.client().await;
    sc.send("REGISTER service=lr_late;version=1").await;
    sc.expect(&format!("<{cn}:communicatord HELP")).await;
    sc.expect_prefix(&format!("<{cn}:communicatord READY "))
        .await;
    sc.expect(&format!(
        "<{an}:lr_sa lr_late/PING n=1;transmission_report=failure"
    ))
    .await;
    sc.silent(300).await;
}
