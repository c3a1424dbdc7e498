//! The fleet scenario over Kafka (a tansu broker started for the test): only the URL and a
//! fresh namespace differ from the other backends' runs.

use comms_test_support::unique_name;
use comms_tests::fleet::scenario;
use comms_tests::kafka::Tansu;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_kafka() {
    let broker = Tansu::start().await.expect("start tansu");
    let ns = unique_name("fleet");
    scenario(&format!("url = \"{}\"\nnamespace = \"{ns}\"", broker.url())).await;
    drop(broker);
}
