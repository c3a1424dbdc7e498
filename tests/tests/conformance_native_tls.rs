//! The conformance suite against the native backend over TLS (`cds:` with mutual TLS): real
//! `commsd` processes with a TLS listener, transports from `comms::connect` (see
//! `comms_tests::native_tls`).

use comms_tests::native_tls::NativeTlsBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_over_tls() {
    let backend = NativeTlsBackend::new().expect("temp dir and certificates");
    let report = comms_conformance::run(&backend).await;
    eprintln!("{report}");
    assert!(report.is_ok(), "\n{report}");
}
