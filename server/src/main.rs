//! `server`: the fleet server. Keeps the live agent directory and dispatches tasks. With a
//! `cd:` URL (the default, `cd://127.0.0.1:4040`) it embeds the commsd daemon unless
//! `--no-embed` is given, so `server` alone is a working system.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

const AFTER_HELP: &str = "\
Examples:
  server
  server --url 'amqp://guest:guest@127.0.0.1:5672/%2f'
  server --config configs/kafka.toml --key-file /etc/comms/fleet.key
  server --http 127.0.0.1:9464        # then: curl 127.0.0.1:9464/metrics

Fleet key: the server signs every task with it and answers only signed requests. Without
--key-file (or COMMS_FLEET_KEY_FILE, or [server] key_file) it uses <state dir>/fleet.key,
creating it (mode 0600) on the first start and logging its path; agent and commsctl on this
host find it there. --insecure runs keyless (anyone may ask), logged as INSECURE.

Environment:
  COMMS_URL               transport URL (--url wins, then COMMS_URL, then the [transport] url
                          of --config, then cd://127.0.0.1:4040); the start-up log names it
  COMMS_FLEET_KEY_FILE    fleet key file (like --key-file)
  COMMS_SERVER_STATE_DIR  state directory (like --state-dir)
  RUST_LOG                log filter (default: info); logs go to stdout, coloured only on a
                          terminal
  OTEL_EXPORTER_OTLP_ENDPOINT  with the `otlp` cargo feature: export traces there (OTLP/HTTP)

Exit codes:
  0  stopped by SIGTERM or Ctrl-C
  1  error at start (bad config, embedded daemon could not start, ...), named in one line";

/// How long the start-up check of a Kafka broker waits before logging that it is not there yet.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
use comms::startup::Resolved;

use comms_fleet::{shutdown_signal, DEFAULT_URL};
use comms_ops::{Metrics, Readiness};
use comms_server::web::WebView;
use comms_server::{Server, ServerConfig};

/// Run the comms fleet server: keeps the live agent directory, dispatches tasks for
/// `commsctl`. With a cd: URL (the default, cd://127.0.0.1:4040) it embeds the commsd daemon
/// unless --no-embed is given. Runs until SIGTERM or Ctrl-C; retries a lost transport for ever.
#[derive(Debug, Parser)]
#[command(name = "server", version, about, long_about = None, after_help = AFTER_HELP)]
struct Args {
    /// TOML config file ([transport] and [server] sections).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Transport URL [default: cd://127.0.0.1:4040] (overrides the config).
    #[arg(long, env = "COMMS_URL")]
    url: Option<String>,
    /// Fleet key file: sign tasks, answer only signed requests (also COMMS_FLEET_KEY_FILE)
    /// [default: <state dir>/fleet.key, created on the first start].
    #[arg(long, env = "COMMS_FLEET_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Run without a fleet key: answer unsigned requests from any client and send unsigned
    /// tasks. Logged as INSECURE.
    #[arg(long)]
    insecure: bool,
    /// Directory of the dispatch history (`server.sqlite3`); default `[server] state_dir`,
    /// else `server-state` in the working directory (also COMMS_SERVER_STATE_DIR).
    #[arg(long, env = "COMMS_SERVER_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// With a cd: URL, do not start the embedded daemon (use a separate commsd).
    #[arg(long)]
    no_embed: bool,
    /// Serve /metrics (Prometheus: the server's, its transport's and the embedded daemon's),
    /// /healthz, /readyz and, on a loopback address, the live web view (/) over HTTP on this
    /// address (e.g. 127.0.0.1:9464); default `[server] http`, else off.
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// Serve --http over TLS with this PEM certificate chain (with --http-tls-key); off
    /// loopback the web view is then served to holders of `commsctl web-token`'s token.
    #[arg(long, value_name = "FILE", requires = "http_tls_key")]
    http_tls_cert: Option<PathBuf>,
    /// The PEM private key of --http-tls-cert.
    #[arg(long, value_name = "FILE", requires = "http_tls_cert")]
    http_tls_key: Option<PathBuf>,
}

/// The `--http` endpoint: metrics and health, and the web view on loopback (no credentials)
/// or, over TLS, anywhere for holders of the web-view token.
async fn start_http(
    addr: std::net::SocketAddr,
    config: &ServerConfig,
    web_token: Option<String>,
    metrics: &Metrics,
    readiness: &Readiness,
    view: &WebView,
) -> anyhow::Result<comms_ops::HttpEndpoint> {
    let tls = match (&config.http_tls_cert, &config.http_tls_key) {
        (Some(cert), Some(key)) => Some(
            commsd::tls::ServerTls {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: None,
            }
            .server_config()
            .context("the http endpoint's TLS")?,
        ),
        (None, None) => None,
        _ => anyhow::bail!(
            "http_tls_cert and http_tls_key go together (--http-tls-cert, --http-tls-key)"
        ),
    };
    let mut app = comms_ops::router(metrics.clone(), readiness.clone());
    let mut shown = None;
    if addr.ip().is_loopback() {
        app = app.merge(view.routes());
        shown = Some("");
    } else if tls.is_some() {
        match web_token {
            Some(token) => {
                app = app.merge(view.routes_with_token(token));
                shown = Some("?token=<commsctl web-token>");
            }
            None => tracing::warn!("keyless (--insecure): the web view is not served off loopback"),
        }
    } else {
        tracing::warn!(%addr, "off loopback the web view is served only over TLS (--http-tls-cert, --http-tls-key): this address serves metrics and health");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let http = match tls {
        Some(tls) => comms_ops::serve_router_tls(addr, app, tls).await?,
        None => comms_ops::serve_router(addr, app).await?,
    };
    if let Some(query) = shown {
        tracing::info!("web view: {scheme}://{}/{query}", http.local_addr());
    }
    Ok(http)
}

// An error: one line naming it, exit code 1, no backtrace (even with RUST_BACKTRACE set).
#[tokio::main]
async fn main() -> std::process::ExitCode {
    comms_ops::cli::run_main("server", serve).await
}

async fn serve(args: Args, url_from_flag: bool) -> anyhow::Result<()> {
    // --url on the command line wins over the config; COMMS_URL does not.
    let flag_url = args.url.as_deref().filter(|_| url_from_flag);
    let resolved = Resolved::at_start(args.config.as_deref(), flag_url, DEFAULT_URL)?;
    if let Err(e) = comms::probe(&resolved.config, PROBE_WAIT).await {
        tracing::warn!(
            "the broker at {} does not answer yet ({e}); retrying in the background",
            resolved.masked_url()
        );
    }
    let masked = resolved.masked_url();
    let config = resolved.config;
    let mut server_config: ServerConfig = config.section("server")?;
    if args.key_file.is_some() {
        server_config.key_file = args.key_file;
    }
    if let Some(dir) = args.state_dir {
        server_config.state_dir = dir;
    }
    server_config.insecure |= args.insecure;
    if args.http.is_some() {
        server_config.http = args.http;
    }
    if args.http_tls_cert.is_some() {
        server_config.http_tls_cert = args.http_tls_cert;
    }
    if args.http_tls_key.is_some() {
        server_config.http_tls_key = args.http_tls_key;
    }
    // Read (or create) the fleet key once: the embedded daemon's admin token, which lets
    // `commsctl sniff` sniff, and the web view's token off loopback are derived from it.
    let key = comms_server::fleet_key(&server_config).map_err(anyhow::Error::msg)?;
    let (metrics, readiness) = (Metrics::default(), Readiness::new("starting"));
    let view = WebView::default();
    let http = match server_config.http {
        Some(addr) => {
            let web_token = key.as_ref().map(|k| k.web_view_token());
            Some(start_http(addr, &server_config, web_token, &metrics, &readiness, &view).await?)
        }
        None => None,
    };
    let daemon = if args.no_embed {
        None
    } else {
        let token = comms_server::embed::admin_token(key.as_ref());
        comms_server::embed::start(&config, token)
            .await
            .context("starting the embedded daemon")?
    };
    let transport = comms::connect(&config)
        .await
        .with_context(|| format!("connecting to {masked}"))?;
    // One active server per namespace: a transport with exclusive names (the daemon) refuses
    // a second one itself; elsewhere, ask whether one answers.
    if !transport.capabilities().exclusive_names {
        // The probe endpoint lives for one question: nothing of it stays on the broker.
        let mut probe_config = config.clone();
        probe_config.transport.ephemeral = true;
        let probe = comms::connect(&probe_config)
            .await
            .with_context(|| format!("connecting to {masked}"))?;
        comms_server::single::ensure_alone(probe, server_config.key_file.as_deref()).await?;
    }
    let server = Server::start(transport, server_config)
        .await
        .context("starting the server")?;
    if let Some(daemon) = &daemon {
        metrics.register_collector(daemon.metrics());
        view.show_cluster(daemon.cluster_map_source());
    }
    server.register_metrics(&metrics);
    server.attach_web(&view);
    readiness.ready_until(shutdown_signal()).await;
    server.shutdown().await?;
    if let Some(daemon) = daemon {
        daemon.shutdown().await;
    }
    if let Some(http) = http {
        http.shutdown().await;
    }
    Ok(())
}
