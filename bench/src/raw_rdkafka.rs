//! Reference `raw-rdkafka`: Kafka through rdkafka directly, with the plugin's settings:
//! idempotent producer, `acks=all`, no linger; consumers with `enable.auto.commit=false`
//! and `fetch.wait.max.ms=100`, committing every 200 ms. At-least-once: each send waits for its delivery report (as the
//! plugin's `send` does), or with `--window N` N delivery reports outstanding and
//! `linger.ms=5` (pipelined, as librdkafka's docs recommend for throughput); at-most-once:
//! queued without waiting. Built with the `rdkafka-raw`
//! feature (part of `kafka`, on by default); the broker is [`crate::kafka_broker`]'s.

/// The raw-rdkafka rows: skipped, rdkafka is not built.
#[cfg(not(feature = "rdkafka-raw"))]
pub async fn run(
    _scale: &crate::scale::Scale,
    _progress: &crate::report::Progress,
) -> Vec<crate::report::Row> {
    crate::native::skip_all("raw-rdkafka", "kafka feature off")
}

#[cfg(feature = "rdkafka-raw")]
pub use imp::run;

#[cfg(feature = "rdkafka-raw")]
mod imp {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context as _};
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
    use rdkafka::message::Message as _;
    use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
    use rdkafka::ClientConfig;

    use crate::latency::Latencies;
    use crate::native::{mode_rows, skip_all};
    use crate::report::{Mode, OneWay, Progress, Row};
    use crate::scale::Scale;
    use crate::tally::Tally;
    use crate::window::Window;

    /// The raw-rdkafka rows.
    pub async fn run(scale: &Scale, progress: &Progress) -> Vec<Row> {
        progress.step("raw-rdkafka: broker");
        let server = match crate::kafka_broker::broker().await {
            Ok(b) => b,
            Err(e) => return skip_all("raw-rdkafka", &e),
        };
        let broker = server.bootstrap.clone();
        mode_rows(
            "raw-rdkafka",
            progress,
            async |payload, mode| oneway(&broker, payload, mode, scale).await,
            async |payload, mode| rtt(&broker, payload, mode, scale).await,
        )
        .await
    }

    fn producer(broker: &str, linger_ms: u32) -> anyhow::Result<FutureProducer> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", linger_ms.to_string())
            .create()?)
    }

    fn consumer(broker: &str, topic: &str) -> anyhow::Result<StreamConsumer> {
        let c: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set(
                "group.id",
                format!("bench-raw-{}", comms_core::MessageId::new()),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("fetch.wait.max.ms", "100")
            .create()?;
        c.subscribe(&[topic])?;
        Ok(c)
    }

    async fn topic(broker: &str, name: &str) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .create()?;
        // An existing topic is fine: its old records are behind the new groups' start.
        let _ = admin
            .create_topics(
                &[NewTopic::new(name, 1, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await?;
        Ok(())
    }

    async fn send(p: &FutureProducer, topic: &str, body: &[u8], mode: Mode) -> anyhow::Result<()> {
        let record = FutureRecord::<(), [u8]>::to(topic).payload(body);
        if mode == Mode::AtLeastOnce {
            p.send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
                .context("delivery report")?;
        } else {
            p.send_result(record)
                .map_err(|(e, _)| e)
                .context("enqueue")?;
        }
        Ok(())
    }

    async fn delivered(report: DeliveryFuture) -> anyhow::Result<()> {
        report
            .await
            .context("producer gone")?
            .map_err(|(e, _)| e)
            .context("delivery report")?;
        Ok(())
    }

    /// Consume until aborted, committing every 200 ms; each message goes to `on`.
    fn spawn_consumer(
        c: StreamConsumer,
        on: impl Fn(&[u8]) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut last_commit = Instant::now();
            while let Ok(m) = c.recv().await {
                on(m.payload().unwrap_or_default());
                if last_commit.elapsed() >= Duration::from_millis(200) {
                    let _ = c.commit_consumer_state(CommitMode::Async);
                    last_commit = Instant::now();
                }
            }
        })
    }

    /// Send probes until the consumer sees one (its group is assigned and positioned).
    async fn wait_live(p: &FutureProducer, t: &str, tally: &Tally) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while tally.count() == 0 {
            if Instant::now() > deadline {
                bail!("consumer never received a probe within 30 s");
            }
            send(p, t, b"probe", Mode::AtLeastOnce).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    }

    async fn oneway(
        broker: &str,
        payload: usize,
        mode: Mode,
        scale: &Scale,
    ) -> anyhow::Result<OneWay> {
        let t = format!("bench.raw.oneway.{payload}");
        topic(broker, &t).await?;
        let probe = Arc::new(Tally::new());
        let tally = Arc::new(Tally::new());
        let (pr, ta) = (probe.clone(), tally.clone());
        let task = spawn_consumer(consumer(broker, &t)?, move |body| {
            if body == b"probe" {
                pr.hit();
            } else {
                ta.hit();
            }
        });
        let pipelined = scale.window > 0 && mode == Mode::AtLeastOnce;
        let p = producer(broker, if pipelined { 5 } else { 0 })?;
        wait_live(&p, &t, &probe).await?;
        let body = vec![b'x'; payload];
        let n = scale.oneway_count(payload);
        let t0 = tally.now();
        let sends = scale.sends(n);
        if pipelined {
            let mut reports = Window::new(scale.window);
            while sends.next() {
                let record = FutureRecord::<(), [u8]>::to(&t).payload(&body);
                let report = p
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .context("enqueue")?;
                reports.push(delivered(report)).await?;
            }
            reports.drain().await?;
        } else {
            while sends.next() {
                send(&p, &t, &body, mode).await?;
            }
        }
        let figures = tally.finish(t0, sends.sent(), scale.drain, payload).await;
        task.abort();
        Ok(figures)
    }

    async fn rtt(
        broker: &str,
        payload: usize,
        mode: Mode,
        scale: &Scale,
    ) -> anyhow::Result<Latencies> {
        let (req, rep) = ("bench.raw.req", "bench.raw.rep");
        topic(broker, req).await?;
        topic(broker, rep).await?;
        // The echo: every request body is produced back on the reply topic.
        let echo_p = producer(broker, 0)?;
        let (etx, mut erx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let server = spawn_consumer(consumer(broker, req)?, move |b| {
            let _ = etx.send(b.to_vec());
        });
        let echo = tokio::spawn(async move {
            while let Some(b) = erx.recv().await {
                if send(&echo_p, rep, &b, mode).await.is_err() {
                    break;
                }
            }
        });
        let (rtx, mut rrx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let replies = spawn_consumer(consumer(broker, rep)?, move |_| {
            let _ = rtx.send(());
        });
        let p = producer(broker, 0)?;
        let body = vec![b'x'; payload];
        let result = async {
            // Liveness: repeat the first request until a reply comes (both groups assigned).
            let live_deadline = Instant::now() + Duration::from_secs(30);
            loop {
                send(&p, req, &body, Mode::AtLeastOnce).await?;
                if tokio::time::timeout(Duration::from_millis(500), rrx.recv())
                    .await
                    .is_ok()
                {
                    break;
                }
                if Instant::now() > live_deadline {
                    bail!("no reply within 30 s");
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            while rrx.try_recv().is_ok() {}
            Latencies::measure(scale, async || {
                send(&p, req, &body, mode).await?;
                tokio::time::timeout(Duration::from_secs(10), rrx.recv())
                    .await
                    .context("no reply in 10 s")?
                    .context("reply consumer ended")?;
                Ok(())
            })
            .await
        }
        .await;
        for t in [server, echo, replies] {
            t.abort();
        }
        result
    }
}
