//! RabbitMQ interop and bad input, against the real broker:
//!
//! - `rabbitmq_interop_with_pika`: Python `pika` (installed if missing) reads a message the
//!   plugin published, in the documented JSON envelope, and publishes one in that envelope that
//!   a comms endpoint receives.
//! - `rabbitmq_bad_input_is_dead_lettered`: messages that are not envelopes, published by
//!   another tool onto our queue, are parked in `comms.{ns}.dead` with the reason in the
//!   `x-comms-error` header; the consumer keeps going and the queue is not blocked.

use comms_core::Connect;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use comms_conformance::Recorder;
use comms_core::{Destination, Endpoint, Message};
use comms_rabbitmq::dead_letter::{header_text, ERROR_HEADER, SOURCE_HEADER};
use comms_rabbitmq::RabbitTransport;
use comms_test_support::unique_name;
use comms_tests::rabbitmq::{config, delete_namespaces, ensure_running, url};
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::BasicProperties;

async fn endpoint(
    ns: &str,
    slot: usize,
    service: &str,
    rec: Option<&Recorder>,
    command: &str,
) -> anyhow::Result<Endpoint> {
    let t = RabbitTransport::connect(&config(ns, slot)?).await?;
    let mut b = Endpoint::builder(t, service);
    if let Some(rec) = rec {
        b = b.handle(command, rec.handler());
    }
    Ok(b.start().await?)
}

const PIKA_SCRIPT: &str = r#"
import json, sys, time, pika
url, ns, svc_queue, target_node, target_service = sys.argv[1:6]
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
# 1. Read the message the comms plugin published to a service queue.
body = props = None
for _ in range(100):
    method, props, body = ch.basic_get(queue=svc_queue, auto_ack=True)
    if method is not None:
        break
    time.sleep(0.1)
if body is None:
    print(json.dumps({"error": "nothing in " + svc_queue}))
    sys.exit(1)
# 2. Publish a message in the documented envelope to a comms endpoint, with confirms; with a
# field this release does not know, as a later release may add (ignored: rolling upgrades).
ch.confirm_delivery()
env = {"v": 1, "id": "pika-1", "command": "HELLO", "to": target_node + ":" + target_service,
       "params": {"lang": "python", "echo": json.loads(body)["params"]["text"]},
       "added_in_a_later_release": {"seq": 1}}
ch.basic_publish(exchange="comms." + ns,
                 routing_key="inst." + target_node + "." + target_service,
                 body=json.dumps(env).encode(),
                 properties=pika.BasicProperties(content_type="application/vnd.comms.envelope+json",
                                                 delivery_mode=2, message_id="pika-1"),
                 mandatory=True)
print(json.dumps({"body": json.loads(body), "content_type": props.content_type,
                  "delivery_mode": props.delivery_mode, "message_id": props.message_id}))
