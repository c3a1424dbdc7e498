//! `comms-load`: load figures for issue #9, run by hand (not a test; `tests/load_quick.rs`
//! runs it small to prove it works).
//!
//! - `comms-load conns --count 10000`: one `commsd` process holds N registered service
//!   connections (Unix socket); prints the daemon's memory per idle connection, proves it
//!   still routes and answers among them, and reports its RSS once they are closed.
//! - `comms-load fleet --agents 1000`: one `commsd` process, one server and N agents (each
//!   agent its own connection, advertising with heartbeats) in this process; waits until the
//!   server sees every agent up, dispatches `true` to all and collects every result.
//!
//! - `comms-load announce --secs 10 --rate 1000`: local round trips on one `commsd` (p50,
//!   p99, max) without, then during, a flood of link-state announcements from a peer.
//!
//! Each prints a short report and, with `--json FILE`, write it as JSON. `commsd` is found
//! beside this executable or through `$COMMSD_BIN`:
//! `cargo build --release -p commsd -p comms-bench --bins`.

mod announce;
mod commsd;
mod conns;
mod fleet;
mod rss;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Load figures: idle connections on one daemon, a fleet of agents on one server, round trips
/// during an announcement flood.
#[derive(Debug, Parser)]
#[command(name = "comms-load", version, about)]
struct Args {
    /// Also write the report as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// N concurrent registered service connections on one commsd.
    Conns {
        /// Connections to open.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Connections being opened at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// One server managing N agents, then one dispatch to all.
    Fleet {
        /// Agents to start.
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// Advertisement TTL of every agent (heartbeat every TTL/3).
        #[arg(long, default_value_t = 10)]
        ttl_secs: u64,
        /// Agents being started at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Local round trips on one commsd while a peer sends link-state announcements.
    Announce {
        /// Seconds of flood (round trips are timed as long; the quiet baseline at most 5 s).
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Announcements a second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let report = rt.block_on(async {
        match args.command {
            Cmd::Conns { count, concurrency } => conns::run(count, concurrency).await,
            Cmd::Fleet {
                agents,
                ttl_secs,
                concurrency,
            } => fleet::run(agents, ttl_secs, concurrency).await,
            Cmd::Announce { secs, rate } => announce::run(secs, rate).await,
        }
    })?;
    for (k, v) in report.as_object().into_iter().flatten() {
        println!("{k:>28}: {v}");
    }
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
