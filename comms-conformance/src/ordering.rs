//! Cases 5–7: pair order, many senders, large payload.

use std::collections::HashMap;

use comms_core::address::Destination;
use comms_core::error::Error;
use comms_core::message::Message;

use crate::harness::{
    check_increasing, check_no_duplicates, ensure, CaseResult, Ctx, OrFail, Recorder, Stop, WAIT,
};

pub(crate) async fn pair_order(ctx: &Ctx<'_>) -> CaseResult {
    let rec = Recorder::new();
    let b = ctx
        .endpoint(1, "b", |e| e.handle("SEQ", rec.handler()))
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    for i in 0..1000u64 {
        let msg = Message::new("SEQ", b.address().clone())
            .or_fail("build")?
            .with_param("seq", i.to_string());
        a.send(msg).await.or_fail("send")?;
    }
    rec.wait_distinct(1000, WAIT).await?;
    check_no_duplicates(&rec)?;
    let seqs = rec.seqs();
    check_increasing(&seqs, "A→B")?;
    ensure(seqs.len() == 1000, || format!("{} messages", seqs.len()))?;
    a.close().await.or_fail("close a")?;
    b.close().await.or_fail("close b")
}

pub(crate) async fn many_senders(ctx: &Ctx<'_>) -> CaseResult {
    let rec = Recorder::new();
    let b = ctx
        .endpoint(1, "sink", |e| e.handle("SEQ", rec.handler()))
        .await?;
    let service = Destination::service(ctx.name("sink")).or_fail("name")?;
    let mut senders = Vec::new();
    for s in 0..10 {
        senders.push(ctx.endpoint(s % 3, &format!("sender{s}"), |e| e).await?);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for sender in senders.clone() {
        let service = service.clone();
        tasks.spawn(async move {
            for i in 0..1000u64 {
                let msg = Message::new("SEQ", service.clone())?.with_param("seq", i.to_string());
                sender.send(msg).await?;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.or_fail("sender task")?.or_fail("send")?;
    }
    rec.wait_distinct(10_000, WAIT).await?;
    check_no_duplicates(&rec)?;
    let mut per_sender: HashMap<String, Vec<u64>> = HashMap::new();
    for m in rec.messages() {
        let from = m.from().map(|f| f.to_string()).unwrap_or_default();
        let seq = m
            .param("seq")
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX);
        per_sender.entry(from).or_default().push(seq);
    }
    ensure(per_sender.len() == 10, || {
        format!("{} senders seen, expected 10", per_sender.len())
    })?;
    for (from, seqs) in &per_sender {
        check_increasing(seqs, from)?;
        ensure(seqs.len() == 1000, || {
            format!("{from}: {} messages", seqs.len())
        })?;
    }
    for ep in senders.into_iter().chain([b]) {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}

pub(crate) async fn large_payload(ctx: &Ctx<'_>) -> CaseResult {
    const SIZE: usize = 1024 * 1024;
    let rec = Recorder::new();
    let b = ctx
        .endpoint(1, "b", |e| e.handle("BLOB", rec.handler()))
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    let pattern = "0123456789;=\"\\\n\r abcdefghijklmnopqrstuvwxyz é";
    let blob: String = pattern.chars().cycle().take(SIZE).collect();
    let msg = Message::new("BLOB", b.address().clone())
        .or_fail("build")?
        .with_param("blob", blob.clone());
    let size = msg.payload_size();
    let max = ctx.caps().max_message_size;
    let result = a.send(msg).await;
    if size > max {
        return match result {
            Err(Error::TooLarge { .. }) => Ok(()),
            other => Err(Stop::Fail(format!(
                "a {size}-byte payload over the documented maximum {max} was not refused with TooLarge: {other:?}"
            ))),
        };
    }
    result.or_fail("send 1 MiB")?;
    rec.wait_distinct(1, WAIT).await?;
    let got = rec
        .messages()
        .pop()
        .and_then(|m| m.param("blob").map(str::to_owned));
    ensure(got.as_deref() == Some(blob.as_str()), || {
        format!(
            "payload changed: {} bytes received of {}",
            got.map_or(0, |g| g.len()),
            blob.len()
        )
    })?;
    a.close().await.or_fail("close a")?;
    b.close().await.or_fail("close b")
}
