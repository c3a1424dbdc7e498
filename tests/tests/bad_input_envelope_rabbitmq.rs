//! Hostile message bodies on RabbitMQ (the real broker at 127.0.0.1:5672), published by another
//! tool straight onto a comms service's queue, interleaved with good messages.
//!
//! Each hostile body is parked in `comms.{ns}.dead`, unchanged, with a reason naming the problem
//! in `x-comms-error`; the consumer keeps consuming (every good message sent between them is
//! handled exactly once: nothing accepted is lost); and another pair of services on the same
//! namespace keeps exchanging messages throughout.
//! (`rabbitmq_interop.rs` covers the first cases: not JSON, version 2, a lowercase command.)

use comms_core::Connect;
use std::collections::BTreeMap;
use std::time::Duration;

use comms_conformance::Recorder;
use comms_core::{Endpoint, Message};
use comms_rabbitmq::dead_letter::{header_text, ERROR_HEADER};
use comms_rabbitmq::RabbitTransport;
use comms_test_support::unique_name;
use comms_tests::check_dead_letters;
use comms_tests::rabbitmq::{config, delete_namespaces, ensure_running, url};
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::BasicProperties;

async fn endpoint(
    ns: &str,
    slot: usize,
    service: &str,
    rec: Option<(&Recorder, &str)>,
) -> anyhow::Result<Endpoint> {
    let t = RabbitTransport::connect(&config(ns, slot)?).await?;
    let mut b = Endpoint::builder(t, service);
    if let Some((rec, command)) = rec {
        b = b.handle(command, rec.handler());
    }
    Ok(b.start().await?)
}

/// (name, body, what the parked reason must contain).
fn hostile_bodies() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let envelope = |rest: &str| format!(r#"{{"v":1,"id":"x1","command":"SEQ","to":"b"{rest}}}"#);
    let mut deep = envelope(r#","params":{"p":"#).into_bytes();
    deep.extend(std::iter::repeat_n(b'[', 100_000));
    let mut oversize = envelope(r#","params":{"p":""#).into_bytes();
    oversize.extend(std::iter::repeat_n(b'x', 9 << 20));
    oversize.extend_from_slice(b"\"}}");
    vec![
        ("empty", Vec::new(), "not a comms envelope"),
        ("nul", b"\0".to_vec(), "not a comms envelope"),
        (
            "utf8",
            b"{\"v\":1,\"id\":\"x1\",\"command\":\"SEQ\",\"to\":\"b\",\"params\":{\"p\":\"\xff\"}}"
                .to_vec(),
            "not a comms envelope",
        ),
        ("deep", deep, "not a comms envelope"),
        (
            "array",
            b"[1,\"x1\",\"SEQ\",\"b\"]".to_vec(),
            "expected a JSON object",
        ),
        (
            "v_string",
            br#"{"v":"1","id":"x1","command":"SEQ","to":"b"}"#.to_vec(),
            "invalid type",
        ),
        (
            "param_number",
            envelope(r#","params":{"p":1}"#).into_bytes(),
            "invalid type",
        ),
        (
            "hops_300",
            envelope(r#","hops":300"#).into_bytes(),
            "invalid value",
        ),
        (
            "mode",
            envelope(r#","mode":"bogus""#).into_bytes(),
            "unknown variant",
        ),
        (
            "to_number",
            br#"{"v":1,"id":"x1","command":"SEQ","to":5}"#.to_vec(),
            "invalid type",
        ),
        ("oversize", oversize, "message too large"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_hostile_bodies_are_dead_lettered_and_nothing_else_is_disturbed(
) -> anyhow::Result<()> {
    ensure_running()?;
    let ns = unique_name("hostile");
    let rec_b = Recorder::new();
    let rec_d = Recorder::new();
    let b = endpoint(&ns, 1, "b", Some((&rec_b, "SEQ"))).await?;
    let a = endpoint(&ns, 0, "a", None).await?;
    let d = endpoint(&ns, 3, "d", Some((&rec_d, "CHAT"))).await?;
    let c = endpoint(&ns, 2, "c", None).await?;

    let conn = lapin::Connection::connect(&url(), lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let bodies = hostile_bodies();
    for (i, (name, body, _)) in bodies.iter().enumerate() {
        ch.basic_publish(
            format!("comms.{ns}").as_str().into(),
            "inst.n1.b".into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id((*name).into()),
        )
        .await?
        .await?;
        // A good message right behind each hostile one, and the bystanders talking.
        a.send(Message::new("SEQ", b.address().clone())?.with_param("seq", i.to_string()))
            .await?;
        c.send(Message::new("CHAT", d.address().clone())?.with_param("seq", i.to_string()))
            .await?;
    }
    let n = bodies.len();
    for (rec, who) in [(&rec_b, "b"), (&rec_d, "d")] {
        rec.wait_distinct(n, Duration::from_secs(60))
            .await
            .map_err(|e| anyhow::anyhow!("{who}: {e:?}"))?;
    }

    // Every hostile body is parked, unchanged, with its reason.
    let dead = format!("comms.{ns}.dead");
    let mut parked = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while parked.len() < n && tokio::time::Instant::now() < deadline {
        match ch
            .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
            .await?
        {
            Some(m) => {
                let headers = m.properties.headers().clone().unwrap_or_default();
                let id = m
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                parked.insert(id, (m.data.clone(), header_text(&headers, ERROR_HEADER)));
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    check_dead_letters(
        &parked,
        bodies
            .iter()
            .map(|(name, body, why)| (*name, body.as_slice(), *why)),
    );
    // Each good message handled exactly once, on both pairs.
    assert_eq!(rec_b.count(), n, "b saw something it should not");
    assert_eq!(rec_d.count(), n);

    conn.close(200, "done".into()).await?;
    for e in [a, b, c, d] {
        e.close().await?;
    }
    delete_namespaces(&[ns]).await?;
    Ok(())
}
