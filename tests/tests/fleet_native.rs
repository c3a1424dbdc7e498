//! The fleet scenario over the native backend: `server` embeds commsd on a Unix socket; the
//! agents and commsctl connect to it. Only the URL differs from the other backends' runs.

use comms_tests::fleet::scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_native() {
    scenario("url = \"cd://{dir}/commsd.sock?retry=0.1,0.2,0.5\"").await;
}
