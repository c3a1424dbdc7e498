//! `commsctl` is a short-lived client: on Kafka its endpoint is ephemeral (no service topic;
//! its instance topic is deleted on close), so 20 calls leave the broker's topics as they
//! were.

use std::time::Duration;

use comms_test_support::unique_name;
use comms_tests::fleet::Fleet;
use comms_tests::kafka::Tansu;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

fn topics(bootstrap: &str, ns: &str) -> Vec<String> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata client");
    let md = client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let prefix = format!("comms.{ns}.");
    let mut names: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_commsctl_calls_leave_no_topic_behind() {
    let broker = Tansu::start().await.expect("start tansu");
    let ns = unique_name("ctl_eph");
    let fleet = Fleet::start(&format!("url = \"{}\"\nnamespace = \"{ns}\"", broker.url()));
    let started = std::time::Instant::now();
    while fleet.ctl(&["agents"]).await.0 != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bootstrap = broker.url().trim_start_matches("kafka://").to_owned();
    let before = topics(&bootstrap, &ns);
    assert!(
        before.iter().any(|t| t.contains(".svc.server")),
        "the server's topic is listed: {before:?}"
    );
    for _ in 0..20 {
        let (code, _) = fleet.ctl(&["agents"]).await;
        assert_eq!(code, 0, "commsctl agents");
    }
    let mut after = topics(&bootstrap, &ns);
    for _ in 0..50 {
        if after == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = topics(&bootstrap, &ns);
    }
    assert_eq!(after, before, "topics left behind by commsctl");
    drop(fleet);
    drop(broker);
}
