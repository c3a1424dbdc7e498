//! The conformance suite against Kafka: a real `tansu` broker (SQLite store), killed and
//! restarted for the fault cases.
//!
//! One test per group of cases, each against a broker of its own: on the one broker that had
//! served every case before them, the cases that time their receivers failed in full runs
//! (26 `hung_handler`: 37-200 of 1,000 handled in 5 s; 27 `pipelined_restart`: 0 of 2,000
//! handled in 120 s after cases 23 and 24 had restarted it; once 23 itself, its consumer group
//! stalled after a restart), while each passes on a fresh broker. Why a long-lived tansu
//! stalls is not diagnosed (an open defect). Every test here runs alone and may be retried,
//! each retry reported FLAKY (`.config/nextest.toml`).

use std::time::Duration;

use comms_tests::kafka::KafkaBackend;

/// Cases that run on a broker of their own, each group in its own test below.
const FAULTS: [&str; 2] = ["kill_and_restart", "reconnect_state"];
const PIPELINED: &str = "pipelined_restart";
const HUNG: &str = "hung_handler";

async fn backend() -> KafkaBackend {
    comms_tests::kafka::init_logging();
    KafkaBackend::started().await
}

async fn run_on_a_fresh_broker(cases: &[&str]) {
    let backend = backend().await;
    let report = comms_conformance::run_only(&backend, cases, Duration::from_secs(300)).await;
    assert!(report.is_ok(), "\n{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka() {
    if std::env::var("COMMS_CONFORMANCE_ONLY").is_err() {
        let names: Vec<&str> = comms_conformance::case_names()
            .into_iter()
            .filter(|n| !FAULTS.contains(n) && *n != PIPELINED && *n != HUNG)
            .collect();
        std::env::set_var("COMMS_CONFORMANCE_ONLY", names.join(","));
    }
    let backend = backend().await;
    let report = comms_conformance::run(&backend).await;
    assert!(report.is_ok(), "\n{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_faults_on_a_fresh_broker() {
    run_on_a_fresh_broker(&FAULTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_pipelined_restart_on_a_fresh_broker() {
    run_on_a_fresh_broker(&[PIPELINED]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_hung_handler_on_a_fresh_broker() {
    run_on_a_fresh_broker(&[HUNG]).await;
}
