//! Cases 25–26: handler isolation. A panicking handler fails its message (`ERROR` naming the
//! panic) and the endpoint keeps serving every sender; a hung handler is dropped at its timeout
//! and never delays the other senders.

use std::time::Duration;

use tokio::time::Instant;

use comms_core::address::Address;
use comms_core::endpoint::{Endpoint, Outcome};
use comms_core::error::Error;
use comms_core::message::{commands, Message};

use crate::harness::{ensure, CaseResult, Ctx, OrFail, Recorder};

/// The hung handler's timeout in these cases: long enough that every other sender's
/// messages are sent and handled while it still hangs, even on a slow broker.
const HUNG_TIMEOUT: Duration = Duration::from_secs(20);
/// Other senders' messages, all to be handled while one handler hangs.
const SENDERS: usize = 10;
const PER_SENDER: usize = 100;
/// The limit for those 1,000 messages to be handled once sent (sending itself is bounded
/// by the hung handler's timeout: all of it happens while that handler hangs).
const OTHERS_WITHIN: Duration = Duration::from_secs(5);

fn ask(to: &Address, command: &str) -> Result<Message, Error> {
    Message::new(command, to.clone())
}

pub(crate) async fn handler_panic(ctx: &Ctx<'_>) -> CaseResult {
    let b = ctx
        .endpoint(1, "fragile", |e| {
            e.handle("BOOM", |_req| async { panic!("boom on purpose") })
                .handle("ECHO", |req| async move {
                    Ok(Outcome::Reply(req.reply("ECHOED")?))
                })
        })
        .await?;
    let a = ctx.endpoint(0, "client", |e| e).await?;
    let wait = Duration::from_secs(10);
    let failed = a
        .request(ask(b.address(), "BOOM").or_fail("build")?, wait)
        .await;
    match &failed {
        Err(Error::Remote {
            command, reason, ..
        }) => ensure(
            command == commands::ERROR && reason.contains("panicked") && reason.contains("boom"),
            || format!("the panic answered {command}: {reason}"),
        )?,
        other => ensure(false, || format!("a panicking handler answered {other:?}"))?,
    }
    // The same sender, then a new sender, are still served.
    for round in 0..3 {
        a.request(ask(b.address(), "ECHO").or_fail("build")?, wait)
            .await
            .or_fail(&format!("echo {round} after the panic"))?;
    }
    let c = ctx.endpoint(2, "newcomer", |e| e).await?;
    c.request(ask(b.address(), "ECHO").or_fail("build")?, wait)
        .await
        .or_fail("a new sender's echo after the panic")?;
    for ep in [a, b, c] {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}

pub(crate) async fn hung_handler(ctx: &Ctx<'_>) -> CaseResult {
    // The other senders' messages, and the hung sender's later ones.
    let (handled, later) = (Recorder::new(), Recorder::new());
    let b = ctx
        .endpoint(1, "busy", |e| {
            e.handle("HANG", |_req| async {
                std::future::pending::<()>().await;
                Ok(Outcome::Done)
            })
            .handle("WORK", handled.handler())
            .handle("LATER", later.handler())
            .command_timeout("HANG", HUNG_TIMEOUT)
            // One attempt: the timeout is the failure this case is about, not the retries.
            .max_attempts(1)
        })
        .await?;
    let hanger = ctx.endpoint(0, "hanger", |e| e).await?;
    let hung = {
        let (hanger, to) = (hanger.clone(), b.address().clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let r = hanger.request(ask(&to, "HANG")?, HUNG_TIMEOUT * 4).await;
            Ok::<_, Error>((r, started.elapsed()))
        })
    };
    // The hung sender's later messages queue behind its hung one (40 fill a lane of 32).
    for _ in 0..40 {
        hanger
            .send(ask(b.address(), "LATER").or_fail("build")?)
            .await
            .or_fail("hanger send")?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut senders: Vec<Endpoint> = Vec::new();
    for s in 0..SENDERS {
        senders.push(ctx.endpoint(s % 3, &format!("other{s}"), |e| e).await?);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for sender in senders.clone() {
        let to = b.address().clone();
        tasks.spawn(async move {
            for _ in 0..PER_SENDER {
                sender.send(ask(&to, "WORK")?).await?;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.or_fail("sender task")?.or_fail("send")?;
    }
    let sent_in = started.elapsed();
    let sent = Instant::now();
    let want = SENDERS * PER_SENDER;
    while handled.count() < want && sent.elapsed() < OTHERS_WITHIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = handled.count();
    ensure(done >= want, || {
        format!("{done} of {want} messages from other senders handled within {OTHERS_WITHIN:?} of being sent (sending took {sent_in:?}) while one handler hung")
    })?;
    ensure(!hung.is_finished(), || {
        format!("the other senders' messages took {:?}: the hung handler had already timed out, so they may have waited for it", started.elapsed())
    })?;
    // The hung handler is dropped at its timeout: ERROR naming it, then its sender's queue runs.
    let (result, elapsed) = hung.await.or_fail("hung task")?.or_fail("build")?;
    match &result {
        Err(Error::Remote {
            command, reason, ..
        }) => ensure(
            command == commands::ERROR && reason.contains("timed out"),
            || format!("the hung handler answered {command}: {reason}"),
        )?,
        other => ensure(false, || format!("the hung handler answered {other:?}"))?,
    }
    ensure(elapsed >= HUNG_TIMEOUT, || {
        format!("the hung handler failed after {elapsed:?}, before its timeout")
    })?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while later.count() < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = later.count();
    ensure(done == 40, || {
        format!("{done} of the hung sender's 40 later messages handled after its timeout")
    })?;
    for ep in senders.into_iter().chain([hanger, b]) {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}
