//! The operator's HTTP endpoint (`--http`) of a running fleet, scraped as Prometheus would and
//! parsed by the Prometheus project's own parser (`comms_tests::metrics`): the server (with
//! its embedded daemon and its transport), an agent, and a standalone `commsd`. The numbers
//! asserted are what the fleet did: agents up and down, dispatches and their outcomes, task
//! durations, lines the daemon routed, messages each transport sent and had acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test body: failures should be loud

use std::time::{Duration, Instant};

use comms_test_support::{CommsdSpec, LineClient};
use comms_tests::fleet::Fleet;
use comms_tests::metrics::{logged_http_addr, scrape};

const LOG_WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_fleet_exposes_its_metrics_health_and_readiness() {
    let mut fleet = Fleet::new("url = \"cd://{dir}/commsd.sock?retry=0.1,0.2,0.5\"");
    fleet.start_server_with(&["--http", "127.0.0.1:0"]);
    fleet.wait_server(Duration::from_secs(30)).await;
    fleet.start_agent_with(1, "web", &["--http", "127.0.0.1:0"]);
    fleet.start_agent(2, "web");
    fleet
        .wait_agents("two agents up", Duration::from_secs(30), |a| {
            a.iter().filter(|a| a["up"] == true).count() == 2
        })
        .await;
    let (code, lines) = fleet
        .ctl(&["run", "--all", "--", "sh", "-c", "echo hi"])
        .await;
    assert_eq!(code, 0, "run --all: {lines:?}");
    let (code, lines) = fleet
        .ctl(&["run", "--all", "--", "sh", "-c", "sleep 0.2; exit 3"])
        .await;
    assert_eq!(code, 1, "a failing run: {lines:?}");

    let server = scrape(logged_http_addr(&fleet.log("server"), LOG_WAIT)).unwrap();
    assert_eq!(server.json["healthz"][0], 200, "{}", server.json["healthz"]);
    assert_eq!(server.ready_status(), 200, "{}", server.json["readyz"]);
    assert!(
        server.json["content_type"]
            .as_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{}",
        server.json["content_type"]
    );
    // The server's own.
    assert_eq!(server.must("comms_server_agents", &[("state", "up")]), 2.0);
    assert_eq!(
        server.must("comms_server_agents", &[("state", "down")]),
        0.0
    );
    assert_eq!(server.must("comms_server_dispatches_total", &[]), 2.0);
    assert_eq!(server.must("comms_server_dispatches_running", &[]), 0.0);
    let outcome = |o| server.must("comms_server_target_outcomes_total", &[("outcome", o)]);
    assert_eq!((outcome("ok"), outcome("failed")), (2.0, 2.0));
    assert_eq!(
        server.must("comms_server_task_duration_seconds_count", &[]),
        4.0
    );
    let slow = server.must("comms_server_task_duration_seconds_sum", &[]);
    assert!(slow >= 0.4, "two tasks slept 0.2 s each: sum {slow}");
    // The embedded daemon's: the server, two agents and the commsctl calls went through it.
    assert!(server.must("commsd_connections", &[("kind", "unix")]) >= 3.0);
    assert!(server.must("commsd_services", &[]) >= 3.0);
    assert!(server.must("commsd_lines_delivered_total", &[]) >= 10.0);
    assert_eq!(
        server.must("commsd_lines_dropped_total", &[("reason", "invalid")]),
        0.0
    );
    assert!(server.value("commsd_queue_bytes", &[]).is_some());
    // The server's transport: it sent RUNs and replies, each acknowledged.
    let sent = server.must("comms_transport_sent_total", &[("backend", "native")]);
    let acked = server.must(
        "comms_transport_acknowledged_total",
        &[("backend", "native")],
    );
    assert!(sent >= 6.0, "the server sent {sent}");
    assert!(acked >= sent - 1.0, "sent {sent}, acknowledged {acked}");
    assert_eq!(
        server.must("comms_transport_failed_total", &[("backend", "native")]),
        0.0
    );

    let agent = scrape(logged_http_addr(&fleet.log("agent_1"), LOG_WAIT)).unwrap();
    assert_eq!(agent.ready_status(), 200, "{}", agent.json["readyz"]);
    assert_eq!(agent.must("comms_agent_tasks_running", &[]), 0.0);
    // Results and output chunks of two tasks, heartbeats.
    assert!(
        agent.must(
            "comms_transport_acknowledged_total",
            &[("backend", "native")]
        ) >= 2.0
    );

    // An agent killed turns down within its TTL (1 s here) on the server's gauge.
    fleet.kill_agent(2).await;
    let started = Instant::now();
    let server_addr = logged_http_addr(&fleet.log("server"), LOG_WAIT);
    loop {
        let now = scrape(server_addr).unwrap();
        if now.must("comms_server_agents", &[("state", "down")]) == 1.0 {
            assert_eq!(now.must("comms_server_agents", &[("state", "up")]), 1.0);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "agent_2 still not down: {}",
            now.json
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn commsd_serves_metrics_and_counts_what_it_routes() {
    let daemon = CommsdSpec::find()
        .unwrap()
        .name("metricsnode")
        .unix_only_in_dir()
        .args(["--http", "127.0.0.1:0"])
        .start()
        .await
        .unwrap();
    let http = daemon
        .listeners()
        .http
        .expect("commsd announced its http listener");
    let before = scrape(http).unwrap();
    assert_eq!(before.ready_status(), 200);
    assert_eq!(before.must("commsd_services", &[]), 0.0);
    assert_eq!(before.must("commsd_connections", &[("kind", "unix")]), 0.0);
    // One service registers; a line for it arrives; an unparseable line is refused.
    let socket = daemon.listeners().unix.clone().expect("unix socket");
    let mut svc = LineClient::unix(&socket).await.unwrap();
    svc.register("probe").await.unwrap();
    let mut other = LineClient::unix(&socket).await.unwrap();
    other.register("other").await.unwrap();
    other.send("probe/HELLO").await.unwrap();
    svc.next_matching(|l| l.contains("probe/HELLO"))
        .await
        .unwrap();
    other.send("%%% not a line").await.unwrap();
    other
        .next_matching(|l| l.contains("INVALID"))
        .await
        .unwrap();
    let after = scrape(http).unwrap();
    assert_eq!(after.must("commsd_services", &[]), 2.0);
    assert_eq!(after.must("commsd_connections", &[("kind", "unix")]), 2.0);
    assert!(after.must("commsd_lines_delivered_total", &[]) >= 1.0);
    assert_eq!(
        after.must("commsd_lines_dropped_total", &[("reason", "invalid")]),
        1.0
    );
    assert_eq!(after.must("commsd_connections_accepted_total", &[]), 2.0);
}
