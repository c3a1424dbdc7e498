//! Cases 28–30: retries and poison messages. A failing handler is retried in place with
//! exponential backoff (its sender's later messages wait, other senders do not); after the
//! last attempt the message lands in the backend's durable dead-letter place with the reason
//! and the attempt count, and can be replayed; the count outlives a restart of the receiver
//! where the backend keeps local state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use comms_core::dead_letter::{self, DeadLetter, DeadLetters};
use comms_core::endpoint::{Endpoint, HandlerError, Outcome};
use comms_core::error::Error;
use comms_core::message::{commands, Message};
use comms_core::{Advertisement, RetryPolicy};

use crate::harness::{ensure, CaseResult, Ctx, OrFail, Recorder, Stop, WAIT};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The letter `id` once it is in `place` (polled).
async fn letter(place: &dyn DeadLetters, id: &str, within: Duration) -> Result<DeadLetter, Stop> {
    let deadline = Instant::now() + within;
    loop {
        let letters = place.list(100_000).await.or_fail("list the dead letters")?;
        if let Some(l) = letters.into_iter().find(|l| l.id == id) {
            return Ok(l);
        }
        if Instant::now() > deadline {
            return Err(Stop::Fail(format!(
                "message {id} not in the dead-letter place ({}) within {within:?}",
                place.place()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn retry_in_place(ctx: &Ctx<'_>) -> CaseResult {
    let policy = RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(300),
        multiplier: 2.0,
        max_backoff: Duration::from_secs(5),
    };
    let rec = Recorder::new();
    let tries: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let handled_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let handler = {
        let (rec, tries, handled_at) = (rec.clone(), tries.clone(), handled_at.clone());
        move |req: comms_core::Request| {
            let (rec, tries, handled_at) = (rec.clone(), tries.clone(), handled_at.clone());
            async move {
                if req.message().param("seq") == Some("0")
                    && req.message().param("who") == Some("a")
                {
                    let n = {
                        let mut t = lock(&tries);
                        t.push(Instant::now());
                        t.len()
                    };
                    if n <= 2 {
                        return Err(HandlerError::Retry(format!("attempt {n} fails on purpose")));
                    }
                }
                lock(&handled_at).insert(req.message().id().to_string(), Instant::now());
                rec.push(req.into_message());
                Ok(Outcome::Done)
            }
        }
    };
    let b = ctx
        .endpoint(1, "retrier", |e| e.retry(policy).handle("WORK", handler))
        .await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    let c = ctx.endpoint(2, "c", |e| e).await?;
    let work = |who: &str, seq: usize| {
        Message::new("WORK", b.address().clone())
            .map(|m| m.with_param("who", who).with_param("seq", seq.to_string()))
    };
    let mut a_ids = Vec::new();
    for seq in 0..5 {
        let m = work("a", seq).or_fail("build")?;
        a_ids.push(m.id().to_string());
        a.send(m).await.or_fail("a sends")?;
    }
    let deadline = Instant::now() + WAIT;
    while lock(&tries).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut c_ids = Vec::new();
    for seq in 0..5 {
        let m = work("c", seq).or_fail("build")?;
        c_ids.push(m.id().to_string());
        c.send(m).await.or_fail("c sends")?;
    }
    rec.wait_distinct(10, WAIT).await?;
    crate::harness::check_no_duplicates(&rec)?;
    let a_order: Vec<String> = rec
        .messages()
        .iter()
        .filter(|m| m.param("who") == Some("a"))
        .filter_map(|m| m.param("seq").map(str::to_owned))
        .collect();
    ensure(a_order == ["0", "1", "2", "3", "4"], || {
        format!("a's messages were handled in the order {a_order:?}: a retried message must hold back its sender's later ones")
    })?;
    let tries = lock(&tries).clone();
    ensure(tries.len() == 3, || {
        format!(
            "{} attempts of the failing message, expected 3",
            tries.len()
        )
    })?;
    let (gap1, gap2) = (tries[1] - tries[0], tries[2] - tries[1]);
    ensure(
        gap1 >= Duration::from_millis(270) && gap2 >= Duration::from_millis(540) && gap2 > gap1,
        || {
            format!("waits between attempts {gap1:?} then {gap2:?}: expected about 300 ms then 600 ms (exponential backoff)")
        },
    )?;
    let at = lock(&handled_at).clone();
    let first_a = at[&a_ids[0]];
    let late: Vec<&String> = c_ids.iter().filter(|id| at[*id] > first_a).collect();
    ensure(late.is_empty(), || {
        format!(
            "{} of c's messages waited for a's retried one: other senders must not be delayed",
            late.len()
        )
    })?;
    for ep in [a, b, c] {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}

pub(crate) async fn poison_to_dead_letter(ctx: &Ctx<'_>) -> CaseResult {
    let policy = RetryPolicy::attempts(3).with_initial_backoff(Duration::from_millis(50));
    let fixed = Arc::new(AtomicBool::new(false));
    let poison_tries = Arc::new(AtomicU32::new(0));
    let rec = Recorder::new();
    let b = {
        let (fixed, tries, rec) = (fixed.clone(), poison_tries.clone(), rec.clone());
        ctx.endpoint(1, "victim", move |e| {
            e.retry(policy)
                .handle("POISON", move |req| {
                    let (fixed, tries, rec) = (fixed.clone(), tries.clone(), rec.clone());
                    async move {
                        if fixed.load(Ordering::SeqCst) {
                            rec.push(req.into_message());
                            return Ok(Outcome::Done);
                        }
                        let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
                        Err(HandlerError::Retry(format!("bad input, attempt {n}")))
                    }
                })
                .handle("BOOM", |_req| async { panic!("boom on purpose") })
                .handle("HANG", |_req| async {
                    std::future::pending::<()>().await;
                    Ok(Outcome::Done)
                })
                .command_timeout("HANG", Duration::from_millis(300))
        })
        .await?
    };
    let a = ctx.endpoint(0, "a", |e| e).await?;
    let place = b.dead_letters().or_fail("the dead-letter place")?;
    let poison = Message::new("POISON", b.address().clone())
        .or_fail("build")?
        .with_param("order", "42");
    a.send(poison.clone()).await.or_fail("send POISON")?;
    // Requests get an ERROR once their message is dead-lettered.
    let mut asked = Vec::new();
    for (command, why) in [("BOOM", "panicked"), ("HANG", "timed out")] {
        let msg = Message::new(command, b.address().clone()).or_fail("build")?;
        asked.push(msg.id().to_string());
        match a.request(msg, Duration::from_secs(30)).await {
            Err(Error::Remote {
                command: c, reason, ..
            }) => ensure(
                c == commands::ERROR
                    && reason.contains("dead-lettered after 3 attempts")
                    && reason.contains(why),
                || format!("{command} answered {c}: {reason}"),
            )?,
            other => ensure(false, || {
                format!("{command} answered {other:?}, expected ERROR")
            })?,
        }
        let l = letter(
            &*place,
            asked.last().map(String::as_str).unwrap_or(""),
            WAIT,
        )
        .await?;
        ensure(l.attempts == 3 && l.reason.contains(why), || {
            format!(
                "the {command} letter says {} attempts, reason {:?}",
                l.attempts, l.reason
            )
        })?;
    }
    let l = letter(&*place, poison.id().as_str(), WAIT).await?;
    let tries = poison_tries.load(Ordering::SeqCst);
    ensure(tries == 3 && l.attempts == 3, || {
        format!(
            "POISON ran {tries} times and its letter says {} attempts; expected 3 and 3",
            l.attempts
        )
    })?;
    ensure(l.reason.contains("bad input, attempt 3"), || {
        format!("letter reason {:?}", l.reason)
    })?;
    ensure(l.receiver.as_ref() == Some(b.address()), || {
        format!("letter receiver {:?}, expected {}", l.receiver, b.address())
    })?;
    let m = l.message.as_ref().or_fail("the letter's message")?;
    ensure(
        m.param("order") == Some("42") && m.from() == Some(a.address()) && m.command == "POISON",
        || format!("the letter holds {m:?}"),
    )?;
    // Fixed: replay it. It runs once more (the receiver's dedup remembers the given-up copy,
    // the replay is one hop further) and leaves the place.
    fixed.store(true, Ordering::SeqCst);
    let taken = place
        .take(poison.id().as_str())
        .await
        .or_fail("take")?
        .or_fail("the letter to replay")?;
    let replayer = ctx
        .backend
        .connect(&ctx.ns, 0)
        .await
        .or_fail("connect the replayer")?;
    let me = comms_core::Address::new(replayer.node(), ctx.name("replayer")).or_fail("address")?;
    replayer
        .advertise(&Advertisement::new(me, Vec::<String>::new()))
        .await
        .or_fail("advertise the replayer")?;
    dead_letter::replay(&*replayer, &taken)
        .await
        .or_fail("replay")?;
    rec.wait_distinct(1, WAIT).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure(
        rec.count() == 1 && rec.messages()[0].id() == poison.id(),
        || format!("after the replay the handler ran {} times", rec.count()),
    )?;
    let left = place.list(100_000).await.or_fail("list")?;
    ensure(!left.iter().any(|l| l.id == poison.id().as_str()), || {
        "the replayed letter is still in the place".into()
    })?;
    for id in &asked {
        place
            .take(id)
            .await
            .or_fail("purge one")?
            .or_fail("a letter to purge")?;
    }
    let _ = replayer.close().await;
    for ep in [a, b] {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}

pub(crate) async fn attempts_survive_restart(ctx: &Ctx<'_>) -> CaseResult {
    let probe = ctx.backend.connect(&ctx.ns, 1).await.or_fail("connect")?;
    let state = probe.state_dir();
    let _ = probe.close().await;
    if state.is_none() {
        return Err(Stop::Skip(
            "this transport keeps no local state: attempt counts live in the receiver's memory"
                .into(),
        ));
    }
    let policy = RetryPolicy::attempts(4).with_initial_backoff(Duration::from_millis(150));
    let failing = |count: Arc<AtomicU32>| {
        move |e: comms_core::EndpointBuilder| {
            e.retry(policy).handle("WORK", move |_req| {
                let count = count.clone();
                async move {
                    count.fetch_add(1, Ordering::SeqCst);
                    Err(HandlerError::Retry("still failing".into()))
                }
            })
        }
    };
    let (first, second) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let b1 = ctx.endpoint(1, "restarted", failing(first.clone())).await?;
    let a = ctx.endpoint(0, "a", |e| e).await?;
    let msg = Message::new("WORK", b1.address().clone()).or_fail("build")?;
    a.send(msg.clone()).await.or_fail("send")?;
    let deadline = Instant::now() + WAIT;
    while first.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b1.close().await.or_fail("close the first receiver")?;
    let before = first.load(Ordering::SeqCst);
    ensure((2..4).contains(&before), || {
        format!("{before} attempts before the restart")
    })?;
    let b2: Endpoint = ctx
        .endpoint(1, "restarted", failing(second.clone()))
        .await?;
    let place = b2.dead_letters().or_fail("the dead-letter place")?;
    let l = letter(&*place, msg.id().as_str(), WAIT).await?;
    let after = second.load(Ordering::SeqCst);
    ensure(before + after == 4 && l.attempts == 4, || {
        format!("{before} attempts before the restart and {after} after, letter says {}: the count must go on across the restart (4 in all)", l.attempts)
    })?;
    place.take(msg.id().as_str()).await.or_fail("take")?;
    for ep in [a, b2] {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}
