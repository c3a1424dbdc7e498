#![allow(clippy::unwrap_used)] // test helpers fail loudly
//! The fleet in one process over the memory transport: server, agents and a client.
//! (The same scenario across processes runs per backend in `tests/tests/`.)

use std::collections::BTreeMap;
use std::time::Duration;

use comms::{Endpoint, TypedMessage};
use comms_agent::{Agent, AgentConfig};
use comms_fleet::auth::FleetKey;
use comms_fleet::control::{DispatchRequest, Outcome, Selector, TargetResult};
use comms_fleet::task::{RunTask, TaskResult, TaskStatus};
use comms_fleet::Job;
use comms_server::client::{Client, Event};
use comms_server::{Server, ServerConfig};

fn url(hub: &str) -> String {
    format!("memory://{hub}?node=n1")
}

/// The fleet key of the fleet in `dir`: the one the server creates in its state directory
/// (made here first when an agent starts without a server).
fn key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("server-state").join("fleet.key");
    if !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        comms_server::keygen::write_key_file(&path, false).unwrap();
    }
    path
}

async fn agent(hub: &str, name: &str, dir: &std::path::Path, groups: &[&str], zone: &str) -> Agent {
    let config = AgentConfig {
        name: Some(name.into()),
        key_file: Some(key_file(dir)),
        state_dir: dir.join(name),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        labels: BTreeMap::from([("zone".into(), zone.into())]),
        ttl_secs: 1,
        ..AgentConfig::default()
    };
    Agent::start(comms::connect_url(&url(hub)).await.unwrap(), config)
        .await
        .unwrap()
}

/// An endpoint named `name` on `hub` that keeps every `RESULT` it receives.
async fn result_collector(
    hub: &str,
    name: &str,
) -> (Endpoint, std::sync::Arc<std::sync::Mutex<Vec<TaskResult>>>) {
    let results: std::sync::Arc<std::sync::Mutex<Vec<TaskResult>>> = std::sync::Arc::default();
    let endpoint = Endpoint::builder(comms::connect_url(&url(hub)).await.unwrap(), name)
        .on::<TaskResult, _, _>({
            let results = results.clone();
            move |_req, r| {
                let results = results.clone();
                async move {
                    results.lock().unwrap().push(r);
                    Ok(comms::Outcome::Done)
                }
            }
        })
        .start()
        .await
        .unwrap();
    (endpoint, results)
}

async fn run(
    client: &mut Client,
    selector: Selector,
    argv: &[&str],
    timeout_ms: u64,
) -> (Vec<TargetResult>, String) {
    let request = DispatchRequest {
        selector,
        job: Job {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            env: BTreeMap::new(),
            cwd: None,
            timeout_ms,
            output_cap: 1 << 20,
            secret_env: None,
        },
    };
    let accepted = client.dispatch(&request).await.unwrap();
    let mut output = String::new();
    let mut results = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), client.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Output(o) if o.dispatch == accepted.dispatch => output.push_str(&o.data),
            Event::Result(r) if r.dispatch == accepted.dispatch => results.push(r),
            Event::Done(d) if d.dispatch == accepted.dispatch => {
                // DONE is a summary: the outcome counts of what was streamed.
                assert!(d.results.is_empty());
                assert_eq!(d.outcomes.values().sum::<usize>(), results.len());
                break;
            }
            _ => {}
        }
    }
    results.sort_by(|a, b| a.agent.cmp(&b.agent));
    (results, output)
}

