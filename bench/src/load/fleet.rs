//! One server managing N agents, each agent on its own connection to one `commsd` process
//! with heartbeats on; then one dispatch to all of them, every result collected.

use comms_core::Connect;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use comms_agent::{Agent, AgentConfig};
use comms_fleet::auth::FleetKey;
use comms_fleet::control::{DispatchRequest, Selector};
use comms_fleet::Job;
use comms_native::transport::NativeTransport;
use comms_server::client::{Client, Event};
use comms_server::{Server, ServerConfig};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde_json::json;

use crate::commsd;
use crate::rss::rss_kib;

async fn transport(url: &str) -> anyhow::Result<Box<dyn comms_core::Transport>> {
    Ok(Box::new(NativeTransport::connect_url(url).await?))
}

/// Runs the fleet load and returns the report.
pub async fn run(
    agents: usize,
    ttl_secs: u64,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(agents >= 1, "--agents must be at least 1");
    let daemon = commsd::start(agents + 64).await?;
    let url = format!("cd://{}", commsd::socket(&daemon)?.display());
    let dir = tempfile::Builder::new()
        .prefix("comms-load-fleet-")
        .tempdir()?;
    let key_file = dir.path().join("fleet.key");
    std::fs::write(&key_file, format!("{}\n", ulid_like()))?;

    let server = Server::start(
        transport(&url).await?,
        ServerConfig {
            ttl_secs,
            key_file: Some(key_file.clone()),
            state_dir: dir.path().join("server-state"),
            ..ServerConfig::default()
        },
    )
    .await
    .context("server")?;

    eprintln!("comms-load: starting {agents} agents ({concurrency} at a time)...");
    let started = Instant::now();
    let fleet: Vec<Agent> = stream::iter(0..agents)
        .map(|i| {
            let (url, dir, key_file) = (url.clone(), dir.path().to_path_buf(), key_file.clone());
            async move {
                let config = AgentConfig {
                    name: Some(format!("agent_{i}")),
                    state_dir: dir.join(format!("agent_{i}")),
                    key_file: Some(key_file),
                    ttl_secs,
                    groups: vec!["load".into()],
                    ..AgentConfig::default()
                };
                Agent::start(transport(&url).await?, config)
                    .await
                    .with_context(|| format!("agent {i}"))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let started_secs = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120 + agents as u64 / 10);
    loop {
        let up = server.agents().iter().filter(|a| a.up).count();
        if up == agents {
            break;
        }
        if Instant::now() > deadline {
            bail!("the server sees {up} of {agents} agents up");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_up_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "comms-load: the server sees all {agents} agents up after {all_up_secs:.2} s; dispatching"
    );

    let key = FleetKey::from_file(&key_file)?;
    let mut client = Client::connect(transport(&url).await?, "load_ctl", Duration::from_secs(60))
        .await?
        .with_key(key);
    let request = DispatchRequest {
        selector: Selector::Group("load".into()),
        job: Job {
            argv: vec!["true".into()],
            env: BTreeMap::new(),
            cwd: None,
            timeout_ms: 120_000,
            output_cap: 1024,
            secret_env: None,
        },
    };
    let sent = Instant::now();
    let accepted = client.dispatch(&request).await.context("dispatch")?;
    eprintln!(
        "comms-load: dispatch accepted ({} targets)",
        accepted.targets.len()
    );
    let mut results = 0;
    let record = loop {
        match tokio::time::timeout(Duration::from_secs(300), client.next_event()).await {
            Ok(Some(Event::Done(d))) if d.dispatch == accepted.dispatch => break d,
            Ok(Some(Event::Result(_))) => {
                results += 1;
                if results % 100 == 0 {
                    eprintln!("comms-load: {results} results");
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("the client stopped"),
            Err(_) => bail!("no DISPATCH_DONE within 300 s"),
        }
    };
    let dispatch_secs = sent.elapsed().as_secs_f64();
    // What `commsctl agents` and `commsctl results` get: lists paged across messages.
    let listed = client.agents().await.context("AGENTS")?.len();
    let recent = client.results().await.context("RESULTS")?;
    let recorded: usize = recent
        .iter()
        .map(|r| r.outcomes.values().sum::<usize>())
        .sum();
    // DISPATCH_DONE is a summary (the results were streamed): its outcome counts.
    let ok = record.outcomes.get("ok").copied().unwrap_or(0);
    let targets: usize = record.outcomes.values().sum();
    let daemon_rss = rss_kib(Some(commsd::pid(&daemon)?))?;
    let process_rss = rss_kib(None)?;
    // Heartbeats keep flowing while the fleet idles: every agent stays up.
    tokio::time::sleep(Duration::from_secs(ttl_secs.max(1) * 2)).await;
    let still_up = server.agents().iter().filter(|a| a.up).count();

    client.close().await?;
    for a in fleet {
        a.shutdown().await?;
    }
    server.shutdown().await?;
    anyhow::ensure!(
        ok == agents,
        "{ok} of {agents} results ok: {:?}",
        record.outcomes
    );
    anyhow::ensure!(listed == agents, "AGENTS listed {listed} of {agents}");
    anyhow::ensure!(
        recorded == agents,
        "RESULTS recorded {recorded} of {agents} outcomes"
    );
    anyhow::ensure!(
        still_up == agents,
        "only {still_up} of {agents} agents still up after 2 TTLs"
    );
    Ok(json!({
        "agents": agents,
        "agents_started_secs": round(started_secs),
        "all_seen_up_by_server_secs": round(all_up_secs),
        "heartbeats_per_sec": round(agents as f64 * 3.0 / ttl_secs.max(1) as f64),
        "dispatch_targets": targets,
        "results_ok": ok,
        "dispatch_to_all_done_secs": round(dispatch_secs),
        "still_up_after_2_ttl": still_up,
        "agents_listed_by_client": listed,
        "daemon_rss_kib": daemon_rss,
        "server_and_agents_process_rss_kib": process_rss,
    }))
}

/// 32 hex characters from the clock and the pid (a per-run test key, not a secret).
fn ulid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:016x}{:016x}",
        nanos as u64,
        u64::from(std::process::id())
    )
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
