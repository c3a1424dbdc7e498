//! The conformance suite against a **cluster** of real `commsd` processes: per namespace a
//! ring of four daemons, endpoints on three of them (`comms_tests::native_cluster`), so
//! every case crosses peer links; the fault cases SIGKILL an intermediate daemon.

use comms_tests::native_cluster::NativeClusterBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_cluster() {
    let backend = NativeClusterBackend::new().expect("temp dir");
    let report = comms_conformance::run(&backend).await;
    assert!(report.is_ok(), "\n{report}");
}
