//! Conformance fault cases 23 (kill and restart, 10,000 messages, broker restarted twice),
//! 24 (reconnect state) and 27 (the same with pipelined senders) against the real RabbitMQ. They restart the shared broker: run alone
//! (nextest group `rabbitmq`, max-threads 1). A guard starts the broker again whatever happens.

use comms_tests::rabbitmq::{BrokerGuard, RabbitBackend, FAULTS_QUEUE_BOUND};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_rabbitmq_faults() {
    let _guard = BrokerGuard;
    comms_tests::kafka::init_logging();
    comms_tests::rabbitmq::ensure_running().expect("the broker is running");
    if std::env::var("COMMS_CONFORMANCE_ONLY").is_err() {
        std::env::set_var(
            "COMMS_CONFORMANCE_ONLY",
            "kill_and_restart,reconnect_state,pipelined_restart",
        );
    }
    let backend = RabbitBackend::with_queue_bound(FAULTS_QUEUE_BOUND);
    let report = comms_conformance::run(&backend).await;
    comms_tests::rabbitmq::ensure_running().expect("the broker is running again");
    match backend.cleanup().await {
        Ok(n) => println!("cleanup: {n} queues and exchanges deleted"),
        Err(e) => println!("cleanup failed: {e:#}"),
    }
    assert!(report.is_ok(), "\n{report}");
}
