//! `commsctl dlq list | show | replay | purge` as an operator runs it (issue 17, point 3),
//! against letters a real service dead-lettered: on native (a real `commsd`; letters are files
//! in the state directory the service and commsctl share), on the real RabbitMQ (the queue
//! `comms.<ns>.dead-letters`) and on a Kafka-protocol broker (tansu; the topic
//! `comms.<ns>.dead-letters`).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use comms::{Config, Endpoint, HandlerError, Message, Outcome, RetryPolicy};
use comms_conformance::Recorder;
use comms_test_support::binary;

fn commsctl(config: &Path, state: &Path, args: &[&str]) -> Output {
    Command::new(binary("server", "commsctl").expect("commsctl"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("COMMS_URL")
        .env("COMMS_STATE_DIR", state)
        .env_remove("RUST_LOG")
        .output()
        .expect("commsctl runs")
}

/// `commsctl --json dlq list --service SERVICE`, one JSON object per line.
fn listed(config: &Path, state: &Path, service: &str) -> Vec<serde_json::Value> {
    let out = ok(
        &commsctl(
            config,
            state,
            &["--json", "dlq", "list", "--service", service],
        ),
        "dlq list",
    );
    out.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn scenario(url: &str, namespace: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let config_file = dir.path().join("comms.toml");
    std::fs::write(
        &config_file,
        format!(
            "[transport]\nurl = \"{url}\"\nnamespace = \"{namespace}\"\nstate_dir = \"{}\"\n",
            state.display()
        ),
    )
    .expect("config");
    let config = Config::load(&config_file).expect("the config file");
    let service = comms_test_support::names::unique_name("dlqsvc");
    let fixed = Arc::new(AtomicBool::new(false));
    let rec = Recorder::new();
    let b = {
        let (fixed, rec) = (fixed.clone(), rec.clone());
        Endpoint::builder(comms::connect(&config).await.expect("connect"), &service)
            .retry(RetryPolicy::never())
            .handle("WORK", move |req| {
                let (fixed, rec) = (fixed.clone(), rec.clone());
                async move {
                    if !fixed.load(Ordering::SeqCst) {
                        return Err(HandlerError::Retry("the database is down".into()));
                    }
                    rec.push(req.into_message());
                    Ok(Outcome::Done)
                }
            })
            .start()
            .await
            .expect("service")
    };
    let a = Endpoint::builder(
        comms::connect(&config).await.expect("connect"),
        comms_test_support::names::unique_name("dlqsender"),
    )
    .start()
    .await
    .expect("sender");
    let mut ids = Vec::new();
    for order in ["17", "18"] {
        let m = Message::new("WORK", b.address().clone())
            .expect("message")
            .with_param("order", order);
        ids.push(m.id().to_string());
        a.send(m).await.expect("send");
    }
    // Both given up, in the place.
    let place = b.dead_letters().expect("place");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while place
        .list(1000)
        .await
        .expect("list")
        .iter()
        .filter(|l| ids.contains(&l.id))
        .count()
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the letters never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let lines = listed(&config_file, &state, &service);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, id) in lines.iter().zip(&ids) {
        assert_eq!(line["event"], "dead_letter");
        assert_eq!(line["id"], id.as_str());
        assert_eq!(line["command"], "WORK");
        assert_eq!(line["attempts"], 1);
        assert!(
            line["reason"]
                .as_str()
                .expect("a reason")
                .contains("the database is down"),
            "{line}"
        );
        assert_eq!(line["from"], a.address().to_string());
    }
    let shown = ok(
        &commsctl(&config_file, &state, &["dlq", "show", &ids[0]]),
        "dlq show",
    );
    assert!(
        shown.contains("\"order\": \"17\"") && shown.contains("the database is down"),
        "{shown}"
    );

    // The database is back: replay the first; the service handles it (once).
    fixed.store(true, Ordering::SeqCst);
    let replayed = ok(
        &commsctl(&config_file, &state, &["dlq", "replay", &ids[0]]),
        "dlq replay",
    );
    assert!(
        replayed.contains(&format!("replayed {}", ids[0])),
        "{replayed}"
    );
    rec.wait_distinct(1, Duration::from_secs(30))
        .await
        .expect("the replayed message handled");
    assert_eq!(rec.messages()[0].param("order"), Some("17"));

    let purged = ok(
        &commsctl(&config_file, &state, &["dlq", "purge", &ids[1]]),
        "dlq purge",
    );
    assert!(purged.contains("purged 1"), "{purged}");
    let left = listed(&config_file, &state, &service);
    assert!(left.is_empty(), "{left:?}");
    let gone = commsctl(&config_file, &state, &["dlq", "show", &ids[0]]);
    assert_eq!(gone.status.code(), Some(2), "an unknown letter: {gone:?}");
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("no dead letter"),
        "{gone:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rec.count(), 1, "replayed once, handled once");
    a.close().await.expect("close");
    b.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_native() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = comms_tests::native::CommsdProcess::start(&dir.path().join("d.sock"))
        .await
        .expect("commsd");
    scenario(&daemon.url(), "default").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_rabbitmq() {
    comms_tests::rabbitmq::ensure_running().expect("the broker is running");
    let ns = comms_test_support::names::unique_name("dlq");
    scenario(&comms_test_support::rabbitmq::url(), &ns).await;
    comms_tests::rabbitmq::delete_namespaces(&[ns])
        .await
        .expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_kafka() {
    let broker = comms_test_support::tansu::Tansu::start()
        .await
        .expect("start tansu");
    let ns = comms_test_support::names::unique_name("dlq");
    scenario(&broker.url(), &ns).await;
}
