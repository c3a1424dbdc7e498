//! OpenTelemetry traces across hops (`comms_core::trace`): one request crossing an
//! intermediate daemon (native cluster, slot 1 → slot 2 relay through another `commsd`) and
//! one crossing RabbitMQ each make a single trace, send → process → send (reply), with the
//! parent/child links right, as the SDK's in-memory exporter records them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test body: failures should be loud

use std::time::{Duration, Instant};

use comms_conformance::Backend;
use comms_core::{Endpoint, Message, Outcome};
use comms_test_support::unique_name;
use comms_tests::native_cluster::NativeClusterBackend;
use comms_tests::rabbitmq::RabbitBackend;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

fn install() -> InMemorySpanExporter {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider);
    comms_core::trace::enable();
    exporter
}

fn trace_of(traceparent: &str) -> TraceId {
    let id = traceparent.split('-').nth(1).expect("traceparent trace id");
    TraceId::from_hex(id).expect("hex trace id")
}

/// Requests `ECHO` from slot `from` to a service at slot `to` until one is answered; checks the
/// answered one's trace.
async fn one_request_is_one_trace(backend: &dyn Backend, from: usize, to: usize) {
    let exporter = install();
    let ns = unique_name("traces");
    let server = Endpoint::builder(backend.connect(&ns, to).await.unwrap(), "tracesvc")
        .handle("ECHO", |req| async move {
            let reply = req.reply("ECHOED")?;
            Ok(Outcome::Reply(reply))
        })
        .start()
        .await
        .unwrap();
    let client = Endpoint::builder(backend.connect(&ns, from).await.unwrap(), "tracecli")
        .start()
        .await
        .unwrap();
    // Routes between daemons converge in the first seconds: ask until answered.
    let started = Instant::now();
    let reply = loop {
        let ask = Message::new("ECHO", server.address().clone()).unwrap();
        match client.request(ask, Duration::from_secs(3)).await {
            Ok(reply) => break reply,
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("not yet: {e}");
            }
            Err(e) => panic!("no answer within 60 s: {e}"),
        }
    };
    let trace = trace_of(
        reply
            .trace
            .as_deref()
            .expect("the reply carries a traceparent"),
    );
    // The server ends its process span just after the reply's send: wait for the three.
    let spans: Vec<SpanData> = loop {
        let spans: Vec<SpanData> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        if spans.len() >= 3 || started.elapsed() > Duration::from_secs(70) {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(spans.len(), 3, "one trace of three spans: {names:?}");
    let find = |kind: SpanKind, name_start: &str, parent: SpanId| {
        spans
            .iter()
            .find(|s| {
                s.span_kind == kind && s.name.starts_with(name_start) && s.parent_span_id == parent
            })
            .unwrap_or_else(|| {
                panic!("no {kind:?} span {name_start}* under {parent:?}: {spans:#?}")
            })
    };
    let send = find(SpanKind::Producer, "send ", SpanId::INVALID);
    assert!(send.name.contains("tracesvc"), "{}", send.name);
    let process = find(
        SpanKind::Consumer,
        "process ECHO",
        send.span_context.span_id(),
    );
    let reply_send = find(SpanKind::Producer, "send ", process.span_context.span_id());
    assert!(reply_send.name.contains("tracecli"), "{}", reply_send.name);
    // The reply left with its own span's traceparent.
    assert!(
        reply
            .trace
            .as_deref()
            .unwrap()
            .contains(&reply_send.span_context.span_id().to_string()),
        "{:?} vs {:?}",
        reply.trace,
        reply_send.span_context
    );
    client.close().await.unwrap();
    server.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_relayed_through_an_intermediate_daemon_is_one_trace() {
    let backend = NativeClusterBackend::new().unwrap();
    // Slot 1 → slot 2 crosses an intermediate daemon (tests/src/native_cluster.rs).
    one_request_is_one_trace(&backend, 1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_through_rabbitmq_is_one_trace() {
    let backend = RabbitBackend::new();
    one_request_is_one_trace(&backend, 0, 1).await;
    backend.cleanup().await.unwrap();
}
