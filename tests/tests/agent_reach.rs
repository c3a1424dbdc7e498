//! An agent logs "agent up" only once it has really reached its transport (issue 15, point 4):
//! started before its daemon, it says it is waiting, and "up" comes once the daemon is there.
//! Real processes: the `agent` binary and a `commsd`.

use std::process::{Command, Stdio};
use std::time::Duration;

use comms_test_support::binary;

fn log_text(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_says_up_only_once_it_reached_its_daemon() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("d.sock");
    // The node named as the test daemon is (a daemon named like the host needs no `node=`).
    let url = format!(
        "cd://{}?node={}&retry=0.2,0.5",
        socket.display(),
        comms_tests::native::NODE
    );
    let log = dir.path().join("agent.log");
    let mut agent = Command::new(binary("agent", "agent").expect("agent binary"))
        .args(["--url", &url, "--insecure", "--state-dir"])
        .arg(dir.path().join("state"))
        .env_remove("COMMS_URL")
        .env("RUST_LOG", "info")
        // Its log goes to stdout; errors to stderr: both into the file.
        .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("log"),
        ))
        .spawn()
        .expect("agent runs");
    // No daemon yet: the agent waits, and says so, but is not "up".
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !log_text(&log).contains("waiting to reach its transport") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no waiting line:\n{}",
            log_text(&log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !log_text(&log).contains("agent up"),
        "the agent said up before any daemon ran:\n{}",
        log_text(&log)
    );
    // The daemon comes: "agent up" follows within seconds.
    let _daemon = comms_tests::native::CommsdProcess::start(&socket)
        .await
        .expect("commsd");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !log_text(&log).contains("agent up") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no \"agent up\" within 15 s of the daemon's start:\n{}",
            log_text(&log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = agent.kill();
    let _ = agent.wait();
}
