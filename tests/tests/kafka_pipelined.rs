//! Kafka sends are not serialized (issue 20, point 3): concurrent at-least-once sends to one
//! destination reach the producer together, and each is still confirmed and handled once.
//!
//! The broker (a real tansu) is frozen with SIGSTOP while 32 tasks send to one service: every
//! send must be handed to the producer and wait for the broker in flight. Sends that waited
//! for each other's acknowledgement would leave one record in flight and 31 tasks queued on
//! a lock. Then the broker is thawed and every send returns and is handled exactly once.
#![allow(clippy::unwrap_used)]

use comms_core::Connect;
use std::sync::Arc;
use std::time::Duration;

use comms_core::{Destination, Endpoint, Message};
use comms_kafka::KafkaTransport;
use comms_tests::kafka::KafkaBackend;

const SENDERS: usize = 32;

fn ping(i: usize) -> Message {
    Message::new("PING", Destination::service("pipe_sink").unwrap())
        .unwrap()
        .with_param("seq", i.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_to_one_destination_are_in_flight_together() {
    let (backend, ns) = KafkaBackend::with_namespace("pipe").await;
    let (_sink, rec) = backend.recording(&ns, "n1", "pipe_sink", "PING").await;
    let transport = Arc::new(
        KafkaTransport::connect(&backend.config(&ns, "n0").unwrap())
            .await
            .unwrap(),
    );
    let src = Arc::new(
        Endpoint::builder(transport.clone(), "pipe_src")
            .start()
            .await
            .unwrap(),
    );
    // The destination's topic, metadata and partition choice exist before the freeze.
    src.send(ping(0)).await.unwrap();

    backend.freeze(true).await.unwrap();
    let sends: Vec<_> = (1..=SENDERS)
        .map(|i| {
            let src = src.clone();
            tokio::spawn(async move { src.send(ping(i)).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut most = 0;
    while tokio::time::Instant::now() < deadline && most < SENDERS {
        most = most.max(transport.records_in_flight());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    backend.freeze(false).await.unwrap();
    // (The endpoint's own advertisements may add a record or two.)
    assert!(
        most >= SENDERS,
        "{SENDERS} concurrent sends to one destination: at most {most} records in flight together"
    );

    for s in sends {
        s.await.unwrap().unwrap();
    }
    rec.wait_distinct(SENDERS + 1, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rec.count(), SENDERS + 1, "each handled once");
}
