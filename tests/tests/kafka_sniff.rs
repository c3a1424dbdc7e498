//! `sniff` over Kafka: a sniffer sees copies of the namespace's messages and takes nothing from
//! the real receiver.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use comms::{Endpoint, Message, Outcome};
use comms_test_support::unique_name;
use comms_tests::kafka::{config_for, Tansu};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sniff_copies_messages_and_consumes_nothing() {
    let broker = Tansu::start().await.expect("start tansu");
    let ns = unique_name("sniff");
    let config = |node: &str| config_for(&broker.url(), &ns, node).unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let b = Endpoint::builder(comms::connect(&config("n1")).await.unwrap(), "b")
        .handle("PROBE", move |_req| {
            h.fetch_add(1, Ordering::SeqCst);
            async { Ok(Outcome::Done) }
        })
        .start()
        .await
        .unwrap();
    let a = Endpoint::builder(comms::connect(&config("n0")).await.unwrap(), "a")
        .start()
        .await
        .unwrap();
    let sniffer = comms::connect(&config("n9")).await.unwrap();
    let mut copies = sniffer.sniff().await.expect("kafka can sniff");
    // The sniffer starts from the end of each partition once assigned: keep probing until it
    // sees one of ours, then count a batch.
    let mut seen = 0usize;
    let mut probes = 0usize;
    for round in 0..60 {
        probes += 1;
        a.send(
            Message::new("PROBE", b.address().clone())
                .unwrap()
                .with_param("round", round.to_string()),
        )
        .await
        .unwrap();
        if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(500), copies.recv()).await {
            if d.message().command == "PROBE" {
                seen += 1;
                break;
            }
        }
    }
    assert_eq!(seen, 1, "the sniffer never saw a message");
    for i in 0..20 {
        a.send(
            Message::new("PROBE", b.address().clone())
                .unwrap()
                .with_param("batch", i.to_string()),
        )
        .await
        .unwrap();
    }
    let mut batch = 0;
    while batch < 20 {
        let d = tokio::time::timeout(Duration::from_secs(30), copies.recv())
            .await
            .expect("copies keep coming")
            .expect("open");
        let m = d.message();
        if m.command == "PROBE" && m.param("batch").is_some() {
            assert_eq!(m.from(), Some(a.address()));
            batch += 1;
        }
    }
    // Every message still reached the real receiver, once.
    let total = probes + 20;
    for _ in 0..300 {
        if handled.load(Ordering::SeqCst) >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        handled.load(Ordering::SeqCst),
        total,
        "handler runs for {total} messages sent"
    );
    sniffer.close().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}
