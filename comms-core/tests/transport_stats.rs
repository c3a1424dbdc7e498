//! What a transport counts for operators (`Transport::stats`, exported as Prometheus metrics):
//! sends acknowledged, sends refused, and received messages given up (dead-lettered).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use comms_core::Connect;
use std::time::Duration;

use comms_core::{Endpoint, HandlerError, Message, Outcome};
use comms_memory::MemoryTransport;

#[tokio::test]
async fn sends_refusals_and_dead_letters_are_counted() {
    let url = "memory://stats?node=n1";
    let sink = Endpoint::builder(MemoryTransport::connect_url(url).await.unwrap(), "sink")
        .max_attempts(2)
        .handle("OK", |_req| async move { Ok(Outcome::Done) })
        .handle("NEVER", |_req| async move {
            Err(HandlerError::Retry("not today".into()))
        })
        .start()
        .await
        .unwrap();
    let sender = Endpoint::builder(MemoryTransport::connect_url(url).await.unwrap(), "sender")
        .start()
        .await
        .unwrap();
    for _ in 0..3 {
        sender
            .send(Message::new("OK", sink.address().clone()).unwrap())
            .await
            .unwrap();
    }
    let receipt = sender
        .submit(Message::new("OK", sink.address().clone()).unwrap())
        .await
        .unwrap();
    receipt.await.unwrap();
    let too_big = Message::new("OK", sink.address().clone())
        .unwrap()
        .with_param("blob", "x".repeat(64 * 1024 * 1024));
    assert!(sender.send(too_big).await.is_err());
    sender
        .send(Message::new("NEVER", sink.address().clone()).unwrap())
        .await
        .unwrap();
    let c = sender.stats().expect("memory keeps stats");
    assert_eq!((c.sent, c.acknowledged, c.failed), (5, 5, 0), "{c:?}");
    // The refused one failed validation before it was handed over: not a send.
    // The NEVER message: two attempts, then given up with an ERROR reply to the sender.
    let started = std::time::Instant::now();
    while sink.stats().unwrap().dead_lettered == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = sink.stats().unwrap();
    assert_eq!(s.dead_lettered, 1, "{s:?}");
    assert_eq!(
        s.sent, s.acknowledged,
        "the sink's error reply was sent: {s:?}"
    );
    assert_eq!(s.in_flight(), 0);
    sender.close().await.unwrap();
    sink.close().await.unwrap();
}
