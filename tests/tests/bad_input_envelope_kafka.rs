//! Hostile records on Kafka (a real tansu broker), produced by another tool straight onto a
//! comms instance topic, interleaved with good messages.
//!
//! Each hostile record goes to the dead-letter topic, unchanged, with a reason naming the
//! problem in a header; the consumer keeps consuming (every good message sent between them is
//! handled exactly once: nothing accepted is lost); and another pair of services in the same
//! namespace keeps exchanging messages throughout.
//! (`kafka_dead_letter.rs` covers the first cases: not JSON, version 2.)
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use comms_kafka::dead_letter::REASON_HEADER;
use comms_tests::kafka::{header, KafkaBackend};
use comms_tests::{check_dead_letters, send_numbered};
use rdkafka::message::Message as _;
use rdkafka::producer::FutureRecord;

/// (record key, payload (`None`: a null payload), what the reason must contain).
fn hostile_records() -> Vec<(&'static str, Option<Vec<u8>>, &'static str)> {
    let envelope = |rest: &str| format!(r#"{{"v":1,"id":"x1","command":"GOOD","to":"b"{rest}}}"#);
    let mut deep = envelope(r#","params":{"p":"#).into_bytes();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    let deep_top = "{".repeat(100_000).into_bytes();
    vec![
        ("null", None, "not a comms envelope"),
        ("empty", Some(Vec::new()), "not a comms envelope"),
        ("nul", Some(b"\0\0".to_vec()), "not a comms envelope"),
        (
            "utf8",
            Some(b"{\"v\":1,\"id\":\"x1\",\"command\":\"GOOD\",\"to\":\"b\",\"params\":{\"p\":\"\xc3\"}}".to_vec()),
            "not a comms envelope",
        ),
        ("deep", Some(deep), "not a comms envelope"),
        ("deep_top", Some(deep_top), "not a comms envelope"),
        ("array", Some(b"[1,\"x1\",\"GOOD\",\"b\"]".to_vec()), "expected a JSON object"),
        ("v_string", Some(br#"{"v":"1","id":"x1","command":"GOOD","to":"b"}"#.to_vec()), "invalid type"),
        ("param_number", Some(envelope(r#","params":{"p":1}"#).into_bytes()), "invalid type"),
        ("hops_300", Some(envelope(r#","hops":300"#).into_bytes()), "invalid value"),
        ("mode", Some(envelope(r#","mode":"bogus""#).into_bytes()), "unknown variant"),
        ("lower", Some(br#"{"v":1,"id":"x1","command":"good","to":"b"}"#.to_vec()), "command"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_hostile_records_are_dead_lettered_and_nothing_else_is_disturbed() {
    let (backend, ns) = KafkaBackend::with_namespace("hostile").await;
    let (b, rec_b) = backend.recording(&ns, "n1", "b", "GOOD").await;
    let (d, rec_d) = backend.recording(&ns, "n3", "d", "CHAT").await;
    let a = backend.endpoint(&ns, "n0", "a", |e| e).await.unwrap();
    let c = backend.endpoint(&ns, "n2", "c", |e| e).await.unwrap();
    let names = comms_kafka::Names::new(&ns);
    let topic = names.instance(b.address());
    let raw = backend.raw_producer().unwrap();
    let records = hostile_records();
    for (i, (key, payload, _)) in records.iter().enumerate() {
        let mut record = FutureRecord::<str, [u8]>::to(&topic).key(*key);
        if let Some(p) = payload {
            record = record.payload(p.as_slice());
        }
        raw.send(record, Duration::from_secs(10)).await.unwrap();
        // A good message right behind each hostile one, and the bystanders talking.
        send_numbered(&a, "GOOD", b.address(), i).await;
        send_numbered(&c, "CHAT", d.address(), i).await;
    }
    let n = records.len();
    rec_b
        .wait_distinct(n, Duration::from_secs(90))
        .await
        .unwrap();
    rec_d
        .wait_distinct(n, Duration::from_secs(90))
        .await
        .unwrap();

    // Every hostile record is on the dead-letter topic, unchanged, with the reason.
    let consumer = backend.inspector(&ns, &names.dead_letter()).unwrap();
    let mut found = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while found.len() < n && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let reason = header(&m, REASON_HEADER);
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
            // Compared as bytes: a null payload counts as an empty one.
            let payload = m.payload().map(<[u8]>::to_vec).unwrap_or_default();
            found.insert(key.unwrap_or_default(), (payload, reason));
        }
    }
    check_dead_letters(
        &found,
        records
            .iter()
            .map(|(key, payload, why)| (*key, payload.as_deref().unwrap_or_default(), *why)),
    );
    assert_eq!(rec_b.count(), n, "b saw something it should not");
    assert_eq!(rec_d.count(), n);
    for e in [a, b, c, d] {
        e.close().await.unwrap();
    }
}
