//! Quick checks against librdkafka's in-process mock cluster (no broker process): the
//! producer's delivery reports and the committed-offset watcher. The real broker (tansu)
//! proves the whole transport in `tests/tests/conformance_kafka.rs`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use comms_core::Config;
use comms_kafka::lag::Lag;
use comms_kafka::producer::{envelope_headers, Producer, Record};
use comms_kafka::KafkaOptions;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{Message, Offset, TopicPartitionList};

fn options(bootstrap: &str) -> KafkaOptions {
    let mut c = Config::from_url(format!("kafka://{bootstrap}")).unwrap();
    c.transport.node = Some("n1".into());
    KafkaOptions::from_config(&c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_reports_and_committed_offsets() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t1", 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let opts = options(&bootstrap);
    let producer = Producer::new(&opts).unwrap();
    let mut offsets = Vec::new();
    for i in 0..5 {
        let payload = format!("m{i}");
        let (p, o) = producer
            .deliver(
                Record {
                    topic: "t1",
                    partition: Some(1),
                    key: "n1:a",
                    payload: payload.as_bytes(),
                    headers: envelope_headers("id", None),
                },
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(p, 1);
        offsets.push(o);
    }
    assert_eq!(
        offsets,
        vec![0, 1, 2, 3, 4],
        "one report per record, in order"
    );

    // A group reads three records and commits past them; the watcher sees the commit.
    let consumer: BaseConsumer = opts.group_consumer("g1").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("t1", 1, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut read = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while read < 3 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            assert_eq!(m.offset(), read);
            read += 1;
        }
    }
    assert_eq!(read, 3);
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset("t1", 1, Offset::Offset(3))
        .unwrap();
    consumer.commit(&commit, CommitMode::Sync).unwrap();

    let lag = std::sync::Arc::new(Lag::new(opts.clone()));
    let committed = lag
        .committed("g1".into(), "t1".into(), vec![0, 1])
        .await
        .unwrap();
    assert_eq!(committed.get(&1), Some(&3));
    assert_eq!(committed.get(&0), None, "nothing committed on partition 0");
    let none = lag
        .committed("nobody".into(), "t1".into(), vec![1])
        .await
        .unwrap();
    assert!(none.is_empty(), "a group that never committed: {none:?}");
}
