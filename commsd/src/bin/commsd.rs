//! `commsd`: the comms routing daemon (a Communicator `communicatord` replacement).
//!
//! Configuration: built-in defaults (the stock Communicator endpoints), then the `[daemon]`
//! section of `--config FILE` (TOML), then command-line flags (`commsd::config::load`, which
//! the server's embedded daemon uses too). Logs go to stderr through
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
//! tls = "0.0.0.0:4043"                          # secure listener (cds:); any address; "" disables
//! tls_cert = "/etc/communicator/keys/communicatord.crt"   # PEM chain, leaf first
//! tls_key = "/etc/communicator/keys/communicatord.key"    # PEM private key
//! tls_client_ca = "/etc/communicator/keys/clients-ca.crt" # optional: mutual TLS
//! tls_handshake_timeout_ms = 10000
//! tls_max_pending_handshakes = 64
//! tls_max_per_address = 16                       # TLS connections from one IP address
//! udp_secret = "s3cret"
//! udp_max_datagram = 1024
//! max_connections = 1000                        # each of Unix, loopback TCP and TLS
//! first_line_timeout_ms = 10000                  # close a connection with no valid line by then
//! max_line = 65536
//! outbound_queue = 1024
//! outbound_queue_bytes = 4194304                 # per connection
//! memory_budget = 134217728                      # all outbound queues together
//! cache_max_messages = 10000
//! cache_max_bytes = 16777216
//! public_ip = "203.0.113.5"                      # answered to PUBLIC_IP
//! cache_ttl_secs = 60
//! allow_stop_from_tcp = false
//! allow_sniff_from_tcp = false                   # SNIFF from loopback TCP without the token
//! deny_stop_from_unix = false
//! unix_admin_uids = [1000]      # default: root and the socket owner (the daemon's user)
//! admin_token_file = "/etc/comms/admin.token"   # STOP/SHUTDOWN/SNIFF with admin_token=<its text>
//! shutdown_grace_ms = 200
//! flush_timeout_ms = 2000
//! # cluster (docs/NATIVE.md "Cluster"); no remote_listen: a single node
//! remote_listen = "10.0.0.5:4042"                 # private IPv4 (loopback: allow_loopback_peers)
//! peer_my_address = "10.0.0.5:4042"               # default: the bound remote_listen address
//! neighbors = "10.0.0.6,10.0.0.7:4042"           # port 4042 when omitted
//! allow_loopback_peers = false
//! max_peer_links = 100
//! peer_retry_secs = "1,1,1,3,5,10,20,30,60"
//! peer_tls_cert = "/etc/comms/node1.crt"          # mutual TLS on peer links (all four keys)
//! peer_tls_key = "/etc/comms/node1.key"
//! peer_tls_ca = "/etc/comms/fleet-ca.crt"
//! peer_allow = "node2.example,node3.example"     # names the peers' certificates must carry
//! http = "127.0.0.1:9464"      # /metrics, /healthz, /readyz (docs/OPERATIONS.md); off by default
//! ```
//!
//! With `remote_listen`, the bound address is printed as `commsd: listening peer ADDR`; with
//! `http`, `commsd: listening http ADDR`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::Parser;
use comms_ops::{Metrics, Readiness};
use commsd::config::Args;
use commsd::{Daemon, DaemonHandle};

fn announce(
    handle: &DaemonHandle,
    http: Option<&comms_ops::HttpEndpoint>,
    ready_file: Option<&Path>,
) -> anyhow::Result<()> {
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
    if let Some(a) = handle.tls_addr() {
        text.push_str(&format!("commsd: listening tls {a}\n"));
    }
    if let Some(a) = handle.peer_addr() {
        text.push_str(&format!("commsd: listening peer {a}\n"));
    }
    if let Some(h) = http {
        text.push_str(&format!("commsd: listening http {}\n", h.local_addr()));
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

async fn run(cli: Args) -> anyhow::Result<()> {
    let cfg = commsd::config::load(cli.config.as_deref(), cli.settings())?;
    let http_addr = cfg.http;
    let handle = Daemon::start(cfg).await.context("cannot start commsd")?;
    let http = match http_addr {
        Some(addr) => {
            let metrics = Metrics::default();
            metrics.register_collector(handle.metrics());
            // Every listener is bound: the daemon is ready from the start.
            let readiness = Readiness::new("starting");
            readiness.ready();
            Some(comms_ops::serve(addr, metrics, readiness).await?)
        }
        None => None,
    };
    announce(&handle, http.as_ref(), cli.ready_file.as_deref())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = handle.stopped() => {}
    }
    tracing::info!(stats = ?handle.stats(), "commsd stopping");
    if let Some(http) = http {
        http.shutdown().await;
    }
    handle.shutdown().await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Args::parse();
    comms_ops::logs::init("info", comms_ops::logs::Stream::Stderr);
    // Single-threaded: one router owns all state; docs/DESIGN.md §7 measured it faster here.
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
