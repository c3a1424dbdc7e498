//! Cases 1–4: instance, service, broadcast, namespaces.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use comms_core::address::{Destination, Scope};
use comms_core::directory::{Directory, Query};
use comms_core::message::Message;

use crate::harness::{ensure, CaseResult, Ctx, OrFail, Recorder, WAIT};

/// Parameter values that exercise every quoting and escaping rule of the wire formats.
pub(crate) const TRICKY: &str = "a;b=\"c\" \\n\n\r\ttab é ✓ {\"json\":[1]}";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Payload {
    n: u32,
    text: String,
    values: Vec<i64>,
}

pub(crate) async fn instance_unicast(ctx: &Ctx<'_>) -> CaseResult {
    let rec = Recorder::new();
    let b = ctx
        .endpoint(1, "b", |e| e.handle("DATA", rec.handler()))
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    for i in 0..100u32 {
        let payload = Payload {
            n: i,
            text: TRICKY.into(),
            values: vec![-1, i64::MAX, i64::from(i)],
        };
        let msg = Message::new("DATA", b.address().clone())
            .or_fail("build")?
            .with_param("seq", i.to_string())
            .with_param("tricky", TRICKY)
            .with_param("empty", "")
            .with_data(&payload)
            .or_fail("data")?;
        a.send(msg).await.or_fail("send")?;
    }
    rec.wait_distinct(100, WAIT).await?;
    let mut seqs = BTreeSet::new();
    for m in rec.messages() {
        ensure(m.from() == Some(a.address()), || {
            format!("from is {:?}, expected {}", m.from(), a.address())
        })?;
        ensure(m.param("tricky") == Some(TRICKY), || {
            format!("tricky param changed: {:?}", m.param("tricky"))
        })?;
        ensure(m.param("empty") == Some(""), || "empty param lost".into())?;
        let p: Payload = m.data().or_fail("typed data")?;
        ensure(p.text == TRICKY && p.values[1] == i64::MAX, || {
            format!("typed data changed: {p:?}")
        })?;
        seqs.insert(p.n);
    }
    ensure(seqs.len() == 100, || {
        format!("{} distinct payloads, expected 100", seqs.len())
    })?;
    if ctx.caps().exclusive_names {
        // The transport claims one live endpoint per address: a second one must not start.
        let second = ctx.endpoint(1, "b", |e| e).await;
        ensure(second.is_err(), || {
            format!(
                "a second live endpoint at {} started, though the transport claims exclusive names",
                b.address()
            )
        })?;
    }
    a.close().await.or_fail("close a")?;
    b.close().await.or_fail("close b")
}

