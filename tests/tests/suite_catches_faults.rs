//! The conformance suite must fail a backend that breaks a guarantee: each fault below breaks
//! one guarantee of DESIGN §3, and the cases that guard it must report FAIL.

use std::time::Duration;

use comms_conformance::{run_only, Verdict};
use comms_tests::faulty::{Fault, FaultyBackend};

async fn failing_cases(fault: Fault, cases: &[&str]) -> Vec<&'static str> {
    // A broken guarantee often shows as a wait that never ends: 10 s per case is plenty for the
    // memory backend, whose correct runs of these cases take well under a second each (except
    // backpressure, ~4 s).
    let report = run_only(&FaultyBackend(fault), cases, Duration::from_secs(10)).await;
    println!("{report}");
    report
        .cases
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Fail(_)))
        .map(|c| c.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_is_caught() {
    let failed = failing_cases(
        Fault::DropSome,
        &["instance_unicast", "pair_order", "close_flushes"],
    )
    .await;
    assert_eq!(failed, ["instance_unicast", "pair_order", "close_flushes"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordering_is_caught() {
    let failed = failing_cases(Fault::Reorder, &["pair_order", "many_senders"]).await;
    assert_eq!(failed, ["pair_order", "many_senders"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unavailable_report_is_caught() {
    let failed = failing_cases(Fault::NoReport, &["waiting_for_service"]).await;
    assert_eq!(failed, ["waiting_for_service"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_queue_is_caught() {
    let failed = failing_cases(Fault::LyingBound, &["backpressure"]).await;
    assert_eq!(failed, ["backpressure"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncounted_hops_are_caught() {
    let failed = failing_cases(Fault::NoHops, &["forward_keeps_origin", "hop_limit"]).await;
    assert_eq!(failed, ["forward_keeps_origin", "hop_limit"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_redelivery_is_caught() {
    // Handlers' retries run in place (no nack); a delivery is given back when its receiver
    // goes away with it unsettled, which case 14 does.
    let failed = failing_cases(
        Fault::NackDrops,
        &["redelivery_after_nack", "receiver_restart"],
    )
    .await;
    assert_eq!(failed, ["receiver_restart"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstamped_origin_is_caught() {
    let failed = failing_cases(Fault::NoStamp, &["instance_unicast"]).await;
    assert_eq!(failed, ["instance_unicast"]);
}
