//! A ring of four real `commsd` processes, A – B – C – D – A: a cluster broadcast reaches
//! every node exactly once; a unicast takes one shortest path and no other link; killing
//! B re-routes through D; restarting B heals the ring.
#![allow(clippy::unwrap_used)]

#[path = "cluster_util.rs"]
mod util;

use util::{list, loopback0, unique, Node};

/// A, then B (neighbour A), C (neighbour B), D (neighbours C and A); waits until every
/// node sees the four links.
async fn ring(tag: &str) -> Vec<Node> {
    let base = unique(tag);
    let a = Node::start(&format!("{base}a"), loopback0(), &[], &[]).await;
    let b = Node::start(&format!("{base}b"), loopback0(), &[a.peer], &[]).await;
    let c = Node::start(&format!("{base}c"), loopback0(), &[b.peer], &[]).await;
    let d = Node::start(&format!("{base}d"), loopback0(), &[c.peer, a.peer], &[]).await;
    let n = |x: &Node| x.name.clone();
    let mut want = vec![
        format!("{}-{}", n(&a), n(&b)),
        format!("{}-{}", n(&b), n(&c)),
        format!("{}-{}", n(&c), n(&d)),
        format!("{}-{}", n(&a), n(&d)),
    ];
    want.sort();
    let nodes = vec![a, b, c, d];
    for x in &nodes {
        x.wait_map("the ring", |l| list(l, "links") == want).await;
    }
    nodes
}

#[tokio::test]
async fn ring_broadcast_exactly_once_unicast_one_path_kill_reroutes_restart_heals() {
    let mut nodes = ring("rg").await;
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let (an, cn) = (names[0].clone(), names[2].clone());

    // One listener per node; the sender on A does not listen.
    let mut listeners = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut l = n.client().await;
        l.register(&names[i], &format!("rg_l{i}"), "HELLO").await;
        listeners.push(l);
    }
    let mut sx = nodes[0].client().await;
    sx.register(&an, "rg_sx", "PONG").await;
    for i in 1..4 {
        sx.send(&format!("*/HELLO n={i}")).await;
    }
    for l in &mut listeners {
        for i in 1..4 {
            l.expect(&format!("<{an}:rg_sx */HELLO n={i}")).await;
        }
    }
    for l in &mut listeners {
        l.silent(300).await;
    }

    // Unicast A → C: two shortest paths (B, D); B wins by name, D sees nothing.
    let mut sc = nodes[2].client().await;
    sc.register(&cn, "rg_sc", "PING").await;
    nodes[0]
        .wait_map("rg_sc", |l| {
            list(l, "services").contains(&format!("{cn}:rg_sc"))
        })
        .await;
    let mut sniff_b = nodes[1].client().await;
    sniff_b.sniff(&names[1]).await;
    let mut sniff_d = nodes[3].client().await;
    sniff_d.sniff(&names[3]).await;
    sx.send("rg_sc/PING n=1").await;
    sc.expect(&format!("<{an}:rg_sx rg_sc/PING n=1")).await;
    sniff_b.expect(&format!("<{an}:rg_sx rg_sc/PING n=1")).await;
    sniff_d.silent(300).await;
    sc.silent(100).await;

    // Kill B: the route goes through D.
    nodes[1].kill().await;
    let without_b = vec![names[0].clone(), names[2].clone(), names[3].clone()];
    nodes[0]
        .wait_map("B gone", |l| list(l, "nodes") == without_b)
        .await;
    sx.send("rg_sc/PING n=2").await;
    sc.expect(&format!("<{an}:rg_sx rg_sc/PING n=2")).await;
    sniff_d.expect(&format!("<{an}:rg_sx rg_sc/PING n=2")).await;
    // A broadcast still reaches each live node once.
    sx.send("*/HELLO n=9").await;
    for i in [0, 2, 3] {
        listeners[i]
            .expect(&format!("<{an}:rg_sx */HELLO n=9"))
            .await;
        listeners[i].silent(200).await;
    }

    // Restart B (same name, port, neighbour): the ring heals with no manual action.
    nodes[1].restart().await;
    let mut want = names.clone();
    want.sort();
    for i in [0, 2] {
        nodes[i]
            .wait_map("B back", |l| {
                list(l, "nodes") == want && list(l, "links").len() == 4
            })
            .await;
    }
    sx.send("rg_sc/PING n=3").await;
    sc.expect(&format!("<{an}:rg_sx rg_sc/PING n=3")).await;
}
