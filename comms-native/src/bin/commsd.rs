//! `commsd`: the comms routing daemon (a Communicator `communicatord` replacement).
//!
//! Configuration: built-in defaults (the stock Communicator endpoints), then the `[daemon]`
//! section of `--config FILE` (TOML), then command-line flags. Logs go to stderr through
//! `tracing-subscriber` (`RUST_LOG`, default `info`). Once every listener is bound, one line
//! per listener is printed to stdout (`commsd: listening tcp 127.0.0.1:4040`), and the same
//! lines are written to `--ready-file` if given. SIGINT/SIGTERM (or an allowed `STOP`) stop
//! the daemon gracefully.
//!
//! ```toml
//! [daemon]
//! name = "vm"
//! unix = "/run/communicator/communicatord.sock"   # "" disables
//! tcp = "127.0.0.1:4040"                          # "" disables; loopback only
//! udp = "127.0.0.1:4041"                          # "" disables
//! udp_secret = "s3cret"
//! udp_max_datagram = 1024
//! max_connections = 1000
//! max_line = 65536
//! outbound_queue = 1024
//! cache_max_messages = 10000
//! cache_max_bytes = 16777216
//! cache_ttl_secs = 60
//! allow_stop_from_tcp = false
//! deny_stop_from_unix = false
//! shutdown_grace_ms = 200
//! flush_timeout_ms = 2000
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use comms_native::daemon::{Daemon, DaemonConfig, DaemonHandle};
use serde::Deserialize;

/// The comms routing daemon, speaking the Communicator cd: line protocol.
#[derive(Debug, Parser)]
#[command(
    name = "commsd",
    version,
    about = "The comms routing daemon (Communicator cd: line protocol)"
)]
struct Cli {
    /// TOML configuration file with a [daemon] section (flags override it).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Node name (server_name); default: the hostname, '-'→'_', dots removed.
    #[arg(long)]
    name: Option<String>,
    /// Unix stream socket path.
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Do not listen on a Unix socket.
    #[arg(long, conflicts_with = "unix")]
    no_unix: bool,
    /// Loopback TCP listener (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    tcp: Option<SocketAddr>,
    /// Do not listen on TCP.
    #[arg(long, conflicts_with = "tcp")]
    no_tcp: bool,
    /// UDP listener (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    udp: Option<SocketAddr>,
    /// Do not listen on UDP.
    #[arg(long, conflicts_with = "udp")]
    no_udp: bool,
    /// Secret UDP datagrams must carry as secret_code.
    #[arg(long, env = "COMMSD_UDP_SECRET", hide_env_values = true)]
    udp_secret: Option<String>,
    /// Largest accepted UDP datagram in bytes.
    #[arg(long)]
    udp_max_datagram: Option<usize>,
    /// my_address announced in READY.
    #[arg(long)]
    my_address: Option<String>,
    /// Maximum simultaneous stream connections.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Maximum line length in bytes.
    #[arg(long)]
    max_line: Option<usize>,
    /// Per-connection outbound queue, in batches.
    #[arg(long)]
    outbound_queue: Option<usize>,
    /// Maximum number of cached messages.
    #[arg(long)]
    cache_max_messages: Option<usize>,
    /// Maximum bytes of cached messages.
    #[arg(long)]
    cache_max_bytes: Option<usize>,
    /// Default cache TTL in seconds.
    #[arg(long)]
    cache_ttl_secs: Option<u64>,
    /// Accept STOP/SHUTDOWN from TCP connections too (default: Unix socket only).
    #[arg(long)]
    allow_stop_from_tcp: bool,
    /// File written with one line per listener once all are bound.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    daemon: DaemonSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonSection {
    name: Option<String>,
    unix: Option<String>,
    tcp: Option<String>,
    udp: Option<String>,
    udp_secret: Option<String>,
    udp_max_datagram: Option<usize>,
    my_address: Option<String>,
    max_connections: Option<usize>,
    max_line: Option<usize>,
    outbound_queue: Option<usize>,
    cache_max_messages: Option<usize>,
    cache_max_bytes: Option<usize>,
    cache_ttl_secs: Option<u64>,
    allow_stop_from_tcp: Option<bool>,
    deny_stop_from_unix: Option<bool>,
    shutdown_grace_ms: Option<u64>,
    flush_timeout_ms: Option<u64>,
}

fn addr(s: &str, what: &str) -> anyhow::Result<Option<SocketAddr>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .with_context(|| format!("[daemon] {what} = {s:?} is not an ip:port"))
}

