//! `server`: the fleet server. Keeps the live agent directory and dispatches tasks. With a
//! `cd:` URL (the default, `cd://127.0.0.1:4040`) it embeds the commsd daemon unless
//! `--no-embed` is given, so `server` alone is a working system.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use comms::Config;

use comms_server::{Server, ServerConfig};

/// The server's embedded daemon, when nothing else is configured.
const DEFAULT_URL: &str = "cd://127.0.0.1:4040";

/// Run the comms fleet server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file ([transport] and [server] sections).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Transport URL (overrides the config; also COMMS_URL).
    #[arg(long, env = "COMMS_URL")]
    url: Option<String>,
    /// Fleet key file: sign tasks, answer only signed requests (also COMMS_FLEET_KEY_FILE).
    #[arg(long, env = "COMMS_FLEET_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// With a cd: URL, do not start the embedded daemon (use a separate commsd).
    #[arg(long)]
    no_embed: bool,
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
            eprintln!("server: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::resolve(args.config.as_deref(), args.url.as_deref(), DEFAULT_URL)?;
    let mut server_config: ServerConfig = config.section("server")?;
    if args.key_file.is_some() {
        server_config.key_file = args.key_file;
    }
    let daemon = if args.no_embed {
        None
    } else {
        comms_server::embed::start(&config)
            .await
            .context("starting the embedded daemon")?
    };
    let transport = comms::connect(&config)
        .await
        .with_context(|| format!("connecting to {}", config.transport.url))?;
    let server = Server::start(transport, server_config)
        .await
        .context("starting the server")?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await?;
    if let Some(daemon) = daemon {
        daemon.shutdown().await;
    }
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
