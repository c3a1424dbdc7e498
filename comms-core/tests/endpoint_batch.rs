//! Batch handlers (issue 20, points 2 and 9) on the memory transport: batches form from what
//! has arrived, every message is handled once and settled on its own result in per-sender
//! order, and a message that fails, panics or times out inside a batch takes the failure path
//! alone while its neighbours are answered.

use comms_core::Connect;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use comms_core::transport::{Delivery, Inbox, NoAck};
use comms_core::{
    Address, Advertisement, Batching, Capabilities, Destination, Endpoint, Error, HandlerError,
    Message, Outcome, RetryPolicy, Transport,
};
use comms_memory::MemoryTransport;
use tokio::sync::mpsc;

fn hub() -> String {
    let id = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    format!("memory://batch{}?node=n1", &id[id.len() - 10..])
}

async fn client(hub: &str, name: &str) -> Endpoint {
    Endpoint::builder(
        MemoryTransport::connect_url(hub).await.expect("connect"),
        name,
    )
    .start()
    .await
    .expect("client")
}

fn n_of(msg: &Message) -> u32 {
    msg.param("n").and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_form_and_every_message_is_handled_once_in_order_per_sender() {
    let hub = hub();
    // (sender, n) in the order the handler saw them; the size of each call.
    let seen: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let (seen2, sizes2) = (seen.clone(), sizes.clone());
    let store = Endpoint::builder(
        MemoryTransport::connect_url(&hub).await.expect("connect"),
        "store",
    )
    .handle_batch("PUT", Batching::up_to(64), move |batch| {
        let (seen, sizes) = (seen2.clone(), sizes2.clone());
        async move {
            sizes.lock().unwrap().push(batch.len());
            for req in &batch {
                let from = req.message().from().expect("from").to_string();
                seen.lock().unwrap().push((from, n_of(req.message())));
            }
            // Each call takes a while, so that messages pile up behind it.
            tokio::time::sleep(Duration::from_millis(5)).await;
            batch.iter().map(|_| Ok(Outcome::Done)).collect()
        }
    })
    .start()
    .await
    .expect("store");
    let to = store.address().clone();
    let per_sender = 500u32;
    let mut senders = Vec::new();
    for name in ["a", "b"] {
        let ep = client(&hub, name).await;
        let to = to.clone();
        senders.push(tokio::spawn(async move {
            for n in 0..per_sender {
                let msg = Message::new("PUT", to.clone())
                    .expect("message")
                    .with_param("n", n.to_string());
                ep.send(msg).await.expect("send");
            }
            ep
        }));
    }
    let mut clients = Vec::new();
    for s in senders {
        clients.push(s.await.expect("sender task"));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < 2 * per_sender as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} handled",
            seen.lock().unwrap().len(),
            2 * per_sender
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        2 * per_sender as usize,
        "each message handled once"
    );
    let mut next: HashMap<String, u32> = HashMap::new();
    for (from, n) in &seen {
        let want = next.entry(from.clone()).or_default();
        assert_eq!(*n, *want, "{from}: message {n} handled out of order");
        *want += 1;
    }
    let sizes = sizes.lock().unwrap().clone();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    assert!(
        largest > 1 && sizes.len() < seen.len(),
        "messages were handled in batches: {} calls for {} messages, the largest {largest}",
        sizes.len(),
        seen.len()
    );
    assert!(
        largest <= 64,
        "a batch of {largest} exceeds the limit of 64"
    );
    for c in clients {
        c.close().await.expect("close");
    }
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_failing_panicking_or_hanging_in_a_batch_fails_alone() {
    let hub = hub();
    // Handler calls per message number.
    let calls: Arc<Mutex<HashMap<u32, usize>>> = Arc::default();
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let (calls2, sizes2) = (calls.clone(), sizes.clone());
    let store = Endpoint::builder(
        MemoryTransport::connect_url(&hub).await.expect("connect"),
        "store",
    )
    .retry(RetryPolicy::attempts(2).with_initial_backoff(Duration::from_millis(10)))
    .handle_batch(
        "PUT",
        Batching::up_to(32).linger(Duration::from_millis(300)),
        move |batch| {
            let (calls, sizes) = (calls2.clone(), sizes2.clone());
            async move {
                sizes.lock().unwrap().push(batch.len());
                let ns: Vec<u32> = batch.iter().map(|r| n_of(r.message())).collect();
                for n in &ns {
                    *calls.lock().unwrap().entry(*n).or_default() += 1;
                }
                if ns.contains(&5) {
                    panic!("message 5 breaks the handler");
                }
                if ns.contains(&7) {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                batch
                    .iter()
                    .map(|req| match n_of(req.message()) {
                        3 => Err(HandlerError::Retry("message 3 is refused".into())),
                        _ => Ok(Outcome::Reply(req.reply("STORED")?)),
                    })
                    .collect()
            }
        },
    )
    .command_timeout("PUT", Duration::from_millis(500))
    .start()
    .await
    .expect("store");
    let to = store.address().clone();
    let a = client(&hub, "a").await;
    let mut requests = Vec::new();
    for n in 0..10u32 {
        let msg = Message::new("PUT", to.clone())
            .expect("message")
            .with_param("n", n.to_string());
        let a = a.clone();
        requests.push(tokio::spawn(async move {
            (n, a.request(msg, Duration::from_secs(20)).await)
        }));
    }
    for r in requests {
        let (n, reply) = r.await.expect("request task");
        match n {
            3 | 5 | 7 => match reply {
                Err(Error::Remote { reason, .. }) => assert!(
                    reason.contains("dead-lettered after 2 attempts"),
                    "message {n}: {reason}"
                ),
                other => panic!("message {n} should have failed: {other:?}"),
            },
            _ => {
                let reply = reply.unwrap_or_else(|e| panic!("message {n}: {e}"));
                assert_eq!(reply.command, "STORED", "message {n}");
            }
        }
    }
    let sizes = sizes.lock().unwrap().clone();
    assert!(
        sizes.first().is_some_and(|s| *s > 1),
        "the first call was a batch: {sizes:?}"
    );
    // The call with 5 panicked, so its batch was split: 5 and 7 then ran alone, once per
    // attempt (2), after running in the first call.
    let calls = calls.lock().unwrap().clone();
    for n in [5, 7] {
        assert!(
            calls[&n] >= 3,
            "message {n} ran in the batch and alone per attempt: {calls:?}"
        );
    }
    let letters = store
        .dead_letters()
        .expect("a dead-letter place")
        .list(100)
        .await
        .expect("list");
    let mut given_up: Vec<u32> = letters
        .iter()
        .filter_map(|l| l.message.as_ref().map(n_of))
        .collect();
    given_up.sort_unstable();
    assert_eq!(
        given_up,
        [3, 5, 7],
        "only the faulty messages were dead-lettered"
    );
    a.close().await.expect("close");
    store.close().await.expect("close");
}

/// A memory transport whose inbox hands every delivery over twice (the second copy marked
/// redelivered), as a broker may after a connection loss.
struct Doubling(MemoryTransport);

#[async_trait]
impl Transport for Doubling {
    async fn advertise(&self, ad: &Advertisement) -> comms_core::Result<()> {
        self.0.advertise(ad).await
    }
    async fn listen(&self) -> comms_core::Result<Inbox> {
        let mut inbox = self.0.listen().await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Some(d) = inbox.recv().await {
                let copy = Delivery::new(d.message().clone(), true, Box::new(NoAck));
                if tx.send(d).await.is_err() || tx.send(copy).await.is_err() {
                    break;
                }
            }
        });
        Ok(Inbox::new(rx))
    }
    async fn send(&self, msg: Message) -> comms_core::Result<()> {
        self.0.send(msg).await
    }
    async fn forward(&self, delivery: Delivery, to: Destination) -> comms_core::Result<()> {
        self.0.forward(delivery, to).await
    }
    async fn close(&self) -> comms_core::Result<()> {
        self.0.close().await
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    fn node(&self) -> String {
        self.0.node()
    }
    fn local_address(&self) -> Option<Address> {
        self.0.local_address()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_of_a_message_in_one_batch_run_the_handler_once() {
    let hub = hub();
    let runs: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let runs2 = runs.clone();
    let store = Endpoint::builder(
        Doubling(MemoryTransport::connect_url(&hub).await.unwrap()),
        "store",
    )
    .handle_batch(
        "PUT",
        Batching::up_to(64).linger(Duration::from_millis(100)),
        move |batch| {
            let runs = runs2.clone();
            async move {
                for req in &batch {
                    *runs
                        .lock()
                        .unwrap()
                        .entry(req.message().id().to_string())
                        .or_default() += 1;
                }
                batch.iter().map(|_| Ok(Outcome::Done)).collect()
            }
        },
    )
    .start()
    .await
    .expect("store");
    let a = client(&hub, "a").await;
    for n in 0..20u32 {
        let msg = Message::new("PUT", store.address().clone())
            .unwrap()
            .with_param("n", n.to_string());
        a.send(msg).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while runs.lock().unwrap().len() < 20 {
        assert!(tokio::time::Instant::now() < deadline, "not all handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = runs.lock().unwrap().clone();
    assert!(
        runs.values().all(|n| *n == 1),
        "each message once, though delivered twice: {runs:?}"
    );
    a.close().await.unwrap();
    store.close().await.unwrap();
}
