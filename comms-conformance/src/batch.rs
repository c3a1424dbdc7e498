//! Case 31: a batch handler. Two senders' messages reach one batch handler many per call;
//! each is handled once, each sender's in order, and a poison message among them is retried
//! alone and dead-lettered while its neighbours are settled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use comms_core::endpoint::{HandlerError, Outcome};
use comms_core::message::Message;
use comms_core::{Batching, RetryPolicy};

use crate::harness::{
    check_increasing, check_no_duplicates, ensure, CaseResult, Ctx, OrFail, Recorder, Stop, WAIT,
};

const PER_SENDER: u64 = 300;
/// Sender `a`'s message with this `seq` always fails.
const POISON: u64 = 150;

pub(crate) async fn batch_handler(ctx: &Ctx<'_>) -> CaseResult {
    let rec = Recorder::new();
    let largest = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let policy = RetryPolicy::attempts(2).with_initial_backoff(Duration::from_millis(20));
    let b = {
        let (rec, largest, calls) = (rec.clone(), largest.clone(), calls.clone());
        ctx.endpoint(1, "batcher", move |e| {
            e.retry(policy).handle_batch(
                "PUT",
                Batching::up_to(64).linger(Duration::from_millis(20)),
                move |batch| {
                    let (rec, largest, calls) = (rec.clone(), largest.clone(), calls.clone());
                    async move {
                        largest.fetch_max(batch.len(), Ordering::SeqCst);
                        calls.fetch_add(1, Ordering::SeqCst);
                        batch
                            .into_iter()
                            .map(|req| {
                                let poison = req.message().param("who") == Some("a")
                                    && req.message().param("seq") == Some(&POISON.to_string());
                                if poison {
                                    return Err(HandlerError::Retry("poison on purpose".into()));
                                }
                                rec.push(req.into_message());
                                Ok(Outcome::Done)
                            })
                            .collect()
                    }
                },
            )
        })
        .await?
    };
    let place = b.dead_letters().or_fail("the dead-letter place")?;
    let mut poison_id = String::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (slot, who) in [(0, "a"), (2, "c")] {
        let sender = ctx.endpoint(slot, who, |e| e).await?;
        let mut msgs = Vec::new();
        for seq in 0..PER_SENDER {
            let msg = Message::new("PUT", b.address().clone())
                .or_fail("build")?
                .with_param("who", who)
                .with_param("seq", seq.to_string());
            if who == "a" && seq == POISON {
                poison_id = msg.id().to_string();
            }
            msgs.push(msg);
        }
        tasks.spawn(async move {
            for msg in msgs {
                sender.send(msg).await?;
            }
            Ok::<_, comms_core::Error>(sender)
        });
    }
    // The senders stay open until the end: the poison message's sender gets an ERROR.
    let mut senders = Vec::new();
    while let Some(r) = tasks.join_next().await {
        senders.push(r.or_fail("sender task")?.or_fail("send")?);
    }
    let want = 2 * PER_SENDER as usize - 1;
    rec.wait_distinct(want, WAIT).await?;
    check_no_duplicates(&rec)?;
    let mut per_sender: HashMap<String, Vec<u64>> = HashMap::new();
    for m in rec.messages() {
        let who = m.param("who").unwrap_or_default().to_owned();
        let seq = m
            .param("seq")
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX);
        per_sender.entry(who).or_default().push(seq);
    }
    for (who, seqs) in &per_sender {
        check_increasing(seqs, who)?;
    }
    let (largest, calls) = (largest.load(Ordering::SeqCst), calls.load(Ordering::SeqCst));
    ensure(largest > 1 && largest <= 64, || {
        format!("largest batch {largest} (expected 2 to 64) over {calls} calls")
    })?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let letters = place.list(100_000).await.or_fail("list the dead letters")?;
        if let Some(l) = letters.iter().find(|l| l.id == poison_id) {
            ensure(l.attempts == 2, || {
                format!("the poison letter says {} attempts", l.attempts)
            })?;
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Stop::Fail(format!(
                "the poison message {poison_id} is not in {} within {WAIT:?}",
                place.place()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.close().await.or_fail("close the batcher")?;
    for s in senders {
        s.close().await.or_fail("close a sender")?;
    }
    Ok(())
}
