//! `commsctl` is a short-lived client: on Kafka its endpoint is ephemeral, so it creates no
//! service topic (`comms.{ns}.svc.commsctl_{pid}`) and no service consumer group. Its instance
//! topic stays (comms deletes no topic; see docs/DESIGN.md "Ephemeral endpoints").

use std::time::Duration;

use comms_test_support::unique_name;
use comms_tests::fleet::Fleet;
use comms_tests::kafka::Tansu;

/// The broker's topics of namespace `ns`, sorted, as another Kafka client (the Python
/// `confluent-kafka` client) lists them.
fn topics(bootstrap: &str, ns: &str) -> Vec<String> {
    let script = "import sys\nfrom confluent_kafka.admin import AdminClient\n\
        a = AdminClient({'bootstrap.servers': sys.argv[1]})\n\
        print('\\n'.join(a.list_topics(timeout=10).topics))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, bootstrap])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "listing topics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("comms.{ns}.");
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_commsctl_calls_create_no_service_topic() {
    comms_tests::python::ensure_module("confluent_kafka", "confluent-kafka")
        .expect("the confluent-kafka Python module");
    let broker = Tansu::start().await.expect("start tansu");
    let ns = unique_name("ctl_eph");
    let fleet = Fleet::start(&format!("url = \"{}\"\nnamespace = \"{ns}\"", broker.url()));
    fleet.wait_server(Duration::from_secs(60)).await;
    for _ in 0..20 {
        let (code, _, stderr) = fleet.ctl_keyed(&["status"], true).await;
        assert_eq!(code, 0, "commsctl status: {stderr}");
    }
    let all = topics(&broker.bootstrap(), &ns);
    let service = format!("comms.{ns}.svc.");
    let services: Vec<&String> = all.iter().filter(|t| t.starts_with(&service)).collect();
    assert_eq!(
        services,
        [&format!("comms.{ns}.svc.server")],
        "service topics (only the server's; none for commsctl or the server's start-up probe): {all:?}"
    );
    drop(fleet);
    drop(broker);
}
