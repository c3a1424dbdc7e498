//! The daemon's log, written to a file (as under systemd or `commsd 2>commsd.log`), is plain
//! text: no ANSI colour codes (they were written whatever the stream was).

use std::time::Duration;

use comms_test_support::{CommsdSpec, Stderr};

#[tokio::test]
async fn log_to_a_file_has_no_ansi_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("commsd.log");
    let mut daemon = CommsdSpec::find()
        .expect("the commsd binary")
        .unix_in_dir()
        .tcp_any()
        .env("RUST_LOG", "commsd=debug")
        .stderr(Stderr::File(log.clone()))
        .start()
        .await
        .expect("commsd starts");
    // Something worth logging at debug: a client connects and leaves.
    let tcp = daemon.listeners().tcp.expect("tcp listener");
    drop(tokio::net::TcpStream::connect(tcp).await.expect("connect"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.kill().await.expect("kill");
    let text = std::fs::read_to_string(&log).expect("read the log");
    assert!(text.contains("INFO"), "the daemon logged its start: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape in a log file: {text:?}"
    );
}
