//! `--quick` proves the harness end to end: it runs, prints a table, writes JSON, and the
//! memory, native, native-relay (three peered daemons) and tcp rows carry non-zero figures
//! (speed is not asserted). NATS and
//! RabbitMQ rows are added only when those services answer; a row that cannot run must say
//! why ("skipped: ...").

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `commsd` of this target dir and profile, built up to date (cargo builds only this
/// package's binaries for its tests).
fn commsd() -> PathBuf {
    comms_test_support::commsd_binary().unwrap_or_else(|e| panic!("{e}"))
}

fn answers(addr: &str) -> bool {
    let addr = addr.parse().expect("socket address");
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn rows<'a>(doc: &'a serde_json::Value, backend: &str) -> Vec<&'a serde_json::Value> {
    doc["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["backend"] == backend)
        .collect()
}

/// Run `comms-bench --quick ARGS --json FILE`; it must succeed. Its stdout, stderr and JSON.
fn quick_run(args: &[&str]) -> (String, String, serde_json::Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("quick.json");
    let out = Command::new(env!("CARGO_BIN_EXE_comms-bench"))
        .arg("--quick")
        .args(args)
        .arg("--json")
        .arg(&json)
        .env("COMMSD_BIN", commsd())
        .output()
        .expect("run comms-bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "comms-bench failed\n{stdout}\n{stderr}"
    );
    let doc = serde_json::from_str(&std::fs::read_to_string(Path::new(&json)).expect("json"))
        .expect("valid JSON");
    (stdout, stderr, doc)
}

#[test]
fn quick_run_produces_figures() {
    let mut only = vec!["memory", "native", "tcp", "native-relay"];
    if answers("127.0.0.1:4222") {
        only.push("nats");
    }
    if answers("127.0.0.1:5672") {
        only.extend(["rabbitmq", "raw-lapin"]);
    }
    let (stdout, stderr, doc) = quick_run(&["--only", &only.join(",")]);
    assert!(stdout.contains("| backend |"), "no table:\n{stdout}");
    assert!(stderr.contains("native 16 B"), "no progress:\n{stderr}");
    for backend in ["memory", "native", "native-relay", "tcp"] {
        let rows = rows(&doc, backend);
        assert!(!rows.is_empty(), "no {backend} rows");
        for r in rows {
            let o = &r["oneway"];
            assert!(o["msg_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
            assert!(o["received"].as_u64().unwrap_or(0) > 0, "{r}");
            assert!(r["rtt"]["p50_us"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
            assert!(r["rtt"]["count"].as_u64().unwrap_or(0) > 0, "{r}");
        }
    }
    for r in doc["rows"].as_array().expect("rows") {
        // Every row is either measured or says why not.
        assert!(
            !r["oneway"].is_null()
                || r["skipped"].is_string()
                || !r["notes"].as_array().expect("notes").is_empty(),
            "row neither measured nor explained: {r}"
        );
    }
    assert!(doc["ratios"].as_array().is_some_and(|r| !r.is_empty()));
}

/// `--window` (pipelined sends through `Endpoint::submit`, the references pipelined too):
/// every at-least-once row of memory, native, RabbitMQ and raw lapin receives all it sent.
/// (Named for RabbitMQ: it runs in the serial `rabbitmq` nextest group, as the broker's
/// fault tests restart it.)
#[test]
fn quick_pipelined_rabbitmq_memory_and_native_rows_receive_all_they_sent() {
    let (stdout, _, doc) = quick_run(&[
        "--window",
        "100",
        "--only",
        "memory,native,rabbitmq,raw-lapin",
    ]);
    assert!(
        stdout.contains("100 confirmations outstanding per sender"),
        "the run does not say it pipelined:\n{stdout}"
    );
    assert_eq!(doc["meta"]["window"], 100, "{}", doc["meta"]);
    for backend in ["memory", "native", "rabbitmq", "raw-lapin"] {
        let rows: Vec<_> = rows(&doc, backend)
            .into_iter()
            .filter(|r| r["mode"] == "at-least-once")
            .collect();
        assert_eq!(rows.len(), 2, "{backend}: one row per payload");
        for r in rows {
            let o = &r["oneway"];
            let (sent, received) = (o["sent"].as_u64(), o["received"].as_u64());
            assert!(sent.unwrap_or(0) > 0, "{r}");
            assert_eq!(sent, received, "{backend}: {r}");
        }
    }
}
