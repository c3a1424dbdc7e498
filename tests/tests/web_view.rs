//! The server's live web view in a real headless browser (Debian's chromium, driven by
//! Selenium through chromedriver; `comms_tests::browser`): one page, never reloaded, shows the
//! agents of a running fleet, then a dispatch started from `commsctl` with its output, then an
//! agent killed turned down within its TTL; the embedded daemon's cluster graph is drawn. A screenshot is kept in
//! `target/test-artifacts/web-view.png`. And off loopback the view is not served at all.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test body: failures should be loud

use std::path::Path;
use std::time::Duration;

use comms_tests::browser::Browser;
use comms_tests::fleet::Fleet;
use comms_tests::metrics::logged_http_addr;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NATIVE: &str = "url = \"cd://{dir}/commsd.sock?retry=0.1,0.2,0.5\"";

async fn fleet_of_two(http: &str) -> Fleet {
    let mut fleet = Fleet::new(NATIVE);
    fleet.start_server_with(&["--http", http]);
    fleet.wait_server(Duration::from_secs(30)).await;
    for n in [1, 2] {
        fleet.start_agent(n, "web");
    }
    fleet
        .wait_agents("two agents up", Duration::from_secs(30), |a: &[Value]| {
            a.iter().filter(|a| a["up"] == true).count() == 2
        })
        .await;
    fleet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_shows_agents_dispatch_output_and_an_agent_going_down_live() {
    let mut fleet = fleet_of_two("127.0.0.1:0").await;
    let addr = logged_http_addr(&fleet.log("server"), Duration::from_secs(10));
    let mut page = Browser::open(&format!("http://{addr}/")).await;
    for n in [1, 2] {
        page.wait_for(20, &format!("tr[data-agent$=\":agent_{n}\"]>td.up"), "up")
            .await;
    }
    page.wait_for(5, "#status", "2 of 2 agents up").await;
    // The embedded daemon's cluster map: its node, drawn, with the services registered on it.
    page.wait_for(5, "#cluster-graph", "(this server)").await;
    page.wait_for(5, "#cluster-nodes", "agent_1").await;
    page.wait_for(5, "#cluster-nodes", "server").await;
    let (code, lines) = fleet
        .ctl(&[
            "run",
            "--all",
            "--",
            "sh",
            "-c",
            "echo shown-in-the-browser",
        ])
        .await;
    assert_eq!(code, 0, "{lines:?}");
    page.wait_for(10, "#dispatches", "shown-in-the-browser")
        .await;
    page.wait_for(5, "#dispatches", "echo shown-in-the-browser")
        .await;
    // Agents advertise with a TTL of 1 s here; the page is told within a second of a change.
    fleet.kill_agent(2).await;
    page.wait_for(10, "tr[data-agent$=\":agent_2\"]>td.down", "down")
        .await;
    page.wait_for(5, "#status", "1 of 2 agents up").await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("web-view.png");
    page.screenshot(&shot).await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    eprintln!("screenshot: {}", shot.display());
    page.quit().await;
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_the_view_is_not_served_but_metrics_are() {
    let mut fleet = Fleet::new(NATIVE);
    fleet.start_server_with(&["--http", "0.0.0.0:0"]);
    fleet.wait_server(Duration::from_secs(30)).await;
    let bound = logged_http_addr(&fleet.log("server"), Duration::from_secs(10));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], bound.port()));
    assert!(get(addr, "/").await.contains("404"), "no page off loopback");
    assert!(get(addr, "/api/state").await.contains("404"));
    assert!(get(addr, "/metrics").await.contains("200"));
    assert!(get(addr, "/readyz").await.contains("200"));
}
