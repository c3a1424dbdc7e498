//! Consumers of one service added and removed during a stream (Kafka rebalances): nothing
//! lost, no handler run twice across instances, the sender's order kept.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use comms_conformance::{check_increasing, check_no_duplicates, Recorder};
use comms_core::{Destination, Endpoint, Error, Message};
use comms_tests::kafka::KafkaBackend;

const TOTAL: usize = 3000;

async fn worker(
    backend: &KafkaBackend,
    ns: &str,
    node: &str,
    rec: &Recorder,
    own: &Recorder,
) -> Endpoint {
    let slow = {
        let (rec, own) = (rec.clone(), own.clone());
        move |req: comms_core::Request| {
            let (rec, own) = (rec.clone(), own.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                own.push(req.message().clone());
                rec.push(req.into_message());
                Ok(comms_core::Outcome::Done)
            }
        }
    };
    Endpoint::builder(
        comms::connect(&backend.config(ns, node).unwrap())
            .await
            .unwrap(),
        "work",
    )
    .handle("JOB", slow)
    .start()
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_join_and_leave_during_a_stream() {
    comms_tests::kafka::init_logging();
    let (backend, ns) = KafkaBackend::with_namespace("rebal").await;
    let rec = Recorder::new();
    let own = [Recorder::new(), Recorder::new(), Recorder::new()];
    let w1 = worker(&backend, &ns, "n1", &rec, &own[0]).await;
    let a = backend.endpoint(&ns, "n0", "a", |e| e).await.unwrap();
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                let msg = Message::new("JOB", Destination::service("work")?)?
                    .with_param("seq", i.to_string());
                a.send(msg).await?;
            }
            Ok::<_, Error>(())
        })
    };
    let wait = Duration::from_secs(120);
    rec.wait_distinct(300, wait).await.unwrap();
    let w2 = worker(&backend, &ns, "n2", &rec, &own[1]).await;
    rec.wait_distinct(900, wait).await.unwrap();
    let w3 = worker(&backend, &ns, "n3", &rec, &own[2]).await;
    rec.wait_distinct(1500, wait).await.unwrap();
    w1.close().await.unwrap();
    rec.wait_distinct(2100, wait).await.unwrap();
    w2.close().await.unwrap();
    sender.await.unwrap().unwrap();
    rec.wait_distinct(TOTAL, wait).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    check_no_duplicates(&rec).unwrap();
    check_increasing(&rec.seqs(), "a→work").unwrap();
    let shares: Vec<usize> = own.iter().map(Recorder::count).collect();
    println!("handled per instance: {shares:?}");
    assert!(
        shares.iter().all(|n| *n > 0),
        "every instance took part: {shares:?}"
    );
    a.close().await.unwrap();
    w3.close().await.unwrap();
}
