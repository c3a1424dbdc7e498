//! An at-most-once burst larger than the receiver's ready queue, to an application that is
//! not reading yet: the receiving transport stops taking lines (the daemon and the socket hold
//! them) instead of dropping what does not fit, so the whole burst arrives, in order, once
//! the application reads. Before, everything past `READY_BOUND` deliveries was dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod client_util;

use std::time::Duration;

use client_util::{bound, Commsd, WAIT};
use comms_core::{Address, Message, Transport};
use comms_native::transport::NativeTransport;

const BURST: u64 = 20_000;

/// `count` at-most-once `X` messages to `to`, numbered `n` from 0, as fast as `send` takes them.
async fn burst(from: &NativeTransport, to: &Address, count: u64) {
    for n in 0..count {
        let m = Message::new("X", to.clone())
            .unwrap()
            .with_param("n", n.to_string())
            .at_most_once();
        from.send(m).await.unwrap();
    }
}

#[tokio::test]
async fn an_at_most_once_burst_past_the_ready_bound_waits_instead_of_being_dropped() {
    assert!(BURST as usize > 2 * comms_native::transport::READY_BOUND);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Commsd::start(&dir.path().join("d.sock"), "tb").await;
    let b = bound(&daemon.url(), "b", &["X"]).await;
    let mut inbox = b.listen().await.unwrap();
    let a = bound(&daemon.url(), "a", &[]).await;
    let to = b.local_address().unwrap();
    burst(&a, &to, BURST).await;
    // Nobody reads for a while: the burst piles up in front of the receiver.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..BURST {
        let d = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .unwrap_or_else(|_| panic!("message {n} of {BURST} never arrived"))
            .unwrap();
        assert_eq!(d.message().param("n"), Some(n.to_string().as_str()));
        d.ack().await.unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), inbox.recv())
            .await
            .is_err(),
        "nothing more than the burst"
    );
}

/// The exception: while a send waits for outbox room, the receiver reads on past the pause,
/// because the acknowledgements that free the room arrive behind the burst on the same
/// connection. Here `b` is paused by a burst it does not read, and sends more at-least-once
/// messages than its outbox holds; they go through, acknowledged by `c`.
#[tokio::test]
async fn a_paused_receiver_still_reads_the_acks_its_own_sends_wait_for() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Commsd::start(&dir.path().join("d.sock"), "tp").await;
    let b_url = format!("{}&queue_bound=4&send_timeout_ms=5000", daemon.url());
    let b = bound(&b_url, "b", &["X"]).await;
    let _b_inbox = b.listen().await.unwrap(); // never read: b's receiver pauses
    let c = bound(&daemon.url(), "c", &["Y"]).await;
    let mut c_inbox = c.listen().await.unwrap();
    let a = bound(&daemon.url(), "a", &[]).await;
    let to_b = b.local_address().unwrap();
    burst(
        &a,
        &to_b,
        comms_native::transport::READY_PAUSE as u64 + 1000,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reader = tokio::spawn(async move {
        for _ in 0..12 {
            let d = tokio::time::timeout(WAIT, c_inbox.recv())
                .await
                .unwrap()
                .unwrap();
            d.ack().await.unwrap();
        }
    });
    let to_c = c.local_address().unwrap();
    for n in 0..12 {
        let m = Message::new("Y", to_c.clone())
            .unwrap()
            .with_param("n", n.to_string());
        b.send(m)
            .await
            .unwrap_or_else(|e| panic!("send {n} (outbox of 4): {e}"));
    }
    reader.await.unwrap();
}
