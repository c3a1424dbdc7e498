//! Cases 8–11: request/reply, timeout, UNKNOWN, INVALID.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use comms_core::endpoint::{Outcome, Request};
use comms_core::error::Error;
use comms_core::message::{commands, Message};
use comms_core::schema::{ParamType, Schema, TypedMessage};

use crate::harness::{ensure, CaseResult, Ctx, OrFail, Stop};

const REPLY_WAIT: Duration = Duration::from_secs(30);

async fn echo(req: Request) -> comms_core::endpoint::HandlerResult {
    let mut reply = req.reply("ECHOED")?;
    reply.params = req.message().params.clone();
    Ok(Outcome::Reply(reply))
}

pub(crate) async fn request_reply(ctx: &Ctx<'_>) -> CaseResult {
    let b = ctx.endpoint(1, "echo", |e| e.handle("ECHO", echo)).await?;
    let a = ctx.endpoint(0, "client", |e| e).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let (a, to) = (a.clone(), b.address().clone());
        tasks.spawn(async move {
            let msg = Message::new("ECHO", to)?.with_param("n", i.to_string());
            let id = msg.id().clone();
            let reply = a.request(msg, REPLY_WAIT).await?;
            Ok::<_, Error>((i, id, reply))
        });
    }
    let mut answered = 0;
    while let Some(r) = tasks.join_next().await {
        let (i, id, reply) = r.or_fail("task")?.or_fail("request")?;
        ensure(reply.correlation.as_ref() == Some(&id), || {
            format!("request {i}: reply correlated to {:?}", reply.correlation)
        })?;
        ensure(reply.param("n") == Some(i.to_string().as_str()), || {
            format!("request {i} got the reply meant for {:?}", reply.param("n"))
        })?;
        ensure(reply.from() == Some(b.address()), || {
            format!("reply from {:?}", reply.from())
        })?;
        answered += 1;
    }
    ensure(answered == 100, || format!("{answered} of 100 answered"))?;
    a.close().await.or_fail("close a")?;
    b.close().await.or_fail("close b")
}

pub(crate) async fn request_timeout(ctx: &Ctx<'_>) -> CaseResult {
    let b = ctx
        .endpoint(1, "mute", |e| {
            e.handle("ASK", |_req| async { Ok(Outcome::Done) })
        })
        .await?;
    let a = ctx.endpoint(0, "client", |e| e).await?;
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let result = a
        .request(
            Message::new("ASK", b.address().clone()).or_fail("build")?,
            timeout,
        )
        .await;
    let elapsed = started.elapsed();
    ensure(matches!(result, Err(Error::Timeout(_))), || {
        format!("expected the timeout error, got {result:?}")
    })?;
    ensure(
        elapsed >= timeout && elapsed <= timeout.mul_f64(1.2),
        || {
            format!(
                "timed out after {elapsed:?}; expected {timeout:?} to {:?}",
                timeout.mul_f64(1.2)
            )
        },
    )?;
    a.close().await.or_fail("close a")?;
    b.close().await.or_fail("close b")
}

pub(crate) async fn unknown_command(ctx: &Ctx<'_>) -> CaseResult {
    let b = ctx
        .endpoint(1, "b", |e| {
            e.handle("KNOWN", |_req| async { Ok(Outcome::Done) })
        })
        .await?;
    let a = ctx.endpoint(0, "client", |e| e).await?;
    let result = a
        .request(
            Message::new("NO_SUCH", b.address().clone()).or_fail("build")?,
            REPLY_WAIT,
        )
        .await;
    match result {
        Err(Error::Remote { command, reply, .. }) if command == commands::UNKNOWN => {
            ensure(reply.param("command") == Some("NO_SUCH"), || {
                format!("UNKNOWN names {:?}", reply.param("command"))
            })?;
        }
        other => {
            return Err(Stop::Fail(format!(
                "expected an UNKNOWN reply, got {other:?}"
            )))
        }
    }
    a.close().await.or_fail("close a")?;
    b.close().await.or_fail("close b")
}

#[derive(Debug, Serialize, Deserialize)]
struct SetValue {
    value: i64,
    label: Option<String>,
}

impl TypedMessage for SetValue {
    const COMMAND: &'static str = "SET_VALUE";
    fn schema() -> Schema {
        Schema::new("SET_VALUE")
            .required("value", ParamType::Integer)
            .optional("label", ParamType::String)
    }
}

pub(crate) async fn invalid_message(ctx: &Ctx<'_>) -> CaseResult {
    let b = ctx
        .endpoint(1, "store", |e| {
            e.on::<SetValue, _, _>(|req, set| async move {
                let reply = req
                    .reply("VALUE_SET")?
                    .with_param("value", set.value.to_string());
                Ok(Outcome::Reply(reply))
            })
        })
        .await?;
    let a = ctx.endpoint(0, "client", |e| e).await?;
    let bad = Message::new("SET_VALUE", b.address().clone())
        .or_fail("build")?
        .with_param("value", "abc");
    match a.request(bad, REPLY_WAIT).await {
        Err(Error::Remote { command, reply, .. }) if command == commands::INVALID => {
            ensure(reply.param("field") == Some("value"), || {
                format!("INVALID names field {:?}", reply.param("field"))
            })?;
            ensure(reply.param("reason").is_some_and(|r| !r.is_empty()), || {
                "INVALID without a reason".into()
            })?;
        }
        other => {
            return Err(Stop::Fail(format!(
                "expected an INVALID reply, got {other:?}"
            )))
        }
    }
    let missing = Message::new("SET_VALUE", b.address().clone()).or_fail("build")?;
    match a.request(missing, REPLY_WAIT).await {
        Err(Error::Remote { command, .. }) if command == commands::INVALID => {}
        other => {
            return Err(Stop::Fail(format!(
                "a missing required parameter was not INVALID: {other:?}"
            )))
        }
    }
    let good = SetValue {
        value: 42,
        label: None,
    };
    let reply = a
        .request_typed(b.address().clone(), &good, REPLY_WAIT)
        .await
        .or_fail("valid request after INVALID")?;
    ensure(reply.param("value") == Some("42"), || {
        format!("reply {reply:?}")
    })?;
    a.close().await.or_fail("close a")?;
    b.close().await.or_fail("close b")
}
