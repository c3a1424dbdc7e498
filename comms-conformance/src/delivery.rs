//! Cases 12–18: redelivery, dedup, receiver restart, close, waiting for a service,
//! backpressure, at-most-once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use comms_core::address::Destination;
use comms_core::endpoint::{HandlerError, Outcome, Request};
use comms_core::error::Error;
use comms_core::message::{commands, DeliveryMode, Message};
use comms_core::RetryPolicy;

use crate::harness::{check_no_duplicates, ensure, CaseResult, Ctx, OrFail, Recorder, Stop, WAIT};

pub(crate) async fn redelivery_after_nack(ctx: &Ctx<'_>) -> CaseResult {
    let rec = Recorder::new();
    let attempts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let handler = {
        let (rec, attempts) = (rec.clone(), attempts.clone());
        move |req: Request| {
            let (rec, attempts) = (rec.clone(), attempts.clone());
            async move {
                let n = {
                    let mut a = attempts.lock().unwrap_or_else(|p| p.into_inner());
                    let n = a.entry(req.message().id().to_string()).or_insert(0);
                    *n += 1;
                    *n
                };
                if n <= 2 {
                    return Err(HandlerError::Retry(format!("attempt {n} fails on purpose")));
                }
                rec.push(req.into_message());
                Ok(Outcome::Done)
            }
        }
    };
    // Retried in place; a short backoff keeps 100 messages x 2 retries quick.
    let quick = RetryPolicy::attempts(5).with_initial_backoff(Duration::from_millis(1));
    let b = ctx
        .endpoint(1, "flaky", |e| e.retry(quick).handle("WORK", handler))
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    for i in 0..100 {
        let msg = Message::new("WORK", b.address().clone())
            .or_fail("build")?
            .with_param("seq", i.to_string());
        a.send(msg).await.or_fail("send")?;
    }
    rec.wait_distinct(100, WAIT).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    check_no_duplicates(&rec)?;
    let attempts = attempts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    ensure(
        attempts.len() == 100 && attempts.values().all(|n| *n == 3),
        || {
            format!(
                "expected 3 attempts for each of 100 messages, got {:?}",
                attempts.values().collect::<Vec<_>>()
            )
        },
    )?;
    a.close().await.or_fail("close a")?;
    b.close().await.or_fail("close b")
}

pub(crate) async fn dedup(ctx: &Ctx<'_>) -> CaseResult {
    let rec = Recorder::new();
    let b = ctx
        .endpoint(1, "b", |e| {
            e.handle("ONCE", rec.handler())
                .handle("MARK", rec.handler())
        })
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    let msg = Message::new("ONCE", b.address().clone()).or_fail("build")?;
    a.send(msg.clone()).await.or_fail("send")?;
    a.send(msg.clone())
        .await
        .or_fail("resend with the same id")?;
    a.send(msg.clone())
        .await
        .or_fail("resend with the same id")?;
    a.send(Message::new("MARK", b.address().clone()).or_fail("build")?)
        .await
        .or_fail("send mark")?;
    rec.wait_distinct(2, WAIT).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = rec.messages().iter().filter(|m| m.id() == msg.id()).count();
    ensure(runs == 1, || {
        format!("the handler ran {runs} times for one message id")
    })?;
    a.close().await.or_fail("close a")?;
    b.close().await.or_fail("close b")
}

pub(crate) async fn receiver_restart(ctx: &Ctx<'_>) -> CaseResult {
    const TOTAL: u64 = 5000;
    let rec = Recorder::new();
    let b = ctx
        .endpoint(1, "rcv", |e| e.handle("SEQ", rec.handler()))
        .await?;
    let to = b.address().clone();
    let a = ctx.endpoint(0, "a", |e| e).await?;
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                a.send(Message::new("SEQ", to.clone())?.with_param("seq", i.to_string()))
                    .await?;
            }
            Ok::<_, Error>(())
        })
    };
    rec.wait_distinct(500, WAIT).await?;
    b.close().await.or_fail("receiver goes away")?;
    let handled_before = rec.distinct();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b2 = ctx
        .endpoint(1, "rcv", |e| e.handle("SEQ", rec.handler()))
        .await?;
    ensure(b2.address() == b.address(), || {
        "the restarted receiver got another address".into()
    })?;
    rec.wait_distinct(TOTAL as usize, WAIT).await?;
    sender.await.or_fail("sender task")?.or_fail("send")?;
    ensure(handled_before < TOTAL as usize, || {
        "the receiver handled everything before it went away; nothing was tested".into()
    })?;
    a.close().await.or_fail("close a")?;
    b2.close().await.or_fail("close b")
}

pub(crate) async fn close_flushes(ctx: &Ctx<'_>) -> CaseResult {
    const TOTAL: usize = 10_000;
    let rec = Recorder::new();
    let b = ctx
        .endpoint(1, "b", |e| e.handle("SEQ", rec.handler()))
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    for i in 0..TOTAL {
        a.send(
            Message::new("SEQ", b.address().clone())
                .or_fail("build")?
                .with_param("seq", i.to_string()),
        )
        .await
        .or_fail("send")?;
    }
    a.close().await.or_fail("close the sender")?;
    rec.wait_distinct(TOTAL, WAIT).await?;
    check_no_duplicates(&rec)?;
    b.close().await.or_fail("close b")
}

