//! The server's life cycle with real processes (issue 15, points 3, 4 and 7): results survive a
//! SIGKILL and restart of the server mid-run; SIGTERM with a dispatch in flight exits within
//! 5 s and frees the port at once; agents are listed again within 5 s of a restart; a second
//! server on the same RabbitMQ namespace refuses to start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use comms_test_support::{free_port, unique_name};
use comms_tests::fleet::{accepted_dispatch, Fleet};
use serde_json::Value;

fn up(agents: &[Value]) -> usize {
    agents
        .iter()
        .filter(|a| a["up"] == Value::Bool(true))
        .count()
}

/// A native fleet on a TCP port (the embedded daemon's), default reconnect schedule.
fn tcp_fleet() -> (Fleet, u16) {
    let port = free_port().unwrap();
    let fleet = Fleet::start(&format!("url = \"cd://127.0.0.1:{port}\""));
    (fleet, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_survive_a_server_kill_and_agents_return_quickly() {
    let (mut fleet, _port) = tcp_fleet();
    fleet.start_agent(1, "web");
    fleet.start_agent(2, "web");
    fleet
        .wait_agents("two agents up", Duration::from_secs(60), |a| up(a) == 2)
        .await;
    let (_run, mut out) = fleet.ctl_spawn(&[
        "run",
        "--all",
        "--timeout",
        "60",
        "--",
        "sh",
        "-c",
        "sleep 4; echo survived",
    ]);
    let dispatch = accepted_dispatch(&mut out).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet.kill_server().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = Instant::now();
    fleet.start_server();
    let back = fleet
        .wait_agents(
            "agents back after the restart",
            Duration::from_secs(30),
            |a| up(a) == 2,
        )
        .await;
    assert!(
        restarted.elapsed() < Duration::from_secs(5),
        "agents listed again only after {back:?} (restart to listed: {:?})",
        restarted.elapsed()
    );
    // The agents finish after the restart; the new server keeps their results.
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        let (code, lines) = fleet.ctl(&["results"]).await;
        let found = (code == 0)
            .then(|| {
                lines
                    .iter()
                    .flat_map(|l| l.as_array().cloned().unwrap_or_else(|| vec![l.clone()]))
                    .find(|r| r["dispatch"] == dispatch.as_str())
            })
            .flatten();
        if let Some(r) = found.filter(|r| r["results"].as_array().is_some_and(|v| v.len() == 2)) {
            break r;
        }
        if Instant::now() > deadline {
            fleet.dump_logs();
            panic!("dispatch {dispatch} without its 2 results after the restart: {lines:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for r in record["results"].as_array().unwrap() {
        assert_eq!(r["outcome"], "ok", "{record}");
        assert!(
            r["result"]["stdout_tail"]
                .as_str()
                .unwrap_or("")
                .contains("survived"),
            "{record}"
        );
    }
    // And once more after another restart: the history is on disk.
    fleet.kill_server().await;
    fleet.start_server();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, lines) = fleet.ctl(&["results"]).await;
        if code == 0 && format!("{lines:?}").contains(&dispatch) {
            break;
        }
        assert!(Instant::now() < deadline, "history lost: {lines:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_dispatch_in_flight_exits_quickly_and_frees_the_port() {
    let (mut fleet, port) = tcp_fleet();
    fleet.start_agent(1, "web");
    fleet
        .wait_agents("agent up", Duration::from_secs(60), |a| up(a) == 1)
        .await;
    let (_run, mut out) =
        fleet.ctl_spawn(&["run", "--all", "--timeout", "60", "--", "sleep", "30"]);
    let _accepted = out.next_line().await.unwrap().expect("accepted line");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, took) = fleet
        .term_server(Duration::from_secs(40))
        .await
        .expect("server still running 40 s after SIGTERM");
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM to exit took {took:?}"
    );
    assert_eq!(code, Some(0), "exit code after SIGTERM");
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the server's port is free at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_rabbitmq_namespace_refuses_to_start() {
    use comms_tests::rabbitmq::{delete_namespaces, url};
    let ns = unique_name("single");
    let fleet = Fleet::start(&format!("url = \"{}\"\nnamespace = \"{ns}\"", url()));
    fleet
        .wait_agents("the server answers", Duration::from_secs(60), |_| true)
        .await;
    // `agents` answered (even empty) only if the server runs: wait for a real answer.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet.ctl(&["agents"]).await.0 != 0 {
        assert!(Instant::now() < deadline, "first server never answered");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let second_state = fleet.dir.path().join("second-state");
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(comms_tests::binary("server", "server"))
            .arg("--config")
            .arg(fleet.config())
            .arg("--state-dir")
            .arg(&second_state)
            .env("COMMS_FLEET_KEY_FILE", fleet.key_file())
            .env("RUST_LOG", "info")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the second server must not keep running")
    .expect("run the second server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another server is already running on this namespace")
            && stderr.contains(":server"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("server up"));
    assert!(started.elapsed() < Duration::from_secs(15));
    drop(fleet);
    delete_namespaces(&[ns])
        .await
        .expect("clean up the namespace");
}
