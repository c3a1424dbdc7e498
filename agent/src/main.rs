//! `agent`: joins the fleet over the configured transport and runs tasks for the server.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

const AFTER_HELP: &str = "\
Examples:
  agent --name web1 --group web --label env=dev
  agent --config configs/rabbitmq.toml --key-file /etc/comms/fleet.key --name web1
  agent --name web1 --http 127.0.0.1:9465   # then: curl 127.0.0.1:9465/metrics

Fleet key: tasks run only when signed with it. Without --key-file (or COMMS_FLEET_KEY_FILE, or
[agent] key_file) the agent uses the key the server created in its state directory on this
host: $COMMS_SERVER_STATE_DIR/fleet.key, else ./server-state/fleet.key. With no key found it
refuses to start; --insecure runs keyless (anyone may run commands), logged as INSECURE.

Environment:
  COMMS_URL               transport URL (--url wins, then COMMS_URL, then the [transport] url
                          of --config, then cd://127.0.0.1:4040); the start-up log names it
  COMMS_FLEET_KEY_FILE    fleet key file (like --key-file)
  COMMS_SERVER_STATE_DIR  the server's state directory, where its fleet.key is looked for
  RUST_LOG                log filter (default: info); logs go to stdout, coloured only on a
                          terminal
  OTEL_EXPORTER_OTLP_ENDPOINT  with the `otlp` cargo feature: export traces there (OTLP/HTTP)

Exit codes:
  0  stopped by SIGTERM or Ctrl-C
  1  error at start (bad config, no fleet key found, ...), named in one line";

/// How long the start-up check of a Kafka broker waits before logging that it is not there yet.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
use comms::startup::Resolved;

use comms_agent::{Agent, AgentConfig};
use comms_fleet::{shutdown_signal, DEFAULT_URL};
use comms_ops::{Metrics, Readiness};

/// Run a comms agent: joins the fleet over the transport and runs the tasks the server
/// sends. Runs until SIGTERM or Ctrl-C; retries a lost transport for ever.
#[derive(Debug, Parser)]
#[command(name = "agent", version, about, long_about = None, after_help = AFTER_HELP)]
struct Args {
    /// TOML config file ([transport] and [agent] sections).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Transport URL [default: cd://127.0.0.1:4040] (overrides the config).
    #[arg(long, env = "COMMS_URL")]
    url: Option<String>,
    /// Service name of this agent.
    #[arg(long)]
    name: Option<String>,
    /// Where the stable id is kept.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Ignored (kept for old command lines): tasks are authorised by the fleet key's
    /// signature, never by the sender's name.
    #[arg(long, hide = true)]
    server: Option<String>,
    /// Fleet key file: tasks must be signed with it (also COMMS_FLEET_KEY_FILE) [default:
    /// the server's, $COMMS_SERVER_STATE_DIR/fleet.key or ./server-state/fleet.key].
    #[arg(long, env = "COMMS_FLEET_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Run without a fleet key: any client that reaches the agent can run commands on it.
    /// Logged as INSECURE. (Also --allow-unsigned-tasks, its former name.)
    #[arg(long, alias = "allow-unsigned-tasks")]
    insecure: bool,
    /// Join a group (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Add a label `key=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Serve /metrics (Prometheus), /healthz and /readyz over HTTP on this address (e.g.
    /// 127.0.0.1:9465); default `[agent] http`, else off.
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

// An error: one line naming it, exit code 1, no backtrace (even with RUST_BACKTRACE set).
#[tokio::main]
async fn main() -> std::process::ExitCode {
    comms_ops::cli::run_main("agent", serve).await
}

async fn serve(args: Args, url_from_flag: bool) -> anyhow::Result<()> {
    // --url on the command line wins over the config; COMMS_URL does not.
    let flag_url = args.url.as_deref().filter(|_| url_from_flag);
    let resolved = Resolved::at_start(args.config.as_deref(), flag_url, DEFAULT_URL)?;
    let masked = resolved.masked_url();
    let config = resolved.config;
    let mut agent_config: AgentConfig = config.section("agent")?;
    if args.name.is_some() {
        agent_config.name = args.name;
    }
    if let Some(dir) = args.state_dir {
        agent_config.state_dir = dir;
    }
    if let Some(server) = args.server {
        agent_config.server = server;
    }
    if args.key_file.is_some() {
        agent_config.key_file = args.key_file;
    }
    agent_config.insecure |= args.insecure;
    if args.http.is_some() {
        agent_config.http = args.http;
    }
    // Out-of-range values first (Agent::start checks again): they are named before the key.
    agent_config
        .validate()
        .map_err(|p| anyhow::anyhow!("invalid [agent] configuration: {p}"))?;
    if !agent_config.insecure {
        // An explicit key file first, else the server's on this host; none: refuse to start.
        agent_config.key_file = comms_fleet::auth::find_key_file(agent_config.key_file.as_deref());
        let Some(key) = &agent_config.key_file else {
            anyhow::bail!("{}", comms_agent::no_key_hint());
        };
        tracing::info!(key_file = %key.display(), "fleet key");
    }
    if let Err(e) = comms::probe(&config, PROBE_WAIT).await {
        tracing::warn!(
            "the broker at {masked} does not answer yet ({e}); retrying in the background"
        );
    }
    agent_config.groups.extend(args.groups);
    agent_config.labels.extend(args.labels);
    let (metrics, readiness) = (Metrics::default(), Readiness::new("starting"));
    let http = match agent_config.http {
        Some(addr) => Some(comms_ops::serve(addr, metrics.clone(), readiness.clone()).await?),
        None => None,
    };
    let transport = comms::connect(&config)
        .await
        .with_context(|| format!("connecting to {masked}"))?;
    let agent = Agent::start(transport, agent_config)
        .await
        .context("starting the agent")?;
    agent.register_metrics(&metrics);
    readiness.ready_until(shutdown_signal()).await;
    agent.shutdown().await?;
    if let Some(http) = http {
        http.shutdown().await;
    }
    Ok(())
}
