//! Cases 19–20: advertise and expire, lookup.

use std::time::Duration;

use tokio::sync::broadcast::Receiver;
use tokio::time::Instant;

use comms_core::address::Address;
use comms_core::directory::{Directory, DirectoryEvent, Query};
use comms_core::endpoint::Outcome;

use crate::harness::{ensure, CaseResult, Ctx, OrFail, Stop, WAIT};

async fn next_event(
    events: &mut Receiver<DirectoryEvent>,
    address: &Address,
    up: bool,
    timeout: Duration,
) -> Result<Duration, Stop> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => {
                return Err(Stop::Fail(format!(
                    "no {} event for {address} within {timeout:?}",
                    if up { "up" } else { "down" }
                )))
            }
            Ok(Err(e)) => return Err(Stop::Fail(format!("directory events: {e}"))),
            Ok(Ok(DirectoryEvent::Up(e))) if up && e.address() == address => {
                return Ok(started.elapsed())
            }
            Ok(Ok(DirectoryEvent::Down(e))) if !up && e.address() == address => {
                return Ok(started.elapsed())
            }
            Ok(Ok(_)) => {}
        }
    }
}

pub(crate) async fn advertise_and_expire(ctx: &Ctx<'_>) -> CaseResult {
    let ttl = Duration::from_secs(1);
    let dir = Directory::new();
    let mut events = dir.subscribe();
    let w = ctx
        .endpoint(0, "watch", |e| e.directory(dir.clone()))
        .await?;
    let build = |e: comms_core::endpoint::EndpointBuilder| {
        e.ttl(ttl)
            .group("dbs")
            .label("zone", "z1")
            .fact("role", "primary")
            .handle("PING", |_r| async { Ok(Outcome::Done) })
    };
    let e = ctx.endpoint(1, "adv", build).await?;
    let addr = e.address().clone();
    next_event(&mut events, &addr, true, WAIT).await?;
    let entry = dir
        .get(&addr)
        .ok_or_else(|| Stop::Fail("listed up, then missing".into()))?;
    let ad = &entry.advertisement;
    ensure(
        ad.facts.get("role").map(String::as_str) == Some("primary"),
        || format!("facts {:?}", ad.facts),
    )?;
    ensure(
        ad.groups.contains("dbs") && ad.labels.get("zone").map(String::as_str) == Some("z1"),
        || format!("groups {:?} labels {:?}", ad.groups, ad.labels),
    )?;
    ensure(ad.commands.contains("PING"), || {
        format!("commands {:?}", ad.commands)
    })?;
    // Stop abruptly (no withdrawal), as a crash would: down within 2 x TTL.
    drop(e);
    let took = next_event(&mut events, &addr, false, ttl * 2).await?;
    ensure(!dir.get(&addr).is_some_and(|e| e.up), || {
        "down event, but still listed up".into()
    })?;
    // Back with the same identity.
    let e = ctx.endpoint(1, "adv", build).await?;
    ensure(e.address() == &addr, || {
        format!("came back as {}, not {addr}", e.address())
    })?;
    next_event(&mut events, &addr, true, WAIT).await?;
    // A graceful close withdraws at once.
    e.close().await.or_fail("close")?;
    next_event(&mut events, &addr, false, ttl).await?;
    tracing::debug!(?took, "expired");
    w.close().await.or_fail("close watcher")
}

pub(crate) async fn lookup(ctx: &Ctx<'_>) -> CaseResult {
    let dir = Directory::new();
    let w = ctx
        .endpoint(0, "watch", |e| e.directory(dir.clone()))
        .await?;
    let e1 = ctx
        .endpoint(1, "svc_a", |e| {
            e.group("web").label("zone", "eu").fact("os", "linux")
        })
        .await?;
    // Two instances of svc_a need two nodes; on a single node the second is its own service.
    let (second, both_a) = match ctx.backend.single_node() {
        None => ("svc_a", true),
        Some(_) => ("svc_c", false),
    };
    let e2 = ctx
        .endpoint(2, second, |e| {
            e.group("db").label("zone", "us").fact("os", "bsd")
        })
        .await?;
    let e3 = ctx
        .endpoint(1, "svc_b", |e| {
            e.group("web").label("zone", "us").fact("os", "linux")
        })
        .await?;
    for ep in [&e1, &e2, &e3] {
        ensure(dir.wait_up(ep.address(), WAIT).await, || {
            format!("{} never listed up", ep.address())
        })?;
    }
    let names = |q: Query| -> Vec<String> {
        dir.lookup(&q)
            .iter()
            .map(|e| e.address().to_string())
            .filter(|a| !a.contains("watch"))
            .collect()
    };
    let addrs = |eps: &[&comms_core::endpoint::Endpoint]| -> Vec<String> {
        let mut v: Vec<String> = eps.iter().map(|e| e.address().to_string()).collect();
        v.sort();
        v
    };
    let cases = [
        (
            "service",
            names(Query::new().service(ctx.name("svc_a"))),
            if both_a {
                addrs(&[&e1, &e2])
            } else {
                addrs(&[&e1])
            },
        ),
        (
            "group",
            names(Query::new().group("web")),
            addrs(&[&e1, &e3]),
        ),
        (
            "label",
            names(Query::new().label("zone", "us")),
            addrs(&[&e2, &e3]),
        ),
        (
            "fact",
            names(Query::new().fact("os", "linux")),
            addrs(&[&e1, &e3]),
        ),
        (
            "all together",
            names(
                Query::new()
                    .service(ctx.name("svc_b"))
                    .group("web")
                    .fact("os", "linux")
                    .label("zone", "us"),
            ),
            addrs(&[&e3]),
        ),
        ("no match", names(Query::new().fact("os", "plan9")), vec![]),
    ];
    for (what, got, want) in cases {
        ensure(got == want, || {
            format!("lookup by {what}: got {got:?}, expected {want:?}")
        })?;
    }
    for ep in [w, e1, e2, e3] {
        ep.close().await.or_fail("close")?;
    }
    Ok(())
}
