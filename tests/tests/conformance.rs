//! The conformance suite against every backend built so far.

use comms_tests::MemoryBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    let report = comms_conformance::run(&MemoryBackend).await;
    assert!(report.is_ok(), "\n{report}");
}
