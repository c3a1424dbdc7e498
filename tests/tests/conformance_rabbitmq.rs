//! The conformance suite against the real RabbitMQ (cases 1–22, 25, 26). The fault cases (23, 24, 27)
//! restart the broker and live in `conformance_rabbitmq_faults.rs`, which must run alone: the
//! nextest group `rabbitmq` (`.config/nextest.toml`) runs every rabbitmq test serially.

use comms_tests::rabbitmq::RabbitBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_rabbitmq() {
    comms_tests::rabbitmq::ensure_running().expect("the broker is running");
    if std::env::var("COMMS_CONFORMANCE_ONLY").is_err() {
        let names: Vec<&str> = comms_conformance::case_names()
            .into_iter()
            .filter(|n| {
                !matches!(
                    *n,
                    "kill_and_restart" | "reconnect_state" | "pipelined_restart"
                )
            })
            .collect();
        std::env::set_var("COMMS_CONFORMANCE_ONLY", names.join(","));
    }
    let backend = RabbitBackend::new();
    let report = comms_conformance::run(&backend).await;
    match backend.cleanup().await {
        Ok(n) => println!("cleanup: {n} queues and exchanges deleted"),
        Err(e) => println!("cleanup failed: {e:#}"),
    }
    assert!(report.is_ok(), "\n{report}");
}
