//! `comms-load` at small scale proves the load harness works end to end (the full figures,
//! 10,000 connections and 1,000 agents, are run by hand: docs/HARDENING.md). It asserts what
//! the tool reports, not speed.

use std::path::PathBuf;
use std::process::Command;

/// `commsd` of this target dir and profile, built up to date (cargo builds only this
/// package's binaries for its tests).
fn commsd() -> PathBuf {
    comms_test_support::commsd_binary().unwrap_or_else(|e| panic!("{e}"))
}

fn load(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_comms-load"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .env("COMMSD_BIN", commsd())
        .output()
        .expect("run comms-load");
    assert!(
        out.status.success(),
        "comms-load {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON")
}

#[test]
fn conns_holds_every_connection_and_still_routes() {
    let r = load(&["conns", "--count", "500", "--concurrency", "64"]);
    assert_eq!(r["connections"], 500);
    assert_eq!(r["listed_services"], 500);
    assert!(
        r["daemon_kib_per_connection"]
            .as_f64()
            .expect("per connection")
            > 0.0
    );
    assert!(r["first_to_last_ping_ms"].as_f64().is_some());
}

#[test]
fn fleet_dispatch_reaches_every_agent() {
    let r = load(&["fleet", "--agents", "40", "--ttl-secs", "2"]);
    assert_eq!(r["agents"], 40);
    assert_eq!(r["dispatch_targets"], 40);
    assert_eq!(r["results_ok"], 40);
    assert_eq!(r["still_up_after_2_ttl"], 40);
    assert_eq!(r["agents_listed_by_client"], 40);
}
