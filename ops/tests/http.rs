//! The endpoint over real HTTP: readiness follows what the binary says, metrics registered
//! after the listener started are served, unknown paths are 404.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use comms_core::TransportStats;
use comms_ops::transport::TransportCollector;
use comms_ops::{serve, Metrics, Readiness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test]
async fn readiness_and_late_registered_metrics_are_served() {
    let (metrics, readiness) = (
        Metrics::default(),
        Readiness::new("connecting to the broker"),
    );
    let http = serve(
        "127.0.0.1:0".parse().unwrap(),
        metrics.clone(),
        readiness.clone(),
    )
    .await
    .unwrap();
    let addr = http.local_addr();
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(
        get(addr, "/readyz").await,
        (503, "not ready: connecting to the broker\n".into())
    );
    let stats = Arc::new(TransportStats::default());
    stats.count(true);
    stats.sent();
    metrics.register_collector(TransportCollector::new(stats, "memory"));
    readiness.ready();
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".into()));
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("comms_transport_sent_total{backend=\"memory\"} 2"),
        "{body}"
    );
    assert!(
        body.contains("comms_transport_in_flight{backend=\"memory\"} 1"),
        "{body}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    assert_eq!(get(addr, "/nothing").await.0, 404);
    http.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "stopped"
    );
}

#[tokio::test]
async fn a_taken_address_is_a_clear_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = serve(addr, Metrics::default(), Readiness::new("x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&addr.to_string()) && err.contains("cannot listen"),
        "{err}"
    );
}
