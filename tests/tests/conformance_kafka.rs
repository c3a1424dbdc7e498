//! The conformance suite against Kafka: a real `tansu` broker (SQLite store), killed and
//! restarted for the fault cases.

use comms_tests::kafka::KafkaBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka() {
    comms_tests::kafka::init_logging();
    let backend = match KafkaBackend::start().await {
        Ok(b) => b,
        Err(e) => panic!("cannot start the Kafka broker: {e:#}"),
    };
    let report = comms_conformance::run(&backend).await;
    assert!(report.is_ok(), "\n{report}");
}
