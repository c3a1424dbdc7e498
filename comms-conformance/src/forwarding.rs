//! Cases 21–22: forward keeps origin, hop limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use comms_core::address::Destination;
use comms_core::endpoint::{Outcome, Request};
use comms_core::message::Message;

use crate::harness::{ensure, CaseResult, Ctx, OrFail, Recorder, WAIT};

pub(crate) async fn forward_keeps_origin(ctx: &Ctx<'_>) -> CaseResult {
    let rec = Recorder::new();
    let d = ctx
        .endpoint(2, "d", |e| e.handle("TASK", rec.handler()))
        .await?;
    let to_d = Destination::Instance(d.address().clone());
    let c = ctx
        .endpoint(1, "c", |e| {
            e.handle("TASK", move |_req: Request| {
                let to = to_d.clone();
                async move { Ok(Outcome::Forward(to)) }
            })
        })
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    let msg = Message::new("TASK", c.address().clone())
        .or_fail("build")?
        .with_param("x", "1");
    let id = msg.id().clone();
    a.send(msg).await.or_fail("send")?;
    rec.wait_distinct(1, WAIT).await?;
    let got = rec.messages().remove(0);
    ensure(got.from() == Some(a.address()), || {
        format!("D saw from = {:?}, expected {}", got.from(), a.address())
    })?;
    ensure(got.id() == id, || {
        "the forward changed the message id".into()
    })?;
    ensure(got.hops() == 1, || {
        format!("hops = {}, expected 1", got.hops())
    })?;
    ensure(got.param("x") == Some("1"), || {
        "params lost in the forward".into()
    })?;
    for ep in [a, c, d] {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}

pub(crate) async fn hop_limit(ctx: &Ctx<'_>) -> CaseResult {
    let runs = Arc::new(AtomicUsize::new(0));
    let (x_name, y_name) = (ctx.name("x"), ctx.name("y"));
    let bounce = |next: String, runs: Arc<AtomicUsize>| {
        move |_req: Request| {
            runs.fetch_add(1, Ordering::SeqCst);
            let next = next.clone();
            async move { Ok(Outcome::Forward(Destination::Service(next))) }
        }
    };
    let x = ctx
        .endpoint(1, "x", |e| {
            e.handle("LOOP", bounce(y_name.clone(), runs.clone()))
        })
        .await?;
    let y = ctx
        .endpoint(2, "y", |e| {
            e.handle("LOOP", bounce(x_name.clone(), runs.clone()))
        })
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    a.send(Message::new("LOOP", x.address().clone()).or_fail("build")?)
        .await
        .or_fail("send")?;
    let limit = usize::from(ctx.caps().hop_limit);
    let deadline = tokio::time::Instant::now() + WAIT;
    while runs.load(Ordering::SeqCst) < limit + 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total = runs.load(Ordering::SeqCst);
    ensure(total == limit + 1, || {
        format!(
            "the loop ran {total} handlers; with hop limit {limit} it must stop at {}",
            limit + 1
        )
    })?;
    for ep in [a, x, y] {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}
