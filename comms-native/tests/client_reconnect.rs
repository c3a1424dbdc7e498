//! The permanent client's state machine against a real `commsd`: waiting for the daemon,
//! reconnecting after SIGKILL with the declared commands restored, retrying a refused
//! (duplicate) REGISTER, and UNREGISTER on close.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod client_util;

use std::time::Duration;

use client_util::{Commsd, Raw, WAIT};
use comms_native::client::{Client, ClientConfig, ConnectionState};

fn config(url: &str, service: &str) -> ClientConfig {
    ClientConfig::from_url(url, service)
        .unwrap()
        .with_commands(["HELLO"])
}

#[tokio::test]
async fn client_waits_for_the_daemon_then_registers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("d.sock");
    let url = format!("cd://{}?retry=0.05", socket.display());
    let (client, _incoming) = Client::connect(config(&url, "early"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(client.state(), ConnectionState::Disconnected);
    assert!(client
        .send(cd_wire::WireMessage::new("X").with_service("y"))
        .await
        .is_err_and(|e| e.is_retryable()));
    let _daemon = Commsd::start(&socket, "late_node").await;
    let state = client.wait_connected(WAIT).await;
    assert_eq!(
        state,
        ConnectionState::Connected {
            node: "late_node".into(),
            session: 1
        }
    );
    client.close(WAIT).await.unwrap();
    assert_eq!(client.state(), ConnectionState::Closed);
}

#[tokio::test]
async fn reconnects_after_sigkill_and_restores_commands() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("d.sock");
    let mut daemon = Commsd::start(&socket, "n1").await;
    let (client, mut incoming) = Client::connect(config(&daemon.url(), "listener"));
    assert!(client.wait_connected(WAIT).await.is_connected());

    daemon.kill().await;
    let mut watch = client.watch();
    tokio::time::timeout(WAIT, watch.wait_for(|s| !s.is_connected()))
        .await
        .unwrap()
        .unwrap();
    let _daemon = Commsd::start(&socket, "n1").await;
    tokio::time::timeout(
        WAIT,
        watch.wait_for(|s| matches!(s, ConnectionState::Connected { session: 2, .. })),
    )
    .await
    .unwrap()
    .unwrap();

    // A broadcast reaches only services that declared the command: proves COMMANDS was
    // sent again after the reconnect.
    let mut raw = Raw::register(&socket, "talker", "HELP,READY,STOP").await;
    raw.send("./HELLO n=7").await;
    let got = tokio::time::timeout(WAIT, incoming.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.command.as_str(), got.param("n")), ("HELLO", Some("7")));
    assert_eq!(got.sent_from_service, "talker");
}

#[tokio::test]
async fn refused_register_is_retried_until_the_name_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Commsd::start(&dir.path().join("d.sock"), "n2").await;
    let holder = Raw::register(&daemon.socket, "dup", "HELP,READY,STOP").await;
    let (client, _incoming) = Client::connect(config(&daemon.url(), "dup"));
    let mut watch = client.watch();
    tokio::time::timeout(
        WAIT,
        watch.wait_for(|s| matches!(s, ConnectionState::Refused { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    drop(holder);
    assert!(client.wait_connected(WAIT).await.is_connected());
}

#[tokio::test]
async fn close_unregisters() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Commsd::start(&dir.path().join("d.sock"), "n3").await;
    let (client, _incoming) = Client::connect(config(&daemon.url(), "leaver"));
    assert!(client.wait_connected(WAIT).await.is_connected());
    client.close(WAIT).await.unwrap();
    // The name is free at once: another connection can register it.
    let _again = Raw::register(&daemon.socket, "leaver", "HELP,READY,STOP").await;
}
