//! The conformance suite against the native backend: real `commsd` processes (one per
//! namespace, see `comms_tests::native`), the native transport from `comms::connect`.

use comms_tests::native::NativeBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native() {
    let backend = NativeBackend::new().expect("temp dir");
    let report = comms_conformance::run(&backend).await;
    assert!(report.is_ok(), "\n{report}");
}
