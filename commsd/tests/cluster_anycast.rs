//! One sender, one service, two equally near instances on two other daemons (A linked to
//! B and to C): the sender's work spreads over both instances **and its order holds** —
//! handled one after the other in the order sent, never two at once — because each of its
//! streams to the service is capped, the next one opens only once the previous one is
//! acknowledged, and the daemons give successive streams turns over the instances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "cluster_util.rs"]
mod util;

use comms_core::Connect;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comms_core::{Address, Advertisement, Destination, Message, Transport};
use comms_native::transport::NativeTransport;
use util::{list, loopback0, unique, Node};

const COUNT: u64 = 2000;

async fn bound(node: &Node, service: &str, commands: &[&str]) -> NativeTransport {
    let url = format!("cd://{}?node={}&retry=0.05,0.1", node.tcp, node.name);
    let t = NativeTransport::connect_url(&url).await.unwrap();
    let ad = Advertisement::new(
        Address::new(&node.name, service).unwrap(),
        commands.to_vec(),
    );
    t.advertise(&ad).await.unwrap();
    t
}

/// (instance, n, start order) for every handler run.
type Runs = Arc<Mutex<Vec<(usize, u64, u64)>>>;

async fn consume(t: &NativeTransport, instance: usize, runs: Runs, clock: Arc<AtomicU64>) {
    let mut inbox = t.listen().await.unwrap();
    tokio::spawn(async move {
        while let Some(d) = inbox.recv().await {
            let started = clock.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_micros(200)).await;
            let n = d.message().param("n").unwrap().parse().unwrap();
            runs.lock().unwrap().push((instance, n, started));
            d.ack().await.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_senders_work_spreads_over_two_instances_in_order() {
    let base = unique("ay");
    let a = Node::start(&format!("{base}a"), loopback0(), &[], &[]).await;
    let b = Node::start(&format!("{base}b"), loopback0(), &[a.peer], &[]).await;
    let c = Node::start(&format!("{base}c"), loopback0(), &[a.peer], &[]).await;
    let svc = format!("{base}work");

    let runs: Runs = Arc::default();
    let clock = Arc::new(AtomicU64::new(0));
    let wb = bound(&b, &svc, &["JOB"]).await;
    let wc = bound(&c, &svc, &["JOB"]).await;
    consume(&wb, 0, runs.clone(), clock.clone()).await;
    consume(&wc, 1, runs.clone(), clock.clone()).await;
    let want = [format!("{}:{svc}", b.name), format!("{}:{svc}", c.name)];
    a.wait_map("both instances", |l| {
        let s = list(l, "services");
        want.iter().all(|w| s.contains(w))
    })
    .await;

    let sender = bound(&a, &format!("{base}snd"), &[]).await;
    let to = Destination::service(&svc).unwrap();
    for n in 0..COUNT {
        let m = Message::new("JOB", to.clone())
            .unwrap()
            .with_param("n", n.to_string());
        sender.send(m).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while runs.lock().unwrap().len() < COUNT as usize && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len() as u64, COUNT, "every message handled once");
    let per: Vec<usize> = (0..2)
        .map(|i| runs.iter().filter(|r| r.0 == i).count())
        .collect();
    println!("instance on B handled {}, on C {}", per[0], per[1]);
    assert!(per[0] > 0 && per[1] > 0, "work not shared: {per:?}");
    runs.sort_by_key(|r| r.2);
    let order: Vec<u64> = runs.iter().map(|r| r.1).collect();
    let expected: Vec<u64> = (0..COUNT).collect();
    assert!(order == expected, "handled out of the order sent");
    let switches = runs.windows(2).filter(|w| w[0].0 != w[1].0).count();
    println!("the work moved between instances {switches} times");
    sender.close().await.unwrap();
    assert_eq!(sender.unacknowledged(), 0);
}
