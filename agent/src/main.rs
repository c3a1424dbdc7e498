//! `agent`: joins the fleet over the configured transport and runs tasks for the server.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use comms::Config;

use comms_agent::{Agent, AgentConfig};

/// The server's embedded daemon, when nothing else is configured.
const DEFAULT_URL: &str = "cd://127.0.0.1:4040";

/// Run a comms agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file ([transport] and [agent] sections).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Transport URL (overrides the config; also COMMS_URL).
    #[arg(long, env = "COMMS_URL")]
    url: Option<String>,
    /// Service name of this agent.
    #[arg(long)]
    name: Option<String>,
    /// Where the stable id is kept.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Server identity allowed to run tasks (`service` or `node:service`).
    #[arg(long)]
    server: Option<String>,
    /// Fleet key file: tasks must be signed with it (also COMMS_FLEET_KEY_FILE).
    #[arg(long, env = "COMMS_FLEET_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Without a key, trust the transport-stamped origin alone, even on a broker transport
    /// where any client can forge it.
    #[arg(long)]
    allow_unsigned_tasks: bool,
    /// Join a group (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Add a label `key=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    // One line naming the problem, exit code 1; no backtrace (even with RUST_BACKTRACE set).
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::resolve(args.config.as_deref(), args.url.as_deref(), DEFAULT_URL)?;
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
    agent_config.allow_unsigned_tasks |= args.allow_unsigned_tasks;
    let scheme = config.url()?.scheme();
    let stamped_by_daemon = matches!(
        scheme,
        comms::config::Scheme::Cd | comms::config::Scheme::Cds | comms::config::Scheme::Memory
    );
    if agent_config.key_file.is_none() {
        anyhow::ensure!(
            stamped_by_daemon || agent_config.allow_unsigned_tasks,
            "on a {} transport any client can forge a message's origin: give the agent the \
             fleet key (--key-file, COMMS_FLEET_KEY_FILE or [agent] key_file; the server and \
             commsctl need the same key) or accept that risk with --allow-unsigned-tasks",
            scheme.as_str()
        );
        tracing::warn!(
            "no fleet key: tasks are authorised by the transport-stamped origin only (set key_file)"
        );
    }
    agent_config.groups.extend(args.groups);
    agent_config.labels.extend(args.labels);
    let transport = comms::connect(&config).await.context("connecting")?;
    let agent = Agent::start(transport, agent_config)
        .await
        .context("starting the agent")?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    agent.shutdown().await?;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
