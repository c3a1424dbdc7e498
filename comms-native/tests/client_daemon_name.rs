//! Issue 19 item 9: without `node=` in the URL the native transport learns the daemon's own
//! name (`commsd --name pb`) instead of guessing the host name, and a request to a node that
//! does not exist fails fast with the daemon's answer instead of waiting out its timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod client_util;

use comms_core::Connect;
use std::time::{Duration, Instant};

use client_util::Commsd;
use comms_core::{Address, Endpoint, Error, Message, Transport};
use comms_native::transport::NativeTransport;

#[tokio::test]
async fn node_is_learnt_from_the_daemon_and_unknown_nodes_fail_fast() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("pb{}", std::process::id());
    let daemon = Commsd::start(&dir.path().join("d.sock"), &name).await;
    // No `node=`: the transport asks the daemon.
    let url = format!("cd://{}?retry=0.05,0.1", daemon.socket.display());
    let t = NativeTransport::connect_url(&url).await.unwrap();
    assert_eq!(t.node(), name);
    let ep = Endpoint::builder(t, "pb_client").start().await.unwrap();
    assert_eq!(ep.address().node(), name);

    // A request to a node that does not exist: answered by the daemon at once.
    let to = Address::new("vm_no_such_node", "pb_sink").unwrap();
    let t0 = Instant::now();
    let r = ep
        .request(Message::new("REQ", to).unwrap(), Duration::from_secs(10))
        .await;
    let waited = t0.elapsed();
    match r {
        Err(Error::Remote { .. }) => {}
        other => panic!("expected the daemon's SERVICE_UNAVAILABLE, got {other:?}"),
    }
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let text = format!(
        "{:?}",
        ep.request(
            Message::new("REQ", Address::new("vm_no_such_node", "pb_sink").unwrap()).unwrap(),
            Duration::from_secs(10)
        )
        .await
    );
    assert!(text.contains("pb_sink"), "{text}");
    ep.close().await.unwrap();

    // With `node=` the configured name is kept (no probe).
    let t = NativeTransport::connect_url(&format!("{url}&node=given"))
        .await
        .unwrap();
    assert_eq!(t.node(), "given");
}