pub(crate) async fn waiting_for_service(ctx: &Ctx<'_>) -> CaseResult {
    let a = ctx.endpoint(0, "a", |e| e).await?;
    // Sent before any instance exists; an instance appears within the TTL.
    let late = Destination::service(ctx.name("late")).or_fail("name")?;
    let msg = Message::new("HELLO", late)
        .or_fail("build")?
        .with_ttl(Duration::from_secs(20), true);
    a.send(msg)
        .await
        .or_fail("send to a service with no instance")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rec = Recorder::new();
    let b = ctx
        .endpoint(1, "late", |e| e.handle("HELLO", rec.handler()))
        .await?;
    rec.wait_distinct(1, WAIT).await?;
    // No instance ever appears: the sender asked for a report and gets SERVICE_UNAVAILABLE.
    let ttl = Duration::from_secs(1);
    let none = Destination::service(ctx.name("never")).or_fail("name")?;
    let msg = Message::new("HELLO", none)
        .or_fail("build")?
        .with_ttl(ttl, true);
    let started = Instant::now();
    let result = a.request(msg, Duration::from_secs(30)).await;
    let elapsed = started.elapsed();
    match result {
        Err(Error::Remote { command, .. }) if command == commands::SERVICE_UNAVAILABLE => {}
        other => {
            return Err(Stop::Fail(format!(
                "expected SERVICE_UNAVAILABLE past the TTL, got {other:?}"
            )))
        }
    }
    ensure(
        elapsed >= ttl.mul_f64(0.9) && elapsed <= ttl + Duration::from_secs(5),
        || format!("SERVICE_UNAVAILABLE after {elapsed:?} for a TTL of {ttl:?}"),
    )?;
    a.close().await.or_fail("close a")?;
    b.close().await.or_fail("close b")
}

pub(crate) async fn backpressure(ctx: &Ctx<'_>) -> CaseResult {
    let bound = ctx.caps().queue_bound;
    let slack = 1000.max(bound / 10);
    let (open_tx, open_rx) = watch::channel(false);
    let rec = Recorder::new();
    let handler = {
        let rec = rec.clone();
        move |req: Request| {
            let (rec, mut open) = (rec.clone(), open_rx.clone());
            async move {
                let _ = open.wait_for(|o| *o).await;
                rec.push(req.into_message());
                Ok(Outcome::Done)
            }
        }
    };
    let b = ctx
        .endpoint(1, "stuck", |e| e.handle("FILL", handler))
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    let limit = bound * 2 + slack;
    let mut accepted = 0usize;
    let mut stalled = None;
    for i in 0..limit {
        let msg = Message::new("FILL", b.address().clone())
            .or_fail("build")?
            .with_param("seq", i.to_string());
        match tokio::time::timeout(Duration::from_secs(3), a.send(msg)).await {
            Ok(Ok(())) => accepted += 1,
            Ok(Err(e @ Error::Backpressure(_))) => {
                stalled = Some(format!("send failed clearly: {e}"));
                break;
            }
            Ok(Err(e)) => {
                return Err(Stop::Fail(format!(
                    "send failed with an unexpected error: {e}"
                )))
            }
            Err(_) => {
                stalled = Some("send waited".into());
                break;
            }
        }
    }
    ensure(stalled.is_some(), || {
        format!("{limit} messages accepted for a stopped consumer: the queue bound {bound} was not enforced")
    })?;
    ensure(accepted <= bound + slack, || {
        format!("{accepted} accepted before the sender was held back; bound {bound}")
    })?;
    open_tx.send_replace(true);
    rec.wait_distinct(accepted, WAIT).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    check_no_duplicates(&rec)?;
    // The send that was cut off by our timeout may or may not have been taken.
    ensure(rec.distinct() <= accepted + 1, || {
        format!("{} handled, {accepted} accepted", rec.distinct())
    })?;
    a.close().await.or_fail("close a")?;
    b.close().await.or_fail("close b")
}

pub(crate) async fn at_most_once(ctx: &Ctx<'_>) -> CaseResult {
    if !ctx.caps().at_most_once {
        return Err(Stop::Skip("the backend offers no at-most-once mode".into()));
    }
    let rec = Recorder::new();
    let b = ctx
        .endpoint(1, "b", |e| e.handle("FAF", rec.handler()))
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    for i in 0..100 {
        let msg = Message::new("FAF", b.address().clone())
            .or_fail("build")?
            .with_param("seq", i.to_string())
            .at_most_once();
        a.send(msg).await.or_fail("send")?;
    }
    rec.wait_distinct(100, WAIT).await?;
    ensure(
        rec.messages()
            .iter()
            .all(|m| m.mode == DeliveryMode::AtMostOnce),
        || "delivery mode not kept".into(),
    )?;
    a.close().await.or_fail("close a")?;
    b.close().await.or_fail("close b")
}