fn apply_file(cfg: &mut DaemonConfig, path: &Path) -> anyhow::Result<()> {
    let text = comms_core::config::read_config_file(path)?;
    let file: FileConfig =
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
    let d = file.daemon;
    if let Some(v) = d.name {
        cfg.name = v;
    }
    if let Some(v) = d.unix {
        cfg.unix_path = (!v.is_empty()).then(|| PathBuf::from(v));
    }
    if let Some(v) = d.tcp {
        cfg.tcp = addr(&v, "tcp")?;
    }
    if let Some(v) = d.udp {
        cfg.udp = addr(&v, "udp")?;
    }
    cfg.udp_secret = d.udp_secret.or(cfg.udp_secret.take());
    cfg.my_address = d.my_address.or(cfg.my_address.take());
    let set = |dst: &mut usize, v: Option<usize>| {
        if let Some(v) = v {
            *dst = v;
        }
    };
    set(&mut cfg.udp_max_datagram, d.udp_max_datagram);
    set(&mut cfg.max_connections, d.max_connections);
    set(&mut cfg.max_line, d.max_line);
    set(&mut cfg.outbound_queue, d.outbound_queue);
    set(&mut cfg.cache.max_messages, d.cache_max_messages);
    set(&mut cfg.cache.max_bytes, d.cache_max_bytes);
    if let Some(v) = d.cache_ttl_secs {
        cfg.cache.default_ttl = Duration::from_secs(v);
    }
    if let Some(v) = d.allow_stop_from_tcp {
        cfg.admin.allow_stop_from_tcp = v;
    }
    if let Some(v) = d.deny_stop_from_unix {
        cfg.admin.deny_stop_from_unix = v;
    }
    if let Some(v) = d.shutdown_grace_ms {
        cfg.shutdown_grace = Duration::from_millis(v);
    }
    if let Some(v) = d.flush_timeout_ms {
        cfg.flush_timeout = Duration::from_millis(v);
    }
    Ok(())
}

fn build_config(cli: &Cli) -> anyhow::Result<DaemonConfig> {
    let mut cfg = DaemonConfig::default();
    if let Some(path) = &cli.config {
        apply_file(&mut cfg, path)?;
    }
    if let Some(v) = &cli.name {
        cfg.name.clone_from(v);
    }
    if cli.no_unix {
        cfg.unix_path = None;
    } else if let Some(v) = &cli.unix {
        cfg.unix_path = Some(v.clone());
    }
    if cli.no_tcp {
        cfg.tcp = None;
    } else if cli.tcp.is_some() {
        cfg.tcp = cli.tcp;
    }
    if cli.no_udp {
        cfg.udp = None;
    } else if cli.udp.is_some() {
        cfg.udp = cli.udp;
    }
    if cli.udp_secret.is_some() {
        cfg.udp_secret.clone_from(&cli.udp_secret);
    }
    if cli.my_address.is_some() {
        cfg.my_address.clone_from(&cli.my_address);
    }
    let set = |dst: &mut usize, v: Option<usize>| {
        if let Some(v) = v {
            *dst = v;
        }
    };
    set(&mut cfg.udp_max_datagram, cli.udp_max_datagram);
    set(&mut cfg.max_connections, cli.max_connections);
    set(&mut cfg.max_line, cli.max_line);
    set(&mut cfg.outbound_queue, cli.outbound_queue);
    set(&mut cfg.cache.max_messages, cli.cache_max_messages);
    set(&mut cfg.cache.max_bytes, cli.cache_max_bytes);
    if let Some(v) = cli.cache_ttl_secs {
        cfg.cache.default_ttl = Duration::from_secs(v);
    }
    if cli.allow_stop_from_tcp {
        cfg.admin.allow_stop_from_tcp = true;
    }
    Ok(cfg)
}

fn announce(handle: &DaemonHandle, ready_file: Option<&Path>) -> anyhow::Result<()> {
    let mut text = String::new();
    if let Some(p) = handle.unix_path() {
        text.push_str(&format!("commsd: listening unix {}\n", p.display()));
    }
    if let Some(a) = handle.tcp_addr() {
        text.push_str(&format!("commsd: listening tcp {a}\n"));
    }
    if let Some(a) = handle.udp_addr() {
        text.push_str(&format!("commsd: listening udp {a}\n"));
    }
    if let Some(path) = ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = build_config(&cli)?;
    let handle = Daemon::start(cfg).await.context("cannot start commsd")?;
    announce(&handle, cli.ready_file.as_deref())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = handle.stopped() => {}
    }
    handle.shutdown().await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // Single-threaded: one router owns all state; DESIGN.md §7 measured it faster here.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    // One line naming the problem, exit code 1; no backtrace (even with RUST_BACKTRACE set).
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("commsd: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
