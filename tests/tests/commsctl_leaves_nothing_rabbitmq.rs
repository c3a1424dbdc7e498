//! `commsctl` is a short-lived client: on RabbitMQ its endpoint is ephemeral (its queues are
//! deleted when it closes), so 20 calls leave the broker's queue list as it was.

use std::time::Duration;

use comms_test_support::unique_name;
use comms_tests::fleet::Fleet;
use comms_tests::rabbitmq::{delete_namespaces, namespace_objects, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_commsctl_calls_leave_no_queue_behind() {
    let ns = unique_name("ctl_eph");
    let fleet = Fleet::start(&format!("url = \"{}\"\nnamespace = \"{ns}\"", url()));
    fleet.wait_server(Duration::from_secs(60)).await;
    let queues = || namespace_objects("list_queues", std::slice::from_ref(&ns)).expect("list");
    let before = queues();
    assert!(
        before.iter().any(|q| q.contains(".svc.server")),
        "the server's queue is listed: {before:?}"
    );
    for _ in 0..20 {
        let (code, _, stderr) = fleet.ctl_keyed(&["status"], true).await;
        assert_eq!(code, 0, "commsctl status: {stderr}");
    }
    let mut after = queues();
    for _ in 0..50 {
        if after == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = queues();
    }
    assert_eq!(after, before, "queues left behind by commsctl");
    drop(fleet);
    delete_namespaces(&[ns]).await.expect("clean up");
}
