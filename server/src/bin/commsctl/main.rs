//! `commsctl`: talk to the fleet server (agents, run, send, status, results, cancel), or watch
//! the whole transport (`sniff`, which needs no server). See `commsctl --help` for the exit
//! codes; every command fails within --connect-timeout (daemon or broker) and --wait (server).

mod cli;
mod connect;
mod dlq;
mod out;
mod run;
mod sniff;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use comms::{Destination, Message};
use comms_fleet::auth::FleetKey;
use comms_fleet::control::{DispatchRequest, Selector};
use comms_fleet::Job;
use comms_server::client::Client;

use cli::{Args, Command};
use connect::causes;

/// How long closing may take at exit (flushing what is still unacknowledged).
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// An error with its own exit code.
#[derive(Debug)]
struct Exit(u8, String);
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}
impl std::error::Error for Exit {}

fn kv(s: &str) -> anyhow::Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .with_context(|| format!("`{s}` is not key=value"))
}

#[tokio::main]
async fn main() -> ExitCode {
    comms_ops::logs::init("warn", comms_ops::logs::Stream::Stderr);
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    let from_cli = |id: &str| {
        let src = matches
            .subcommand()
            .and_then(|(_, m)| m.value_source(id))
            .or_else(|| matches.value_source(id));
        src == Some(ValueSource::CommandLine)
    };
    let url_from_flag = from_cli("url");
    let sniff_extra = ["wait"].into_iter().find(|id| from_cli(id));
    let json = args.json;
    match run(args, url_from_flag, sniff_extra).await {
        Ok(code) => code,
        Err(e) => {
            // Each cause once: anyhow's chain, skipping a cause already in the text before it.
            let mut text = String::new();
            for cause in e.chain() {
                let c = causes(cause);
                if !text.contains(&c) {
                    if !text.is_empty() {
                        text.push_str(": ");
                    }
                    text.push_str(&c);
                }
            }
            out::error(json, &text);
            let code = e.downcast_ref::<Exit>().map_or(2, |x| x.0);
            ExitCode::from(code)
        }
    }
}

