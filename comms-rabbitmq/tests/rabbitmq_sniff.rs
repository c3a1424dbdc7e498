//! `RabbitTransport::sniff` against the real broker (127.0.0.1:5672, or `COMMS_RABBITMQ_URL`),
//! one namespace per test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use comms_core::Connect;
use std::time::Duration;

use comms_core::{Address, Advertisement, Destination, Inbox, Message, Transport};
use comms_rabbitmq::RabbitTransport;

const WAIT: Duration = Duration::from_secs(10);

fn broker() -> String {
    std::env::var("COMMS_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn url(namespace: &str, node: &str) -> String {
    let base = broker();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}namespace={namespace}&node={node}")
}

fn namespace() -> String {
    format!(
        "sniff_{}",
        ulid::Ulid::generate().to_string().to_lowercase()
    )
}

/// Delete the namespace's queues and exchanges (the broker is shared: leave nothing behind).
async fn cleanup(namespace: &str) {
    let prefix = format!("comms.{namespace}");
    let list = |what: &str| -> Vec<String> {
        let out = std::process::Command::new("rabbitmqctl")
            .args([what, "-q", "--no-table-headers", "name"])
            .output()
            .expect("rabbitmqctl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|n| *n == prefix || n.starts_with(&format!("{prefix}.")))
            .collect()
    };
    let conn = lapin::Connection::connect(&broker(), lapin::ConnectionProperties::default())
        .await
        .expect("connect for cleanup");
    let ch = conn.create_channel().await.expect("channel");
    for q in list("list_queues") {
        ch.queue_delete(
            q.as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .expect("delete queue");
    }
    for x in list("list_exchanges") {
        ch.exchange_delete(
            x.as_str().into(),
            lapin::options::ExchangeDeleteOptions::default(),
        )
        .await
        .expect("delete exchange");
    }
    let _ = conn.close(0, "cleanup done".into()).await;
}

async fn bound(url: &str, service: &str, commands: &[&str]) -> RabbitTransport {
    let t = RabbitTransport::connect_url(url).await.unwrap();
    let ad = Advertisement::new(Address::new(t.node(), service).unwrap(), commands.to_vec());
    t.advertise(&ad).await.unwrap();
    t
}

async fn next_command(inbox: &mut Inbox, command: &str) -> comms_core::Delivery {
    loop {
        let d = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .expect("a delivery in time")
            .expect("inbox open");
        if d.message().command == command {
            return d;
        }
        d.ack().await.unwrap();
    }
}

#[tokio::test]
async fn rabbitmq_sniff_copies_every_message_and_consumes_nothing() {
    let ns = namespace();
    let u = url(&ns, "n1");
    let sniffer = RabbitTransport::connect_url(&u).await.unwrap();
    let mut copies = sniffer.sniff().await.unwrap(); // no advertise needed
    let b = bound(&u, "b", &["PING"]).await;
    let mut inbox = b.listen().await.unwrap();
    let a = bound(&u, "a", &[]).await;

    let unicast = Message::new("PING", Destination::Service("b".into()))
        .unwrap()
        .with_param("k", "v");
    let id = unicast.id().clone();
    a.send(unicast).await.unwrap();
    let broadcast = Message::new("PING", Destination::Broadcast(comms_core::Scope::All))
        .unwrap()
        .with_param("k", "all");
    a.send(broadcast).await.unwrap();

    // The real receiver gets both and settles them itself.
    let d = next_command(&mut inbox, "PING").await;
    assert_eq!(d.message().id(), id);
    d.ack().await.unwrap();
    let d = next_command(&mut inbox, "PING").await;
    assert_eq!(d.message().param("k"), Some("all"));
    d.ack().await.unwrap();

    // The sniffer saw the advertisements and both messages, once each, decoded.
    let first = next_command(&mut copies, "PING").await;
    let m = first.message();
    assert_eq!(m.id(), id);
    assert_eq!(m.from(), Some(&Address::new("n1", "a").unwrap()));
    assert_eq!(m.to, Destination::Service("b".into()));
    assert_eq!(m.param("k"), Some("v"));
    first.ack().await.unwrap(); // NoAck: a no-op
    let second = next_command(&mut copies, "PING").await;
    assert_eq!(second.message().param("k"), Some("all"));

    for t in [&a, &b, &sniffer] {
        t.close().await.unwrap();
    }
    cleanup(&ns).await;
}

#[tokio::test]
async fn rabbitmq_a_slow_sniffer_never_slows_senders() {
    let ns = namespace();
    let u = url(&ns, "n1");
    let sniffer = RabbitTransport::connect_url(&u).await.unwrap();
    let mut copies = sniffer.sniff().await.unwrap(); // not read while sending
    let a = bound(&u, "a", &[]).await;
    let _b = bound(&u, "b", &["X"]).await;
    // More than the sniffer queue bound + inbox: at-most-once, so only the broker bounds apply.
    let n = 12_000usize;
    let sent = tokio::time::timeout(Duration::from_secs(60), async {
        for i in 0..n {
            let m = Message::new("X", Destination::Service("b".into()))
                .unwrap()
                .with_param("i", i.to_string())
                .at_most_once();
            a.send(m).await.unwrap();
        }
    })
    .await;
    assert!(sent.is_ok(), "sends never wait for a sniffer");
    // A fence: one at-least-once message on the same publisher channel. Its confirm comes after
    // the broker has routed every earlier publish, so the whole burst is in the sniffer queue
    // (or dropped from its head) before we read; a loaded broker that lags behind the publisher
    // would otherwise still be taking copies in while we read them.
    // (To `a` itself: b's queue is full by now and refuses at-least-once messages.)
    let fence = Message::new("X", a.local_address().unwrap())
        .unwrap()
        .with_param("i", "fence");
    a.send(fence).await.unwrap();
    // The broker kept at most its bound (plus what was in flight): the oldest copies are gone.
    let mut got = 0usize;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(2), copies.recv()).await {
        got += 1;
    }
    let bound = comms_rabbitmq::sniff::SNIFF_QUEUE_BOUND as usize;
    assert!(got > 0 && got < n, "got {got} of {n} copies");
    assert!(
        got <= bound + 2 * 256,
        "got {got}: the sniffer queue is bounded"
    );
    for t in [&a, &sniffer] {
        t.close().await.unwrap();
    }
    cleanup(&ns).await;
}