pub(crate) async fn service_anycast(ctx: &Ctx<'_>) -> CaseResult {
    if let Some(why) = ctx.backend.single_node() {
        return Err(crate::Stop::Skip(format!(
            "needs two instances of one service on two nodes: {why}"
        )));
    }
    let (r1, r2) = (Recorder::new(), Recorder::new());
    let slow = |rec: Recorder| {
        move |req: comms_core::endpoint::Request| {
            let rec = rec.clone();
            async move {
                tokio::time::sleep(Duration::from_micros(300)).await;
                rec.push(req.into_message());
                Ok(comms_core::endpoint::Outcome::Done)
            }
        }
    };
    let b1 = ctx
        .endpoint(1, "work", |e| e.handle("JOB", slow(r1.clone())))
        .await?;
    let b2 = ctx
        .endpoint(2, "work", |e| e.handle("JOB", slow(r2.clone())))
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    let service = Destination::service(ctx.name("work")).or_fail("service name")?;
    for i in 0..1000 {
        let msg = Message::new("JOB", service.clone())
            .or_fail("build")?
            .with_param("seq", i.to_string());
        a.send(msg).await.or_fail("send")?;
    }
    let done = || r1.distinct() + r2.distinct() >= 1000;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids: Vec<_> = r1
        .messages()
        .into_iter()
        .chain(r2.messages())
        .map(|m| m.id().clone())
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    ensure(ids.len() == 1000, || {
        format!("{} distinct of 1000 handled", ids.len())
    })?;
    ensure(total == 1000, || {
        format!("{total} handler runs for 1000 messages: some handled twice")
    })?;
    ensure(r1.count() > 0 && r2.count() > 0, || {
        format!(
            "work not shared: instance 1 handled {}, instance 2 handled {}",
            r1.count(),
            r2.count()
        )
    })?;
    for ep in [a, b1, b2] {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}

pub(crate) async fn broadcast_to_declared(ctx: &Ctx<'_>) -> CaseResult {
    let (r1, r2, r3, unknown) = (
        Recorder::new(),
        Recorder::new(),
        Recorder::new(),
        Recorder::new(),
    );
    let e1 = ctx
        .endpoint(1, "e1", |e| e.handle("NEWS", r1.handler()))
        .await?;
    let e2 = ctx
        .endpoint(2, "e2", |e| e.handle("NEWS", r2.handler()))
        .await?;
    let e3 = ctx
        .endpoint(1, "e3", |e| e.handle("OTHER", r3.handler()))
        .await?;
    // The sender records UNKNOWN replies: an endpoint that got a broadcast it did not declare
    // would answer with one.
    let s = ctx
        .endpoint(1, "s", |e| e.handle("UNKNOWN", unknown.handler()))
        .await?;
    let all = Message::new("NEWS", Destination::Broadcast(Scope::All))
        .or_fail("build")?
        .with_param("n", "1");
    s.send(all).await.or_fail("send broadcast")?;
    r1.wait_distinct(1, WAIT).await?;
    r2.wait_distinct(1, WAIT).await?;
    // Scope `.`: only endpoints on the sender's node.
    let local = Message::new("NEWS", Destination::Broadcast(Scope::Node))
        .or_fail("build")?
        .with_param("n", "2");
    s.send(local).await.or_fail("send local broadcast")?;
    let same_node = |ep: &comms_core::endpoint::Endpoint| ep.address().node() == s.address().node();
    let (want1, want2) = (
        1 + usize::from(same_node(&e1)),
        1 + usize::from(same_node(&e2)),
    );
    r1.wait_distinct(want1, WAIT).await?;
    r2.wait_distinct(want2, WAIT).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure(r1.count() == want1 && r2.count() == want2, || {
        format!(
            "declared endpoints handled {} and {}, expected {want1} and {want2}",
            r1.count(),
            r2.count()
        )
    })?;
    ensure(r3.count() == 0 && unknown.count() == 0, || {
        format!(
            "an endpoint that did not declare NEWS received it ({} UNKNOWN replies)",
            unknown.count()
        )
    })?;
    for ep in [e1, e2, e3, s] {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}

pub(crate) async fn namespace_isolation(ctx: &Ctx<'_>) -> CaseResult {
    if !ctx.caps().namespaces {
        return Err(crate::Stop::Skip("the backend has no namespaces".into()));
    }
    let other_ns = format!("{}_other", ctx.ns);
    let (r1, r2) = (Recorder::new(), Recorder::new());
    let (d1, d2) = (Directory::new(), Directory::new());
    let b1 = ctx
        .endpoint(1, "svc", |e| {
            e.handle("PING", r1.handler()).directory(d1.clone())
        })
        .await?;
    let b2 = ctx
        .endpoint_in(&other_ns, 1, "svc", |e| {
            e.handle("PING", r2.handler()).directory(d2.clone())
        })
        .await?;
    let a1 = ctx.endpoint(0, "only_in_first", |e| e).await?;
    let svc = Destination::service(ctx.name("svc")).or_fail("name")?;
    for i in 0..10 {
        let msg = Message::new("PING", svc.clone())
            .or_fail("build")?
            .with_param("seq", i.to_string());
        a1.send(msg).await.or_fail("send")?;
    }
    a1.send(Message::new("PING", Destination::Broadcast(Scope::All)).or_fail("build")?)
        .await
        .or_fail("broadcast")?;
    a1.send(Message::new("PING", b2.address().clone()).or_fail("build")?)
        .await
        .or_fail("send to the same address")?;
    r1.wait_distinct(12, WAIT).await?;
    ensure(d1.wait_up(b1.address(), WAIT).await, || {
        "own namespace advertisement not seen".into()
    })?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure(r2.count() == 0, || {
        format!("the other namespace handled {} messages", r2.count())
    })?;
    let foreign = d2.lookup(
        &Query::new()
            .service(ctx.name("only_in_first"))
            .include_down(),
    );
    ensure(foreign.is_empty(), || {
        "the other namespace saw this namespace's advertisement".into()
    })?;
    for ep in [a1, b1, b2] {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}
