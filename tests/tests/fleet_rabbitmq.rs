//! The fleet scenario over RabbitMQ: only the URL (and a fresh namespace) differ from the
//! other backends' runs.

use comms_test_support::unique_name;
use comms_tests::fleet::scenario;
use comms_tests::rabbitmq::{delete_namespaces, url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rabbitmq() {
    let ns = unique_name("fleet");
    scenario(&format!("url = \"{}\"\nnamespace = \"{ns}\"", url())).await;
    delete_namespaces(&[ns])
        .await
        .expect("clean up the namespace's queues");
}
