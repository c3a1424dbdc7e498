//! The native transport's settlement semantics against a real `commsd`, below the Endpoint:
//! ack, nack(requeue), a dropped acker, at-most-once, and order per sender across a daemon
//! SIGKILL with resends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod client_util;

use std::time::Duration;

use client_util::{bound, Commsd, WAIT};
use comms_core::{DeliveryMode, Message, Transport};

async fn recv(inbox: &mut comms_core::Inbox) -> comms_core::Delivery {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn nack_and_dropped_acker_redeliver_and_ack_releases_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Commsd::start(&dir.path().join("d.sock"), "tn").await;
    let b = bound(&daemon.url(), "b", &["X"]).await;
    let mut inbox = b.listen().await.unwrap();
    let a = bound(&daemon.url(), "a", &[]).await;
    let to = b.local_address().unwrap();
    a.send(Message::new("X", to.clone()).unwrap().with_param("n", "1"))
        .await
        .unwrap();

    let d = recv(&mut inbox).await;
    assert_eq!(d.message().param("n"), Some("1"));
    assert!(!d.redelivered());
    let id = d.message().id().clone();
    drop(d); // unsettled: acts as nack(requeue)
    let d = recv(&mut inbox).await;
    assert_eq!(
        (d.message().id().clone(), d.redelivered()),
        (id.clone(), true)
    );
    d.nack(true).await.unwrap();
    let d = recv(&mut inbox).await;
    assert_eq!(d.message().id(), id);
    assert_eq!(
        a.unacknowledged(),
        1,
        "kept until the receiver acknowledges"
    );
    d.ack().await.unwrap();
    a.send(
        Message::new("X", to.clone())
            .unwrap()
            .with_param("n", "2")
            .at_most_once(),
    )
    .await
    .unwrap();
    let d = recv(&mut inbox).await;
    assert_eq!(d.message().param("n"), Some("2"));
    assert_eq!(d.message().mode, DeliveryMode::AtMostOnce);
    d.ack().await.unwrap();

    let deadline = tokio::time::Instant::now() + WAIT;
    while a.unacknowledged() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ack never reached the sender"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Nothing else arrives: no resend after the ack.
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), inbox.recv())
            .await
            .is_err()
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn order_and_once_per_sender_across_a_daemon_sigkill() {
    const N: u32 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("d.sock");
    let mut daemon = Commsd::start(&socket, "tk").await;
    let url = daemon.url();
    let b = bound(&url, "b", &["SEQ"]).await;
    let mut inbox = b.listen().await.unwrap();
    let a = bound(&url, "a", &[]).await;
    let to = b.local_address().unwrap();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            let m = Message::new("SEQ", to.clone())
                .unwrap()
                .with_param("seq", i.to_string());
            a.send(m).await.unwrap();
        }
        a
    });
    let mut got = Vec::new();
    let mut killed = false;
    while got.len() < N as usize {
        let d = tokio::time::timeout(Duration::from_secs(30), inbox.recv())
            .await
            .expect("delivery within 30 s")
            .unwrap();
        got.push(d.message().param("seq").unwrap().parse::<u32>().unwrap());
        d.ack().await.unwrap();
        if got.len() == N as usize / 3 && !killed {
            killed = true;
            daemon.kill().await;
            daemon = Commsd::start(&socket, "tk").await;
        }
    }
    let want: Vec<u32> = (0..N).collect();
    assert_eq!(got, want, "every message once, in order");
    let a = sender.await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
    drop(daemon);
}
