//! OpenTelemetry traces across hops: a span for each send and each handler run, linked by the
//! W3C `traceparent` every message carries ([`Message::trace`]), on every backend (the daemon,
//! a relaying daemon and the brokers carry it untouched).
//!
//! - A send (`Endpoint::send`, `submit`, `request`, and the replies an endpoint sends) opens a
//!   span `send <destination>` (kind producer) whose parent is the current context (inside a
//!   handler: the handler's span), else the message's own `trace`; the message leaves with
//!   that span's `traceparent`.
//! - A handler run opens `process <command>` (kind consumer), child of the message's
//!   `traceparent`, and runs the handler inside it: what the handler sends, its reply
//!   included, is a child of it. So a request and its reply are one trace: send → process →
//!   send (reply).
//!
//! Off until [`enable`]d: install a tracer provider (`opentelemetry::global::
//! set_tracer_provider`; the binaries do it for OTLP with the `otlp` feature, tests with the
//! SDK's in-memory exporter), then call [`enable`]. Until then no span is made and a message's
//! `trace` travels as the sender set it (nothing is added to the message path).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::message::Message;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The instrumentation scope of every span comms makes.
pub const TRACER_NAME: &str = "comms";

/// Turns span making on (after a tracer provider is installed).
pub fn enable() {
    ENABLED.store(true, Ordering::Release);
}

/// Whether [`enable`] was called.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The context a `traceparent` names (empty for none or an invalid one).
pub fn extract(traceparent: Option<&str>) -> Context {
    let Some(tp) = traceparent else {
        return Context::new();
    };
    let carrier = HashMap::from([("traceparent".to_owned(), tp.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// The `traceparent` of `cx`'s span (`None` when it has no valid span).
pub fn traceparent(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Opens the span of a send (parent: the current context when it has a span, else the
/// message's `trace`) and stamps the message with it. `None` when tracing is off.
pub(crate) fn start_send(msg: &mut Message) -> Option<Context> {
    if !enabled() {
        return None;
    }
    let current = Context::current();
    let parent = if current.span().span_context().is_valid() {
        current
    } else {
        extract(msg.trace.as_deref())
    };
    let tracer = global::tracer(TRACER_NAME);
    let span = tracer
        .span_builder(format!("send {}", msg.to))
        .with_kind(SpanKind::Producer)
        .with_attributes([
            KeyValue::new("messaging.system", "comms"),
            KeyValue::new("messaging.operation.type", "send"),
            KeyValue::new("messaging.destination.name", msg.to.to_string()),
            KeyValue::new("messaging.message.id", msg.id.to_string()),
            KeyValue::new("comms.command", msg.command.clone()),
        ])
        .start_with_context(&tracer, &parent);
    let cx = parent.with_span(span);
    if let Some(tp) = traceparent(&cx) {
        msg.trace = Some(tp);
    }
    Some(cx)
}

/// Opens the span of a handler run, child of the message's `trace`. `None` when tracing is off.
pub(crate) fn start_process(msg: &Message) -> Option<Context> {
    if !enabled() {
        return None;
    }
    let parent = extract(msg.trace.as_deref());
    let tracer = global::tracer(TRACER_NAME);
    let mut attributes = vec![
        KeyValue::new("messaging.system", "comms"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.message.id", msg.id.to_string()),
        KeyValue::new("comms.command", msg.command.clone()),
    ];
    if let Some(from) = &msg.from {
        attributes.push(KeyValue::new("comms.from", from.to_string()));
    }
    let span = tracer
        .span_builder(format!("process {}", msg.command))
        .with_kind(SpanKind::Consumer)
        .with_attributes(attributes)
        .start_with_context(&tracer, &parent);
    Some(parent.with_span(span))
}

/// Ends the span of `cx` (if any), with an error status naming `error`.
pub(crate) fn end(cx: Option<Context>, error: Option<String>) {
    if let Some(cx) = cx {
        let span = cx.span();
        if let Some(e) = error {
            span.set_status(Status::error(e));
        }
        span.end();
    }
}
