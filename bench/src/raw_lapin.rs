//! Reference `raw-lapin`: RabbitMQ through lapin directly, with the plugin's durability
//! settings: durable queues, a publisher channel in confirm mode, consumers with
//! `basic.qos(64)` acking every delivery. At-least-once: persistent messages
//! (`delivery_mode = 2`), each publish waits for its confirm before the next (as the
//! plugin's `send` does), or with `--window N` N confirms stay in flight (as RabbitMQ's
//! publisher-confirm guide recommends for throughput). At-most-once: transient, confirm not awaited. Publishes go through
//! the default exchange straight to the queue (the plugin routes through a topic exchange).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, Consumer, PublisherConfirm,
};

use crate::latency::Latencies;
use crate::native::{mode_rows, skip_all};
use crate::report::{Mode, OneWay, Progress, Row};
use crate::scale::Scale;
use crate::tally::Tally;
use crate::window::Window;

/// The plugin's default prefetch.
const PREFETCH: u16 = 64;

/// The raw-lapin rows.
pub async fn run(scale: &Scale, progress: &Progress) -> Vec<Row> {
    let url = crate::rabbitmq::amqp_base();
    if let Err(e) = crate::probe::tcp(&url).await {
        return skip_all("raw-lapin", &e);
    }
    mode_rows(
        "raw-lapin",
        progress,
        async |payload, mode| oneway(&url, payload, mode, scale).await,
        async |payload, mode| rtt(&url, payload, mode, scale).await,
    )
    .await
}

async fn channel(url: &str, confirm: bool) -> anyhow::Result<(Connection, Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("connect to RabbitMQ")?;
    let ch = conn.create_channel().await?;
    if confirm {
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
    }
    Ok((conn, ch))
}

/// This run's name for queue `what`: two runs on one broker never share a queue.
fn queue_name(what: &str) -> String {
    format!("bench.raw.{}.{what}", std::process::id())
}

/// Declare a durable queue (persistent messages go to disk, as the plugin's), deleted by the
/// broker once its consumer is gone, so a run leaves nothing behind.
async fn queue(ch: &Channel, name: &str) -> anyhow::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare(name.into(), durable, FieldTable::default())
        .await?;
    ch.queue_purge(name.into(), QueuePurgeOptions::default())
        .await?;
    Ok(())
}

async fn consume(ch: &Channel, name: &str) -> anyhow::Result<Consumer> {
    ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    Ok(ch
        .basic_consume(
            name.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?)
}

async fn publish(ch: &Channel, queue: &str, body: &[u8], mode: Mode) -> anyhow::Result<()> {
    let confirm = publish_only(ch, queue, body, mode).await?;
    if mode == Mode::AtLeastOnce {
        confirmed(confirm).await?;
    }
    Ok(())
}

/// Publish without awaiting the confirm.
async fn publish_only(
    ch: &Channel,
    queue: &str,
    body: &[u8],
    mode: Mode,
) -> anyhow::Result<PublisherConfirm> {
    let persistent = mode == Mode::AtLeastOnce;
    let props = BasicProperties::default().with_delivery_mode(if persistent { 2 } else { 1 });
    Ok(ch
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await?)
}

async fn confirmed(confirm: PublisherConfirm) -> anyhow::Result<()> {
    if !confirm.await?.is_ack() {
        bail!("publish nacked");
    }
    Ok(())
}

async fn oneway(url: &str, payload: usize, mode: Mode, scale: &Scale) -> anyhow::Result<OneWay> {
    let q = &queue_name("oneway");
    let (rx_conn, rx_ch) = channel(url, false).await?;
    queue(&rx_ch, q).await?;
    let mut consumer = consume(&rx_ch, q).await?;
    let (tx_conn, tx_ch) = channel(url, true).await?;
    let n = scale.oneway_count(payload);
    let tally = Arc::new(Tally::new());
    let t = tally.clone();
    let counter = tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let _ = d.ack(BasicAckOptions::default()).await;
            t.hit();
        }
    });
    let body = vec![b'x'; payload];
    let t0 = tally.now();
    let sends = scale.sends(n);
    if scale.window > 0 && mode == Mode::AtLeastOnce {
        let mut in_flight = Window::new(scale.window);
        while sends.next() {
            let confirm = publish_only(&tx_ch, q, &body, mode).await?;
            in_flight.push(confirmed(confirm)).await?;
        }
        in_flight.drain().await?;
    } else {
        while sends.next() {
            publish(&tx_ch, q, &body, mode).await?;
        }
    }
    let figures = tally.finish(t0, sends.sent(), scale.drain, payload).await;
    counter.abort();
    let _ = tx_conn.close(200, "bench done".into()).await;
    let _ = rx_conn.close(200, "bench done".into()).await;
    Ok(figures)
}

async fn rtt(url: &str, payload: usize, mode: Mode, scale: &Scale) -> anyhow::Result<Latencies> {
    let (req, rep) = (queue_name("req"), queue_name("rep"));
    let (srv_conn, srv_ch) = channel(url, true).await?;
    queue(&srv_ch, &req).await?;
    queue(&srv_ch, &rep).await?;
    let mut requests = consume(&srv_ch, &req).await?;
    let srv_pub = srv_conn.create_channel().await?;
    srv_pub
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let srv_rep = rep.clone();
    let server = tokio::spawn(async move {
        while let Some(Ok(d)) = requests.next().await {
            if publish(&srv_pub, &srv_rep, &d.data, mode).await.is_err() {
                break;
            }
            let _ = d.ack(BasicAckOptions::default()).await;
        }
    });
    let (cli_conn, cli_ch) = channel(url, true).await?;
    let cli_rx = cli_conn.create_channel().await?;
    let mut replies = consume(&cli_rx, &rep).await?;
    let body = vec![b'x'; payload];
    let result = async {
        Latencies::measure(scale, async || {
            publish(&cli_ch, &req, &body, mode).await?;
            let d = tokio::time::timeout(Duration::from_secs(10), replies.next())
                .await
                .context("no reply in 10 s")?
                .context("reply consumer ended")??;
            d.ack(BasicAckOptions::default()).await?;
            Ok(())
        })
        .await
    }
    .await;
    server.abort();
    let _ = cli_conn.close(200, "bench done".into()).await;
    let _ = srv_conn.close(200, "bench done".into()).await;
    result
}
