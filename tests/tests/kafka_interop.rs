//! Interop: Python's `confluent-kafka` reads the records the plugin writes (the documented
//! JSON envelope and headers), and envelopes it writes reach a comms endpoint.
//! Installs the `confluent-kafka` wheel with pip when it is missing.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use comms_core::{Destination, Message};
use comms_tests::kafka::KafkaBackend;
use tokio::process::Command;

const PYTHON: &str = r#"
import json, sys
from confluent_kafka import Consumer, Producer, TopicPartition
bootstrap, read_topic, write_topic, to = sys.argv[1:5]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "py-" + read_topic,
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([read_topic])
got = []
while len(got) < 3:
    m = c.poll(30)
    if m is None:
        sys.exit("no record within 30 s")
    if m.error():
        continue
    env = json.loads(m.value())
    headers = {k: v.decode() for k, v in (m.headers() or [])}
    got.append({"env": env, "key": m.key().decode(), "content_type": headers.get("content-type")})
c.close()
p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
for i in range(3):
    # A field this release does not know, as a later release may add: ignored (rolling upgrades).
    env = {"v": 1, "id": "py%d" % i, "command": "FROM_PY", "to": to, "from": "py:script",
           "params": {"lang": "python", "seq": str(i)}, "added_in_a_later_release": i}
    p.produce(write_topic, key="py:script", value=json.dumps(env),
              headers=[("content-type", "application/vnd.comms.envelope+json")])
if p.flush(30) != 0:
    sys.exit("python records not delivered")
print(json.dumps(got))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_confluent_kafka_reads_and_writes_envelopes() {
    comms_tests::python::ensure_module("confluent_kafka", "confluent-kafka")
        .expect("python3 with confluent_kafka is needed for the interop test");
    let (backend, ns) = KafkaBackend::with_namespace("interop").await;
    let (b, rec) = backend.recording(&ns, "n1", "b", "FROM_PY").await;
    let a = backend.endpoint(&ns, "n0", "a", |e| e).await.unwrap();
    for i in 0..3 {
        let msg = Message::new("TO_PY", Destination::service("pyreader").unwrap())
            .unwrap()
            .with_param("seq", i.to_string())
            .with_param("text", "é \"quoted\"");
        a.send(msg).await.unwrap();
    }
    let names = comms_kafka::Names::new(&ns);
    let bootstrap = backend.bootstrap().to_owned();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new("python3")
            .args([
                "-c",
                PYTHON,
                &bootstrap,
                &names.service("pyreader"),
                &names.instance(b.address()),
                &b.address().to_string(),
            ])
            .output(),
    )
    .await
    .expect("python timed out")
    .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = got.as_array().unwrap();
    for (i, r) in got.iter().enumerate() {
        let env = &r["env"];
        assert_eq!(env["v"], 1);
        assert_eq!(env["command"], "TO_PY");
        assert_eq!(env["to"], "pyreader");
        assert_eq!(env["from"], a.address().to_string());
        assert_eq!(env["params"]["seq"], i.to_string(), "order kept");
        assert_eq!(env["params"]["text"], "é \"quoted\"");
        assert_eq!(r["key"], a.address().to_string());
        assert_eq!(r["content_type"], comms_core::envelope::CONTENT_TYPE);
    }
    rec.wait_distinct(3, Duration::from_secs(60)).await.unwrap();
    let msgs = rec.messages();
    assert!(msgs.iter().all(
        |m| m.from().map(|f| f.to_string()) == Some("py:script".into())
            && m.param("lang") == Some("python")
    ));
    let seqs = rec.seqs();
    assert_eq!(seqs, vec![0, 1, 2]);
    a.close().await.unwrap();
    b.close().await.unwrap();
}
