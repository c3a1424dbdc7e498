//! `commsctl` is a short-lived client: on Kafka its endpoint is ephemeral, so it creates no
//! topic of its own (no `comms.{ns}.svc.commsctl_{pid}`, no `comms.{ns}.inst.{node}.commsctl_{pid}`):
//! its replies come on the namespace's shared `comms.{ns}.replies` topic (see docs/DESIGN.md
//! "Ephemeral endpoints"). On the old code each call left its instance topic.

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
async fn twenty_commsctl_calls_leave_no_topic() {
    comms_tests::python::ensure_module("confluent_kafka", "confluent-kafka")
        .expect("the confluent-kafka Python module");
    let broker = Tansu::start().await.expect("start tansu");
    let ns = unique_name("ctl_eph");
    let mut fleet = Fleet::start(&format!("url = \"{}\"\nnamespace = \"{ns}\"", broker.url()));
    fleet.wait_server(Duration::from_secs(60)).await;
    fleet.start_agent(0, "web");
    fleet
        .wait_agents("the agent up", Duration::from_secs(60), |a| a.len() == 1)
        .await;
    let before = topics(&broker.bootstrap(), &ns);
    assert!(
        before.contains(&format!("comms.{ns}.replies")),
        "the server made sure the shared replies topic exists: {before:?}"
    );
    for _ in 0..20 {
        let (code, _, stderr) = fleet.ctl_keyed(&["status"], true).await;
        assert_eq!(code, 0, "commsctl status: {stderr}");
    }
    // A call that gets many messages from the server: `run` (its events, then its summary).
    let (code, _, stderr) = fleet.ctl_keyed(&["run", "--all", "--", "true"], true).await;
    assert_eq!(code, 0, "commsctl run: {stderr}");
    let after = topics(&broker.bootstrap(), &ns);
    assert_eq!(
        before, after,
        "21 commsctl calls created no topic (no instance or service topic of their own)"
    );
    drop(fleet);
    drop(broker);
}
