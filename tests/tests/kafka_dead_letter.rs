//! Bad input on Kafka: a record that is not a comms envelope goes to the dead-letter topic
//! with the reason in a header, and the consumer keeps going.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use comms_kafka::dead_letter::{OFFSET_HEADER, REASON_HEADER, TOPIC_HEADER};
use comms_tests::kafka::{header, KafkaBackend};
use comms_tests::send_numbered;
use rdkafka::message::Message as _;
use rdkafka::producer::FutureRecord;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_records_go_to_the_dead_letter_topic() {
    let (backend, ns) = KafkaBackend::with_namespace("dlq").await;
    let (b, rec) = backend.recording(&ns, "n1", "b", "GOOD").await;
    let a = backend.endpoint(&ns, "n0", "a", |e| e).await.unwrap();
    let names = comms_kafka::Names::new(&ns);
    let topic = names.instance(b.address());
    let raw = backend.raw_producer().unwrap();
    for bad in [
        &b"not json at all"[..],
        br#"{"v":2,"id":"x","command":"GOOD","to":"b"}"#,
    ] {
        raw.send(
            FutureRecord::<str, [u8]>::to(&topic)
                .key("garbage")
                .payload(bad),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
    for i in 0..3 {
        send_numbered(&a, "GOOD", b.address(), i).await;
    }
    rec.wait_distinct(3, Duration::from_secs(60)).await.unwrap();

    // Both bad records are on the dead-letter topic, unchanged, with the reason.
    let dlq = names.dead_letter();
    let consumer = backend.inspector(&ns, &dlq).unwrap();
    let mut found = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while found.len() < 2 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            found.push((
                m.payload().map(|p| p.to_vec()),
                header(&m, REASON_HEADER),
                header(&m, TOPIC_HEADER),
                header(&m, OFFSET_HEADER),
            ));
        }
    }
    assert_eq!(found.len(), 2, "dead letters: {found:?}");
    assert_eq!(found[0].0.as_deref(), Some(&b"not json at all"[..]));
    let reason0 = found[0].1.clone().unwrap();
    assert!(reason0.contains("not a comms envelope"), "{reason0}");
    let reason1 = found[1].1.clone().unwrap();
    assert!(reason1.contains("version 2"), "{reason1}");
    assert_eq!(found[0].2.as_deref(), Some(topic.as_str()));
    assert!(found[0].3.is_some());
    assert_eq!(rec.count(), 3, "the good messages were handled once each");
    a.close().await.unwrap();
    b.close().await.unwrap();
}