conn.close()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_interop_with_pika() -> anyhow::Result<()> {
    ensure_running()?;
    comms_tests::python::ensure_module("pika", "pika")?;
    let ns = unique_name("pika");
    let rec = Recorder::new();
    let rx = endpoint(&ns, 1, "py_rx", Some(&rec), "HELLO").await?;
    let tx = endpoint(&ns, 0, "rs_tx", None, "").await?;
    let msg = Message::new("GREET", Destination::service("py_svc")?)?
        .with_param("text", "héllo \"world\"\n");
    let id = msg.id().clone();
    tx.send(msg).await?;

    let out = Command::new("python3")
        .args([
            "-c",
            PIKA_SCRIPT,
            &url(),
            &ns,
            &format!("comms.{ns}.svc.py_svc"),
            "n1",
            "py_rx",
        ])
        .output()
        .context("run python3")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "pika script failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim())?;
    // What pika read is the documented envelope.
    assert_eq!(seen["content_type"], comms_core::envelope::CONTENT_TYPE);
    assert_eq!(seen["delivery_mode"], 2);
    assert_eq!(seen["message_id"], id.as_str());
    let body = &seen["body"];
    assert_eq!(body["v"], 1);
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["command"], "GREET");
    assert_eq!(body["to"], "py_svc");
    assert_eq!(body["from"], "n0:rs_tx");
    assert_eq!(body["params"]["text"], "héllo \"world\"\n");

    // What pika published reaches the comms handler.
    rec.wait_distinct(1, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let got = &rec.messages()[0];
    assert_eq!(got.id().as_str(), "pika-1");
    assert_eq!(got.param("lang"), Some("python"));
    assert_eq!(got.param("echo"), Some("héllo \"world\"\n"));

    tx.close().await?;
    rx.close().await?;
    delete_namespaces(&[ns]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_bad_input_is_dead_lettered() -> anyhow::Result<()> {
    ensure_running()?;
    let ns = unique_name("bad");
    let rec = Recorder::new();
    let b = endpoint(&ns, 1, "b", Some(&rec), "SEQ").await?;
    let a = endpoint(&ns, 0, "a", None, "").await?;

    // Another tool publishes garbage onto b's instance queue, and onto the service queue.
    let conn = lapin::Connection::connect(&url(), lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let bad: [(&str, &[u8]); 4] = [
        ("inst.n1.b", b"not json at all"),
        ("inst.n1.b", br#"{"v":2,"id":"x","command":"SEQ","to":"b"}"#),
        ("svc.b", br#"{"v":1,"id":"x","command":"lower","to":"b"}"#),
        ("inst.n1.b", b"\xff\xfe\x00"),
    ];
    for (key, body) in bad {
        ch.basic_publish(
            format!("comms.{ns}").as_str().into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await?;
    }
    // Good messages after the garbage are still handled: nothing blocks the queue.
    for i in 0..20 {
        a.send(Message::new("SEQ", b.address().clone())?.with_param("seq", i.to_string()))
            .await?;
    }
    rec.wait_distinct(20, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;

    // The garbage is parked in the dead queue with the reason.
    let dead = format!("comms.{ns}.dead");
    let mut parked = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while parked.len() < 4 && tokio::time::Instant::now() < deadline {
        match ch
            .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
            .await?
        {
            Some(m) => {
                let headers = m.properties.headers().clone().unwrap_or_default();
                parked.push((
                    m.data.clone(),
                    header_text(&headers, ERROR_HEADER).unwrap_or_default(),
                    header_text(&headers, SOURCE_HEADER).unwrap_or_default(),
                ));
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(parked.len(), 4, "{parked:?}");
    let (body, reason, source) = parked
        .iter()
        .find(|p| p.0 == b"not json at all")
        .context("the non-JSON message was not parked")?;
    assert_eq!(body, b"not json at all");
    assert!(reason.contains("not a comms envelope"), "{reason}");
    assert_eq!(source, &format!("comms.{ns}.inst.n1.b"));
    assert!(
        parked.iter().any(|p| p.1.contains("version 2")),
        "{parked:?}"
    );
    assert!(parked.iter().any(|p| p.2.ends_with(".svc.b")), "{parked:?}");
    assert_eq!(rec.count(), 20, "the handler saw something it should not");

    conn.close(200, "done".into()).await?;
    a.close().await?;
    b.close().await?;
    delete_namespaces(&[ns]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_deleted_queue_is_declared_again() -> anyhow::Result<()> {
    use lapin::options::QueueDeleteOptions;
    ensure_running()?;
    let ns = unique_name("gone");
    let a = endpoint(&ns, 0, "a", None, "").await?;
    let to = Destination::service("later")?;
    a.send(Message::new("X", to.clone())?).await?;
    // An operator (or x-expires) deletes the queue this connection already declared.
    let conn = lapin::Connection::connect(&url(), lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let queue = format!("comms.{ns}.svc.later");
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    // The publish is returned (mandatory), the queue declared again, the message kept.
    a.send(Message::new("X", to)?.with_param("n", "2")).await?;
    let got = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await?
        .context("the message after the deletion is not in the queue")?;
    let msg = comms_core::envelope::decode(&got.data, 1 << 20)?;
    assert_eq!(msg.param("n"), Some("2"));
    conn.close(200, "done".into()).await?;
    a.close().await?;
    delete_namespaces(&[ns]).await?;
    Ok(())
}