async fn wait_agents(client: &Client, up: usize) {
    for _ in 0..100 {
        if client
            .agents()
            .await
            .unwrap()
            .iter()
            .filter(|a| a.up)
            .count()
            == up
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "never saw {up} agents up: {:?}",
        client.agents().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_cancel_timeout_down_and_back() {
    let hub = format!("fleet{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        comms::connect_url(&url(&hub)).await.unwrap(),
        ServerConfig {
            state_dir: dir.path().join("server-state"),
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let a1 = agent(&hub, "agent_one", dir.path(), &["web"], "eu").await;
    let a2 = agent(&hub, "agent_two", dir.path(), &["web"], "us").await;
    let a3 = agent(&hub, "agent_three", dir.path(), &["db"], "eu").await;
    // The server made the fleet key in its state directory; the client signs with it.
    let mut client = Client::connect(
        comms::connect_url(&url(&hub)).await.unwrap(),
        "ctl",
        Duration::from_secs(10),
    )
    .await
    .unwrap()
    .with_key(FleetKey::from_file(&key_file(dir.path())).unwrap());
    wait_agents(&client, 3).await;
    let agents = client.agents().await.unwrap();
    assert!(agents
        .iter()
        .all(|a| a.facts.get("role").map(String::as_str) == Some("agent") && !a.id.is_empty()));

    // All, with output streamed back.
    let (results, output) = run(
        &mut client,
        Selector::All,
        &["sh", "-c", "echo hello-from-$0"],
        10_000,
    )
    .await;
    assert_eq!(results.len(), 3);
    assert!(
        results.iter().all(|r| r.outcome == Outcome::Ok),
        "{results:?}"
    );
    assert_eq!(output.matches("hello-from-sh").count(), 3, "{output}");

    // A group, a label, one agent by name.
    let (results, _) = run(
        &mut client,
        Selector::Group("web".into()),
        &["true"],
        10_000,
    )
    .await;
    assert_eq!(
        results.iter().map(|r| r.agent.as_str()).collect::<Vec<_>>(),
        ["n1:agent_one", "n1:agent_two"]
    );
    let (results, _) = run(
        &mut client,
        Selector::Label("zone".into(), "us".into()),
        &["true"],
        10_000,
    )
    .await;
    assert_eq!(results.len(), 1);
    let (results, _) = run(
        &mut client,
        Selector::Agent("agent_three".into()),
        &["sh", "-c", "exit 4"],
        10_000,
    )
    .await;
    assert_eq!(results[0].outcome, Outcome::Failed);
    assert_eq!(results[0].result.as_ref().unwrap().exit_code, Some(4));

    // A task past its timeout is killed and reported as such.
    let (results, _) = run(
        &mut client,
        Selector::Agent("agent_one".into()),
        &["sleep", "30"],
        300,
    )
    .await;
    assert_eq!(results[0].outcome, Outcome::Timeout);

    // Cancel a long task.
    let request = DispatchRequest {
        selector: Selector::Agent("agent_two".into()),
        job: Job {
            argv: vec!["sleep".into(), "30".into()],
            env: BTreeMap::new(),
            cwd: None,
            timeout_ms: 60_000,
            output_cap: 1024,
            secret_env: None,
        },
    };
    let accepted = client.dispatch(&request).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.cancel(&accepted.dispatch).await.unwrap();
    let cancelled = loop {
        match tokio::time::timeout(Duration::from_secs(10), client.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Result(r) if r.dispatch == accepted.dispatch => break r,
            _ => {}
        }
    };
    assert_eq!(cancelled.outcome, Outcome::Cancelled);

    // An agent that dies is reported down within its TTL (1 s), and unreachable.
    let id3 = a3.id().to_owned();
    drop(a3);
    wait_agents(&client, 2).await;
    let (results, _) = run(
        &mut client,
        Selector::Agent("agent_three".into()),
        &["true"],
        5_000,
    )
    .await;
    assert_eq!(results[0].outcome, Outcome::Unreachable);

    // It comes back with the same id.
    let a3 = agent(&hub, "agent_three", dir.path(), &["db"], "eu").await;
    assert_eq!(a3.id(), id3);
    wait_agents(&client, 3).await;

    // Recent results are kept and queryable, each with who asked for it.
    let history = client.results().await.unwrap();
    assert!(history.len() >= 7);
    for d in &history {
        let by = d.requester.as_deref().unwrap_or_default();
        assert!(by.ends_with(":ctl"), "requester {by:?}");
    }

    client.close().await.unwrap();
    for a in [a1, a2, a3] {
        a.shutdown().await.unwrap();
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_refuse_unsigned_tasks() {
    let hub = format!("rogue{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let a = agent(&hub, "agent_victim", dir.path(), &[], "eu").await;
    let (rogue, results) = result_collector(&hub, "mallory").await;
    let run = RunTask {
        task: "t1".into(),
        job: Job {
            argv: vec![
                "touch".into(),
                dir.path().join("pwned").display().to_string(),
            ],
            env: BTreeMap::new(),
            cwd: None,
            timeout_ms: 1000,
            output_cap: 10,
            secret_env: None,
        },
    };
    rogue
        .send(run.to_message(a.endpoint().address().clone()).unwrap())
        .await
        .unwrap();
    for _ in 0..50 {
        if !results.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = results.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].status, TaskStatus::Rejected);
    assert!(got[0]
        .error
        .as_deref()
        .unwrap_or("")
        .contains("not authorized"));
    assert!(!dir.path().join("pwned").exists());
    rogue.close().await.unwrap();
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_fleet_key_the_server_name_alone_runs_nothing() {
    // mallory takes the name `server` (no real server on this hub): the name counts for
    // nothing, only the fleet key stands between it and the agent.
    let hub = format!("keyed{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("fleet.key");
    std::fs::write(&key_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let config = AgentConfig {
        name: Some("agent_keyed".into()),
        state_dir: dir.path().join("agent_keyed"),
        key_file: Some(key_file.clone()),
        ttl_secs: 1,
        ..AgentConfig::default()
    };
    let a = Agent::start(comms::connect_url(&url(&hub)).await.unwrap(), config)
        .await
        .unwrap();
    let (mallory, results) = result_collector(&hub, "server").await;
    let run = |task: &str| {
        let marker = dir.path().join(task);
        RunTask {
            task: task.into(),
            job: Job {
                argv: vec!["touch".into(), marker.display().to_string()],
                env: BTreeMap::new(),
                cwd: None,
                timeout_ms: 5000,
                output_cap: 10,
                secret_env: None,
            },
        }
        .to_message(a.endpoint().address().clone())
        .unwrap()
    };
    let right = FleetKey::from_file(&key_file).unwrap();
    let wrong = FleetKey::new(vec![7u8; 32]).unwrap();
    let unsigned = run("unsigned");
    let mut forged = run("forged");
    wrong.sign(&mut forged);
    let mut altered = run("altered");
    right.sign(&mut altered);
    altered
        .params
        .insert("argv".into(), r#"["touch","/tmp/x"]"#.into());
    let mut signed = run("signed");
    right.sign(&mut signed);
    for m in [unsigned, forged, altered, signed] {
        mallory.send(m).await.unwrap();
    }
    for _ in 0..200 {
        if results.lock().unwrap().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got = results.lock().unwrap().clone();
    got.sort_by(|x, y| x.task.cmp(&y.task));
    let summary: Vec<(&str, TaskStatus)> =
        got.iter().map(|r| (r.task.as_str(), r.status)).collect();
    assert_eq!(
        summary,
        vec![
            ("altered", TaskStatus::Rejected),
            ("forged", TaskStatus::Rejected),
            ("signed", TaskStatus::Ok),
            ("unsigned", TaskStatus::Rejected),
        ]
    );
    for r in got.iter().filter(|r| r.status == TaskStatus::Rejected) {
        let e = r.error.as_deref().unwrap_or("");
        assert!(e.starts_with("not authorized: "), "{e}");
    }
    assert!(!dir.path().join("unsigned").exists());
    assert!(!dir.path().join("forged").exists());
    assert!(dir.path().join("signed").exists());
    mallory.close().await.unwrap();
    a.shutdown().await.unwrap();
}
