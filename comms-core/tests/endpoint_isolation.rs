//! Handler isolation on the memory transport (issue 17, points 1 to 3): a panicking handler is
//! contained, handlers time out, a hung handler never stalls other senders, messages being
//! retried do not hold other senders' handlers back, and an endpoint whose reader dies closes
//! itself and withdraws its advertisement.

use comms_core::Connect;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use comms_core::transport::{Delivery, Inbox};
use comms_core::{
    Address, Advertisement, Capabilities, Destination, Directory, Endpoint, Error, HandlerError,
    Message, Outcome, RetryPolicy, Transport,
};
use comms_memory::MemoryTransport;
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

fn hub() -> String {
    let id = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    format!("memory://iso{}?node=n1", &id[id.len() - 10..])
}

async fn memory(hub: &str) -> MemoryTransport {
    MemoryTransport::connect_url(hub).await.expect("connect")
}

async fn client(hub: &str, name: &str) -> Endpoint {
    Endpoint::builder(memory(hub).await, name)
        .start()
        .await
        .expect("client")
}

fn remote_reason(r: &Result<Message, Error>) -> String {
    match r {
        Err(Error::Remote {
            command, reason, ..
        }) => format!("{command}: {reason}"),
        other => format!("not an error reply: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_message_and_every_sender_is_still_served() {
    let hub = hub();
    // A panic is a failed attempt: retried (quickly here), then dead-lettered and answered.
    let server = Endpoint::builder(memory(&hub).await, "fragile")
        .retry(RetryPolicy::attempts(2).with_initial_backoff(Duration::from_millis(10)))
        .handle("BOOM", |_req| async { panic!("boom on purpose") })
        .handle("ECHO", |req| async move {
            Ok(Outcome::Reply(req.reply("ECHOED")?))
        })
        .start()
        .await
        .expect("server");
    let a = client(&hub, "a").await;
    let to = server.address().clone();
    let wait = Duration::from_secs(3);
    let r = a
        .request(Message::new("BOOM", to.clone()).unwrap(), wait)
        .await;
    let why = remote_reason(&r);
    assert!(
        why.starts_with("ERROR")
            && why.contains("dead-lettered after 2 attempts")
            && why.contains("panicked")
            && why.contains("boom on purpose"),
        "{why}"
    );
    for _ in 0..3 {
        a.request(Message::new("ECHO", to.clone()).unwrap(), wait)
            .await
            .expect("same sender after the panic");
    }
    let b = client(&hub, "b").await;
    b.request(Message::new("ECHO", to.clone()).unwrap(), wait)
        .await
        .expect("new sender after the panic");
    for ep in [a, b, server] {
        ep.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_time_out_by_default_and_per_command() {
    let hub = hub();
    let slow = |ms: u64| {
        move |req: comms_core::Request| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(Outcome::Reply(req.reply("DONE")?))
        }
    };
    // One attempt: this test is about the timeout (retries are the conformance suite's).
    let server = Endpoint::builder(memory(&hub).await, "slow")
        .max_attempts(1)
        .handler_timeout(Duration::from_millis(300))
        .handle("SLOW", slow(5_000))
        .handle("PATIENT", slow(800))
        .command_timeout("PATIENT", Duration::from_secs(5))
        .start()
        .await
        .expect("server");
    let a = client(&hub, "a").await;
    let to = server.address().clone();
    let started = Instant::now();
    let r = a
        .request(
            Message::new("SLOW", to.clone()).unwrap(),
            Duration::from_secs(4),
        )
        .await;
    let why = remote_reason(&r);
    assert!(
        why.starts_with("ERROR") && why.contains("timed out after 300 ms"),
        "{why}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    a.request(Message::new("PATIENT", to).unwrap(), Duration::from_secs(4))
        .await
        .expect("the per-command timeout overrides the endpoint's");
    a.close().await.expect("close");
    server.close().await.expect("close");

    let unknown = Endpoint::builder(memory(&hub).await, "x")
        .command_timeout("NOPE", Duration::from_secs(1))
        .start()
        .await;
    assert!(
        unknown.is_err(),
        "a timeout for a command without a handler is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_handler_never_stalls_other_senders() {
    let hub = hub();
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let server = Endpoint::builder(memory(&hub).await, "busy")
        .handle("HANG", |_req| async {
            std::future::pending::<()>().await;
            Ok(Outcome::Done)
        })
        .handle("WORK", move |_req| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(Outcome::Done)
            }
        })
        .start()
        .await
        .expect("server");
    let to = server.address().clone();
    // The red-team scenario: one hung handler plus 40 more messages from its sender.
    let hanger = client(&hub, "hanger").await;
    hanger
        .send(Message::new("HANG", to.clone()).unwrap())
        .await
        .unwrap();
    for _ in 0..40 {
        hanger
            .send(Message::new("NEXT", to.clone()).unwrap())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut others = Vec::new();
    for s in 0..10 {
        others.push(client(&hub, &format!("other{s}")).await);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for ep in others.clone() {
        let to = to.clone();
        tasks.spawn(async move {
            for _ in 0..100 {
                ep.send(Message::new("WORK", to.clone()).unwrap())
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("sender");
    }
    while handled.load(Ordering::SeqCst) < 1_000 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        handled.load(Ordering::SeqCst),
        1_000,
        "messages of 10 other senders handled within 5 s while one handler hangs"
    );
    for ep in others.into_iter().chain([hanger]) {
        ep.close().await.expect("close");
    }
    // The server's hung handler holds `close` until its timeout: drop it instead.
    drop(server);
}

/// A memory transport whose inbox the test can end (as a lost backend connection would).
struct Severable {
    inner: MemoryTransport,
    cut: Mutex<Option<mpsc::Sender<()>>>,
}

#[async_trait]
impl Transport for Severable {
    async fn advertise(&self, ad: &Advertisement) -> comms_core::Result<()> {
        self.inner.advertise(ad).await
    }
    async fn listen(&self) -> comms_core::Result<Inbox> {
        let mut inbox = self.inner.listen().await?;
        let (tx, rx) = mpsc::channel(16);
        let (cut_tx, mut cut_rx) = mpsc::channel::<()>(1);
        *self.cut.lock().await = Some(cut_tx);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cut_rx.recv() => break,
                    d = inbox.recv() => match d {
                        Some(d) => if tx.send(d).await.is_err() { break },
                        None => break,
                    },
                }
            }
        });
        Ok(Inbox::new(rx))
    }
    async fn send(&self, msg: Message) -> comms_core::Result<()> {
        self.inner.send(msg).await
    }
    async fn forward(&self, delivery: Delivery, to: Destination) -> comms_core::Result<()> {
        self.inner.forward(delivery, to).await
    }
    async fn close(&self) -> comms_core::Result<()> {
        self.inner.close().await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn node(&self) -> String {
        self.inner.node()
    }
    fn local_address(&self) -> Option<Address> {
        self.inner.local_address()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_whose_reader_ends_closes_and_withdraws() {
    let hub = hub();
    let directory = Directory::new();
    let watcher = Endpoint::builder(memory(&hub).await, "watcher")
        .directory(directory.clone())
        .start()
        .await
        .expect("watcher");
    let transport = Arc::new(Severable {
        inner: memory(&hub).await,
        cut: Mutex::new(None),
    });
    let deaf = Endpoint::builder(transport.clone(), "deaf")
        .ttl(Duration::from_secs(3))
        .handle("PING", |req| async move {
            Ok(Outcome::Reply(req.reply("PONG")?))
        })
        .start()
        .await
        .expect("endpoint");
    let address = deaf.address().clone();
    assert!(directory.wait_up(&address, Duration::from_secs(5)).await);
    let cut = transport.cut.lock().await.take().expect("listening");
    cut.send(()).await.expect("cut");
    tokio::time::timeout(Duration::from_secs(2), deaf.closed())
        .await
        .expect("the endpoint closes itself once its reader is gone");
    let deadline = Instant::now() + Duration::from_secs(2);
    while directory.get(&address).is_some_and(|e| e.up) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !directory.get(&address).is_some_and(|e| e.up),
        "the advertisement is withdrawn, not left up while deaf"
    );
    watcher.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_being_retried_do_not_hold_back_other_senders() {
    // Two handlers at most at once, and two senders whose messages fail with a long backoff:
    // while they wait out their backoff, a third sender's message is handled at once.
    let hub = hub();
    let failed = Arc::new(AtomicUsize::new(0));
    let counter = failed.clone();
    let server = Endpoint::builder(memory(&hub).await, "busy")
        .lanes(2)
        .retry(RetryPolicy::attempts(3).with_initial_backoff(Duration::from_secs(3)))
        .handle("FAIL", move |_req| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Err(HandlerError::Retry("later".into()))
            }
        })
        .handle(
            "OK",
            |req| async move { Ok(Outcome::Reply(req.reply("DONE")?)) },
        )
        .start()
        .await
        .expect("server");
    let to = server.address().clone();
    let (s1, s2, s3) = (
        client(&hub, "s1").await,
        client(&hub, "s2").await,
        client(&hub, "s3").await,
    );
    for s in [&s1, &s2] {
        s.send(Message::new("FAIL", to.clone()).unwrap())
            .await
            .expect("send");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while failed.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the failing messages never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    s3.request(Message::new("OK", to).unwrap(), Duration::from_secs(10))
        .await
        .expect("the third sender is answered");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "the third sender waited {:?} for two senders' retry backoffs",
        started.elapsed()
    );
    for ep in [s1, s2, s3, server] {
        ep.close().await.expect("close");
    }
}
