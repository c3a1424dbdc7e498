//! `send` while the broker is down: it waits (bounded by `send_timeout`) and fails with a
//! retryable error, never `Ok`; a send that is waiting when the broker comes back completes;
//! retrying the failed message (same id) delivers it. Stops the shared broker: runs alone
//! (nextest group `rabbitmq`); a guard starts the broker again whatever happens.

use comms_core::Connect;
use std::time::{Duration, Instant};

use comms_conformance::Recorder;
use comms_core::{Endpoint, Message};
use comms_rabbitmq::RabbitTransport;
use comms_test_support::unique_name;
use comms_tests::rabbitmq::{
    await_startup, config_with, delete_namespaces, ensure_running, rabbitmqctl, BrokerGuard,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_send_during_outage() -> anyhow::Result<()> {
    let guard = BrokerGuard;
    ensure_running()?;
    let ns = unique_name("outage");
    let rec = Recorder::new();
    let b = Endpoint::builder(
        RabbitTransport::connect(&config_with(&ns, 1, 30_000)?).await?,
        "b",
    )
    .handle("X", rec.handler())
    .start()
    .await?;
    let quick = Endpoint::builder(
        RabbitTransport::connect(&config_with(&ns, 0, 2_000)?).await?,
        "quick",
    )
    .start()
    .await?;
    let patient = Endpoint::builder(
        RabbitTransport::connect(&config_with(&ns, 2, 60_000)?).await?,
        "patient",
    )
    .start()
    .await?;
    let to = b.address().clone();

    rabbitmqctl(&["stop_app"])?;
    let failed = Message::new("X", to.clone())?.with_param("who", "quick");
    let started = Instant::now();
    let r = quick.send(failed.clone()).await;
    let waited = started.elapsed();
    let e = match r {
        Ok(()) => panic!("send returned Ok while the broker was down"),
        Err(e) => e,
    };
    assert!(e.is_retryable(), "not retryable: {e}");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "waited {waited:?} for a send_timeout of 2 s"
    );

    let waiting = {
        let patient = patient.clone();
        let msg = Message::new("X", to.clone())?.with_param("who", "patient");
        tokio::spawn(async move { patient.send(msg).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "a send finished while the broker was down"
    );
    rabbitmqctl(&["start_app"])?;
    await_startup()?;
    drop(guard);
    waiting.await??;

    // The caller retries the failed message with the same id: delivered once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match quick.send(failed.clone()).await {
            Ok(()) => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
    rec.wait_distinct(2, Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rec.count(), 2, "{:?}", rec.messages());

    for ep in [quick, patient, b] {
        ep.close().await?;
    }
    delete_namespaces(&[ns]).await?;
    Ok(())
}
