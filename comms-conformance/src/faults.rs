//! Cases 23, 24 and 27: the daemon or broker killed and restarted.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use comms_core::directory::Directory;
use comms_core::error::Error;
use comms_core::message::Message;

use crate::harness::{
    check_increasing, check_no_duplicates, ensure, CaseResult, Ctx, OrFail, Recorder, Stop, WAIT,
};

/// Run `attempt` (a send or a submit of one message, same id each time) again while it fails
/// retryably, for up to 120 s. An `Err` from `submit` means nothing was sent, so retrying it
/// keeps the order.
async fn retrying<T, F>(mut attempt: impl FnMut() -> F) -> Result<T, Error>
where
    F: std::future::Future<Output = Result<T, Error>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match attempt().await {
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Receipts a pipelined sender keeps outstanding in case 27.
const PIPELINE_WINDOW: usize = 500;

/// One sender's half of cases 23 and 27: `count` numbered messages to `to`, each sent and
/// confirmed in turn, or pipelined (up to [`PIPELINE_WINDOW`] receipts outstanding; every
/// receipt must come back `Ok`).
async fn send_numbered(
    a: comms_core::endpoint::Endpoint,
    to: comms_core::Address,
    count: usize,
    pipelined: bool,
) -> Result<(), Error> {
    let mut receipts = VecDeque::new();
    for i in 0..count {
        let msg = Message::new("SEQ", to.clone())?.with_param("seq", i.to_string());
        if pipelined {
            receipts.push_back(retrying(|| a.submit(msg.clone())).await?);
            if receipts.len() >= PIPELINE_WINDOW {
                if let Some(oldest) = receipts.pop_front() {
                    oldest.await?;
                }
            }
        } else {
            retrying(|| a.send(msg.clone())).await?;
        }
        if i % 500 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for receipt in receipts {
        receipt.await?;
    }
    Ok(())
}

pub(crate) async fn kill_and_restart(ctx: &Ctx<'_>) -> CaseResult {
    restarted_twice(ctx, false).await
}

pub(crate) async fn pipelined_restart(ctx: &Ctx<'_>) -> CaseResult {
    restarted_twice(ctx, true).await
}

/// Two senders, 10,000 messages to one receiver, the daemon or broker killed and restarted
/// twice meanwhile: every message handled once, in order per sender.
async fn restarted_twice(ctx: &Ctx<'_>, pipelined: bool) -> CaseResult {
    const TOTAL: usize = 10_000;
    let rec = Recorder::new();
    let b = ctx
        .endpoint(2, "b", |e| e.handle("SEQ", rec.handler()))
        .await?;
    let to = b.address().clone();
    let senders = [
        ctx.endpoint(0, "a0", |e| e).await?,
        ctx.endpoint(1, "a1", |e| e).await?,
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (k, a) in senders.iter().cloned().enumerate() {
        let to = to.clone();
        tasks.spawn(async move {
            send_numbered(a, to, TOTAL / 2, pipelined).await?;
            Ok::<_, Error>(k)
        });
    }
    for at in [TOTAL / 5, TOTAL * 3 / 5] {
        // A sender that fails meanwhile is reported as such, not as a count that stalls.
        let reached = rec.wait_distinct(at, WAIT * 2);
        tokio::pin!(reached);
        loop {
            tokio::select! {
                r = &mut reached => break r.map_err(|e| stalled(e, &rec, tasks.len()))?,
                Some(done) = tasks.join_next() => {
                    done.or_fail("sender task")?.or_fail("send")?;
                }
            }
        }
        ctx.backend
            .kill_and_restart()
            .await
            .or_fail("kill and restart")?;
    }
    while let Some(r) = tasks.join_next().await {
        r.or_fail("sender task")?.or_fail("send")?;
    }
    rec.wait_distinct(TOTAL, WAIT * 3)
        .await
        .map_err(|e| stalled(e, &rec, 0))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    check_no_duplicates(&rec)?;
    let mut per_sender: HashMap<String, Vec<u64>> = HashMap::new();
    for m in rec.messages() {
        let seq = m
            .param("seq")
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX);
        per_sender
            .entry(m.from().map(|f| f.to_string()).unwrap_or_default())
            .or_default()
            .push(seq);
    }
    for (from, seqs) in &per_sender {
        check_increasing(seqs, from)?;
    }
    for ep in senders.into_iter().chain([b]) {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}

/// A stall's failure, with where each sender's messages stopped and how many senders were
/// still sending (every message of a finished sender was confirmed: a stall then lies on
/// the receiving side).
fn stalled(e: Stop, rec: &Recorder, sending: usize) -> Stop {
    let Stop::Fail(what) = e else { return e };
    let mut last: HashMap<String, (usize, u64)> = HashMap::new();
    for m in rec.messages() {
        let seq = m.param("seq").and_then(|s| s.parse().ok()).unwrap_or(0);
        let from = m.from().map(|f| f.to_string()).unwrap_or_default();
        let entry = last.entry(from).or_default();
        *entry = (entry.0 + 1, entry.1.max(seq));
    }
    let mut per: Vec<String> = last
        .iter()
        .map(|(from, (n, seq))| format!("{from}: {n} handled, highest seq {seq}"))
        .collect();
    per.sort();
    Stop::Fail(format!(
        "{what} ({}; {sending} sender(s) still sending)",
        per.join(", ")
    ))
}

pub(crate) async fn reconnect_state(ctx: &Ctx<'_>) -> CaseResult {
    let dir = Directory::new();
    let w = ctx
        .endpoint(0, "watch", |e| {
            e.directory(dir.clone()).ttl(Duration::from_secs(1))
        })
        .await?;
    let rec = Recorder::new();
    let b = ctx
        .endpoint(1, "b", |e| {
            e.handle("AFTER", rec.handler()).ttl(Duration::from_secs(1))
        })
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    ensure(dir.wait_up(b.address(), WAIT).await, || {
        "b never listed up".into()
    })?;
    ctx.backend
        .kill_and_restart()
        .await
        .or_fail("kill and restart")?;
    let restarted = SystemTime::now();
    for i in 0..10 {
        let msg = Message::new("AFTER", b.address().clone())
            .or_fail("build")?
            .with_param("seq", i.to_string());
        retrying(|| a.send(msg.clone()))
            .await
            .or_fail("send after the restart")?;
    }
    rec.wait_distinct(10, WAIT).await?;
    // Advertisements flow again: b is heard from after the restart.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let fresh = dir
            .get(b.address())
            .is_some_and(|e| e.up && e.last_seen > restarted);
        if fresh {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Stop::Fail(
                "no advertisement from b after the restart".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for ep in [a, b, w] {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}