async fn run(
    args: Args,
    url_from_flag: bool,
    sniff_extra: Option<&str>,
) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::Keygen { path, force } => {
            comms_server::keygen::write_key_file(path, *force)?;
            out::note(
                false,
                &format!("wrote a new fleet key to {} (mode 0600)", path.display()),
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Args::command(),
                "commsctl",
                &mut std::io::stdout(),
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man => {
            clap_mangen::Man::new(Args::command()).render(&mut std::io::stdout())?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::WebToken => {
            let Some(key) = sniff::sniff_key(args.key_file.as_deref())? else {
                bail!("no fleet key found: give --key-file or COMMS_FLEET_KEY_FILE (the server's is <state dir>/fleet.key)");
            };
            println!("{}", key.web_view_token());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Sniff { .. } => {
            if let Some(flag) = sniff_extra {
                bail!("sniff does not use --{}", flag.replace('_', "-"));
            }
        }
        _ => {}
    }
    let connect::Connected {
        transport,
        config,
        reach,
        namespace,
    } = connect::connect(&args, url_from_flag).await?;
    let config = &config;
    if let Command::Dlq { action } = args.command {
        let me = format!("commsctl_{}", std::process::id());
        let wait = Duration::from_secs(args.wait.max(1));
        return dlq::run(transport, &me, action, args.json, wait).await;
    }
    if let Command::Sniff {
        commands,
        services,
        count,
    } = args.command
    {
        let url = config.url()?;
        let transport = sniff::with_admin_token(transport, &url, args.key_file.as_deref()).await?;
        return sniff::run(transport, commands, services, count, args.json).await;
    }
    let me = format!("commsctl_{}", std::process::id());
    let wait = Duration::from_secs(args.wait.max(1));
    let key = if args.insecure {
        tracing::warn!("INSECURE: --insecure: requests are not signed (for a keyless server)");
        None
    } else {
        match comms_fleet::auth::find_key_file(args.key_file.as_deref()) {
            Some(p) => Some(FleetKey::from_file(&p)?),
            // `send` may go anywhere: unsigned without a key; the server's commands need one.
            None if matches!(args.command, Command::Send { .. }) => None,
            None => bail!(
                "no fleet key: none given (--key-file, COMMS_FLEET_KEY_FILE) and none at {} \
                 (the server creates it there: run commsctl in the server's working directory or \
                 set COMMS_SERVER_STATE_DIR to its state directory), or --insecure for a keyless \
                 server",
                comms_fleet::auth::default_key_path().display()
            ),
        }
    };
    let signer = key.clone();
    let mut client =
        match tokio::time::timeout(reach.timeout, Client::connect(transport, &me, wait)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(reach.unreachable(causes(&e))),
            Err(_) => return Err(reach.too_slow()),
        };
    if let Some(key) = key {
        client = client.with_key(key);
    }
    let no_server = |e: comms::Error| {
        anyhow::anyhow!(
            "no answer from the server (service `server`, namespace {}) over {} within {} s: \
             {} (is `server` running on this URL and namespace?)",
            namespace,
            reach.masked,
            wait.as_secs(),
            causes(&e)
        )
    };
    let json = args.json;
    let code = match args.command {
        Command::Agents => {
            let agents = client.agents().await.map_err(no_server)?;
            if json {
                for a in &agents {
                    out::line("agent", a);
                }
            } else {
                print_agents(&agents);
            }
            ExitCode::SUCCESS
        }
        Command::Status => {
            let s = client.status().await.map_err(no_server)?;
            if json {
                out::line("status", &s);
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
            let tasks = client.cancel(&dispatch).await.map_err(no_server)?;
            if tasks == 0 {
                let known = client.results().await.map_err(no_server)?;
                if !known.iter().any(|d| d.dispatch == dispatch) {
                    return Err(
                        Exit(2, format!("no dispatch `{dispatch}` known to the server")).into(),
                    );
                }
            }
            if json {
                out::line(
                    "cancelled",
                    &serde_json::json!({"dispatch": dispatch, "tasks": tasks}),
                );
            } else {
                println!("cancel sent for {dispatch} ({tasks} running tasks)");
            }
            ExitCode::SUCCESS
        }
        Command::Results { dispatch } => {
            let mut r = client.results().await.map_err(no_server)?;
            if let Some(id) = &dispatch {
                r.retain(|d| &d.dispatch == id);
                if r.is_empty() {
                    return Err(Exit(2, format!("no dispatch `{id}` known to the server")).into());
                }
            }
            for d in &r {
                if json {
                    out::line("dispatch", d);
                } else {
                    let ok = d.outcomes.get("ok").copied().unwrap_or(0);
                    let targets: usize = d.outcomes.values().sum();
                    let by = d
                        .requester
                        .as_deref()
                        .map(|r| format!(" by {r}"))
                        .unwrap_or_default();
                    println!(
                        "{} {} {}/{} ok{}{by}",
                        d.dispatch,
                        d.argv.join(" "),
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
            if let Some(key) = &signer {
                key.sign(&mut msg);
            }
            if reply {
                let answer = client.endpoint().request(msg, wait).await?;
                if json {
                    out::line("reply", &answer);
                } else {
                    let params: Vec<String> = answer
                        .params
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    println!(
                        "{} from {}: {}",
                        answer.command,
                        answer.from().map(|f| f.to_string()).unwrap_or_default(),
                        params.join(" ")
                    );
                }
            } else {
                client.endpoint().send(msg).await?;
                if json {
                    out::line("sent", &serde_json::json!({"target": target}));
                }
            }
            ExitCode::SUCCESS
        }
        Command::Run {
            agent,
            group,
            label,
            all,
            timeout,
            deadline,
            output_cap,
            env,
            secret_env,
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
            let secret_env = if secret_env.is_empty() {
                None
            } else {
                let vars: BTreeMap<String, String> = secret_env
                    .iter()
                    .map(|e| kv(e))
                    .collect::<anyhow::Result<_>>()?;
                let Some(key) = &signer else {
                    bail!("--secret-env needs the fleet key (its values are sealed with it)");
                };
                Some(key.seal(serde_json::to_string(&vars)?.as_bytes())?)
            };
            let request = DispatchRequest {
                selector,
                job: Job {
                    argv,
                    env,
                    cwd,
                    timeout_ms: timeout.saturating_mul(1000),
                    output_cap,
                    secret_env,
                },
            };
            let deadline = Duration::from_secs(deadline.unwrap_or(timeout.saturating_add(15)));
            run::run_dispatch(&mut client, &request, deadline, json)
                .await
                .map_err(|e| match e.downcast::<comms::Error>() {
                    Ok(e) => no_server(e),
                    Err(e) => e,
                })?
        }
        Command::Sniff { .. }
        | Command::Dlq { .. }
        | Command::Keygen { .. }
        | Command::WebToken
        | Command::Completions { .. }
        | Command::Man => {
            unreachable!("handled above")
        }
    };
    // Closing must not hang either (a broker or a server that went away): what is still
    // unacknowledged then is a request whose answer nobody waits for any more.
    let _ = tokio::time::timeout(CLOSE_WAIT, client.close()).await;
    Ok(code)
}

fn print_agents(agents: &[comms_fleet::control::AgentInfo]) {
    println!(
        "{:<6} {:<32} {:<12} {:<16} LABELS",
        "STATE", "ADDRESS", "ID", "GROUPS"
    );
    for a in agents {
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
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
