//! `commsctl`: talk to the fleet server (agents, run, send, status, results), or watch the
//! whole transport (`sniff`, which needs no server).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use comms::{Config, Destination, Message};
use comms_server::client::{Client, Event};
use comms_server::protocol::{DispatchRequest, Outcome, Selector};
use comms_server::sniff::{Filter, Output as SniffOutput};

/// The server's embedded daemon, when nothing else is configured.
const DEFAULT_URL: &str = "cd://127.0.0.1:4040";

/// Control a comms fleet.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file ([transport] section).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Transport URL (overrides the config; also COMMS_URL).
    #[arg(long, env = "COMMS_URL", global = true)]
    url: Option<String>,
    /// Machine-readable output (one JSON document per line).
    #[arg(long, global = true)]
    json: bool,
    /// Fleet key file: sign requests with it (also COMMS_FLEET_KEY_FILE).
    #[arg(long, env = "COMMS_FLEET_KEY_FILE", global = true, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Seconds to wait for the server's answers.
    #[arg(long, global = true, default_value_t = 10)]
    wait: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the agents the server knows (up and down).
    Agents,
    /// Run a command on agents: `commsctl run --all -- uname -a`.
    Run {
        /// One agent (id, id prefix, service name or node:service).
        #[arg(long, group = "target")]
        agent: Option<String>,
        /// Every agent in a group.
        #[arg(long, group = "target")]
        group: Option<String>,
        /// Every agent with this label (`key=value`).
        #[arg(long, group = "target")]
        label: Option<String>,
        /// Every live agent.
        #[arg(long, group = "target")]
        all: bool,
        /// Task timeout in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Output kept per stream per agent, in bytes.
        #[arg(long, default_value_t = 1024 * 1024)]
        output_cap: u64,
        /// Environment `KEY=VALUE` (repeatable).
        #[arg(long = "env")]
        env: Vec<String>,
        /// Working directory on the agents.
        #[arg(long)]
        cwd: Option<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Send one message: `commsctl send [node:]service/CMD key=value...`.
    Send {
        /// `[node:]service/CMD`.
        target: String,
        /// Parameters `key=value`.
        params: Vec<String>,
        /// Wait for a reply and print it.
        #[arg(long)]
        reply: bool,
    },
    /// Cancel the running tasks of a dispatch.
    Cancel {
        /// Dispatch id (printed by `run`).
        dispatch: String,
    },
    /// The server's status.
    Status,
    /// Recent dispatches and their results.
    Results,
    /// Print every message on the transport as it passes (`time from -> to COMMAND k=v...`,
    /// or JSON lines with --json), until --count messages or Ctrl-C. Needs no server.
    Sniff {
        /// Only this command (repeatable).
        #[arg(long = "command", value_name = "CMD")]
        commands: Vec<String>,
        /// Only messages from or to this service, `name` or `node:name` (repeatable).
        #[arg(long = "service", value_name = "NAME")]
        services: Vec<String>,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
}

fn kv(s: &str) -> anyhow::Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .with_context(|| format!("`{s}` is not key=value"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("commsctl: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::resolve(args.config.as_deref(), args.url.as_deref(), DEFAULT_URL)?;
    let transport = comms::connect(&config)
        .await
        .with_context(|| format!("connecting to {}", config.transport.url))?;
    if let Command::Sniff {
        commands,
        services,
        count,
    } = args.command
    {
        return sniff(transport, commands, services, count, args.json).await;
    }
    let me = format!("commsctl_{}", std::process::id());
    let wait = Duration::from_secs(args.wait.max(1));
    let key = match &args.key_file {
        Some(p) => Some(comms_agent::auth::FleetKey::from_file(p)?),
        None => None,
    };
    let mut client = Client::connect(transport, &me, wait).await?;
    if let Some(key) = key {
        client = client.with_key(key);
    }
    let code = match args.command {
        Command::Agents => {
            let agents = client.agents().await?;
            if args.json {
                println!("{}", serde_json::to_string(&agents)?);
            } else {
                println!(
                    "{:<6} {:<32} {:<12} {:<16} LABELS",
                    "STATE", "ADDRESS", "ID", "GROUPS"
                );
                for a in &agents {
                    let labels: Vec<String> =
                        a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    let id: String = a.id.chars().take(12).collect();
                    println!(
                        "{:<6} {:<32} {:<12} {:<16} {}",
                        if a.up { "up" } else { "down" },
                        a.address,
                        id,
                        a.groups.join(","),
                        labels.join(",")
                    );
                }
                println!(
                    "{} agents, {} up",
                    agents.len(),
                    agents.iter().filter(|a| a.up).count()
                );
            }
            ExitCode::SUCCESS
        }
        Command::Status => {
            let s = client.status().await?;
            if args.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!(
                    "server {} over {}: {} agents up, {} down, {} dispatches running, up {} s",
                    s.address,
                    s.backend,
                    s.agents_up,
                    s.agents_down,
                    s.dispatches_running,
                    s.uptime_secs
                );
            }
            ExitCode::SUCCESS
        }
        Command::Cancel { dispatch } => {
            client.cancel(&dispatch).await?;
            if !args.json {
                println!("cancel sent for {dispatch}");
            }
            ExitCode::SUCCESS
        }
        Command::Results => {
            let r = client.results().await?;
            if args.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                for d in &r {
                    let ok = d.outcomes.get("ok").copied().unwrap_or(0);
                    let targets: usize = d.outcomes.values().sum();
                    println!(
                        "{} {:?} {}/{} ok{}",
                        d.dispatch,
                        d.argv,
                        ok,
                        targets,
                        if d.done { "" } else { " (running)" }
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Command::Send {
            target,
            params,
            reply,
        } => {
            let (to, command) = target
                .rsplit_once('/')
                .with_context(|| format!("`{target}` is not [node:]service/CMD"))?;
            let to: Destination = to.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut msg = Message::new(command, to)?;
            for p in &params {
                let (k, v) = kv(p)?;
                msg.params.insert(k, v);
            }
            if reply {
                let answer = client.endpoint().request(msg, wait).await?;
                if args.json {
                    println!("{}", serde_json::to_string(&answer)?);
                } else {
                    println!(
                        "{} from {}: {:?}",
                        answer.command,
                        answer.from.map(|f| f.to_string()).unwrap_or_default(),
                        answer.params
                    );
                }
            } else {
                client.endpoint().send(msg).await?;
            }
            ExitCode::SUCCESS
        }
        Command::Sniff { .. } => unreachable!("handled above"),
        Command::Run {
            agent,
            group,
            label,
            all,
            timeout,
            output_cap,
            env,
            cwd,
            argv,
        } => {
            let selector = match (agent, group, label, all) {
                (Some(a), _, _, _) => Selector::Agent(a),
                (_, Some(g), _, _) => Selector::Group(g),
                (_, _, Some(l), _) => {
                    let (k, v) = kv(&l)?;
                    Selector::Label(k, v)
                }
                (_, _, _, true) => Selector::All,
                _ => bail!("say where to run: --agent ID, --group G, --label k=v or --all"),
            };
            let env: BTreeMap<String, String> =
                env.iter().map(|e| kv(e)).collect::<anyhow::Result<_>>()?;
            let request = DispatchRequest {
                selector,
                argv,
                env,
                cwd,
                timeout_ms: timeout.saturating_mul(1000),
                output_cap,
            };
            run_dispatch(&mut client, &request, args.json).await?
        }
    };
    client.close().await?;
    Ok(code)
}

async fn sniff(
    transport: Box<dyn comms::Transport>,
    commands: Vec<String>,
    services: Vec<String>,
    count: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let backend = transport.capabilities().backend;
    let filter = Filter { commands, services };
    let output = SniffOutput { json, count };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let started = || eprintln!("commsctl: sniffing the {backend} transport (Ctrl-C to stop)");
    let mut stdout = std::io::stdout().lock();
    let result =
        comms_server::sniff::run(&*transport, &filter, output, &mut stdout, stop, started).await;
    let _ = transport.close().await;
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e @ comms::Error::Unsupported { .. }) => {
            bail!("{e}: this backend cannot sniff (memory, native commsd and RabbitMQ can)")
        }
        Err(e) => Err(e).context("sniff"),
    }
}

async fn run_dispatch(
    client: &mut Client,
    request: &DispatchRequest,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let accepted = client.dispatch(request).await?;
    let total = accepted.targets.len() + accepted.unreachable.len();
    if json {
        println!("{}", serde_json::to_string(&accepted)?);
    } else if total == 0 {
        eprintln!("no agent matches");
    } else {
        eprintln!("dispatch {}: {} targets", accepted.dispatch, total);
    }
    if total == 0 {
        return Ok(ExitCode::from(1));
    }
    let (mut done, mut failed) = (0usize, 0usize);
    while let Some(event) = client.next_event().await {
        match event {
            Event::Output(o) if o.dispatch == accepted.dispatch => {
                if json {
                    println!("{}", serde_json::to_string(&o)?);
                } else {
                    for line in o.data.lines() {
                        println!("{} {}: {line}", o.agent, o.stream);
                    }
                }
            }
            Event::Result(r) if r.dispatch == accepted.dispatch => {
                done += 1;
                if r.outcome != Outcome::Ok {
                    failed += 1;
                }
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    let detail = r.result.as_ref().map(|x| {
                        format!(
                            " exit={} {} ms{}",
                            x.exit_code.map_or("-".into(), |c| c.to_string()),
                            x.duration_ms,
                            x.error
                                .as_ref()
                                .map_or(String::new(), |e| format!(" ({e})"))
                        )
                    });
                    println!(
                        "{} => {:?}{}",
                        r.agent,
                        r.outcome,
                        detail.unwrap_or_default()
                    );
                    if total > 1 {
                        eprintln!("[{done}/{total} done, {failed} failed]");
                    }
                }
            }
            Event::Done(d) if d.dispatch == accepted.dispatch => break,
            _ => {}
        }
    }
    Ok(if failed == 0 && done == total {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
