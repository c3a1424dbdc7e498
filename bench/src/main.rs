//! `comms-bench`: one run that measures every comms backend and its reference clients on this
//! machine, and prints one markdown table, the ratios the issue targets, and JSON (issue 8).
//!
//! # Running
//! ```text
//! export CARGO_TARGET_DIR=/work/target-bench
//! cargo build --release -p commsd -p comms-bench --bins
//! $CARGO_TARGET_DIR/release/comms-bench --json bench.json      # full run, < ~5 min
//! $CARGO_TARGET_DIR/release/comms-bench --quick --only memory,native,tcp
//! ```
//! Services: NATS at `$COMMS_BENCH_NATS` (`nats://127.0.0.1:4222`), RabbitMQ at
//! `$COMMS_BENCH_AMQP` (`amqp://guest:guest@127.0.0.1:5672/%2f`), Kafka at
//! `$COMMS_BENCH_KAFKA`, else a `tansu` broker the run starts ([`kafka_broker`]); a row
//! whose service does not answer is printed as skipped with the reason. `commsd` is run as a child process
//! (`$COMMS_BENCH_BIN`/`COMMSD_BIN`, else beside this executable).
//!
//! # What a row is
//! One (backend, payload, mode): one-way throughput (a sender sends up to N messages, bounded
//! by a time cap; a receiver counts them; msg/s from the first send to the last receipt,
//! received/sent shown) and request/reply latency (sequential requests, HdrHistogram
//! p50/p99/p99.9). Backends are measured through `Endpoint` as a user writes it
//! ([`endpoint_driver`]): a handler counting messages, `request()` for the round trip.
//!
//! # Layout
//! - [`scale`]: counts and time caps (full and `--quick`).
//! - [`endpoint_driver`]: the shared measurement over `Endpoint`; [`tally`]: the receiving
//!   counter every driver uses; [`latency`]: the histogram.
//! - Backends: [`memory`], [`native`] (commsd child process), [`native_relay`] (three
//!   peered commsd, through the middle one), [`rabbitmq`], [`kafka`]. References: [`nats`],
//!   [`raw_lapin`], [`raw_rdkafka`], [`raw_tcp`].
//! - [`report`]: rows, the table, JSON, progress; [`ratios`]: ratios against the targets.

mod endpoint_driver;
mod kafka;
#[cfg(feature = "rdkafka-raw")]
mod kafka_broker;
mod latency;
mod memory;
mod native;
mod native_relay;
mod nats;
mod probe;
mod rabbitmq;
mod ratios;
mod raw_lapin;
mod raw_rdkafka;
mod raw_tcp;
mod report;
mod scale;
mod tally;
mod window;

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Parser;

use report::{Progress, Row};
use scale::Scale;

/// Every row group, in run order.
const ALL: [&str; 9] = [
    "tcp",
    "memory",
    "native",
    "native-relay",
    "nats",
    "rabbitmq",
    "raw-lapin",
    "kafka",
    "raw-rdkafka",
];

/// Benchmark every comms backend and its reference clients in one run.
#[derive(Debug, Parser)]
#[command(name = "comms-bench", version)]
struct Cli {
    /// Seconds instead of minutes: proves the harness works; the figures mean little.
    #[arg(long)]
    quick: bool,
    /// Only these row groups (comma-separated): tcp, memory, native, native-relay, nats,
    /// rabbitmq, raw-lapin, kafka, raw-rdkafka.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Runtime worker threads of this process (1: a current-thread runtime, the default).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Tasks sending concurrently through one endpoint in the one-way rows of the comms
    /// backends (1: a plain `send` loop, the default; e.g. 64 to measure concurrent sends).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
    senders: u64,
    /// Confirmations kept outstanding per sender in the at-least-once one-way rows (0: each
    /// send waits for its confirmation, the default): the comms rows pipeline through
    /// `Endpoint::submit`, raw-lapin keeps this many publisher confirms in flight, raw-rdkafka
    /// this many delivery reports (with `linger.ms=5`); e.g. 1000.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    window: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    for o in &cli.only {
        if !ALL.contains(&o.as_str()) {
            bail!("unknown row group `{o}`; known: {}", ALL.join(", "));
        }
    }
    let rt = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(run(cli))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut scale = if cli.quick {
        Scale::quick()
    } else {
        Scale::full()
    };
    scale.senders = cli.senders;
    scale.window = usize::try_from(cli.window)?;
    let selected = |name: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == name);
    let progress = Progress::new();
    let load_before = loadavg();
    let started = std::time::SystemTime::now();
    let mut rows: Vec<Row> = Vec::new();
    for group in ALL.iter().filter(|g| selected(g)) {
        let part = match *group {
            "tcp" => raw_tcp::run(&scale, &progress).await,
            "memory" => memory::run(&scale, &progress).await,
            "native" => native::run(&scale, &progress).await,
            "native-relay" => native_relay::run(&scale, &progress).await,
            "nats" => nats::run(&scale, &progress).await,
            "rabbitmq" => rabbitmq::run(&scale, &progress).await,
            "raw-lapin" => raw_lapin::run(&scale, &progress).await,
            "kafka" => kafka::run(&scale, &progress).await,
            _ => raw_rdkafka::run(&scale, &progress).await,
        };
        rows.extend(part);
    }
    let ratios = ratios::compute(&rows);
    let load_after = loadavg();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("{}", report::table(&rows));
    println!("{}", ratios::table(&ratios));
    println!(
        "{} run; {cores} cores; {} sending task(s) per comms one-way row; {} confirmations \
         outstanding per sender (--window); load average before {load_before}, after \
         {load_after} (a loaded machine makes every figure noisy)",
        if cli.quick { "quick" } else { "full" },
        scale.senders,
        scale.window,
    );
    if let Some(path) = &cli.json {
        let meta = serde_json::json!({
            "quick": cli.quick,
            "only": cli.only,
            "threads": cli.threads,
            "senders": cli.senders,
            "window": cli.window,
            "cores": cores,
            "load_before": load_before,
            "load_after": load_after,
            "unix_time": started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            "scale": format!("{scale:?}"),
        });
        std::fs::write(path, report::json(meta, &rows, &ratios))
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("JSON written to {}", path.display());
    }
    Ok(())
}
