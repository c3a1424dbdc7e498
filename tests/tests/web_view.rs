//! The server's live web view in a real headless browser (Debian's chromium, driven by
//! Selenium through chromedriver; `comms_tests::browser`): one page, never reloaded, shows the
//! agents of a running fleet, then a dispatch started from `commsctl` with its output (and a
//! running one with its output so far), then an
//! agent killed turned down within its TTL; the embedded daemon's cluster graph is drawn. A screenshot is kept in
//! `target/test-artifacts/web-view.png`. Off loopback the view is not served in plain HTTP,
//! and over TLS only to holders of the token derived from the fleet key.

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
    // A task still running shows its output so far: its result comes 8 s later.
    let started = std::time::Instant::now();
    let (_running, _out) = fleet.ctl_spawn(&[
        "run",
        "--agent",
        "agent_1",
        "--",
        "sh",
        "-c",
        "echo live-line; sleep 8",
    ]);
    page.wait_for(6, "#dispatches", "live-line").await;
    page.wait_for(2, "#dispatches", "running").await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "seen while the task ran"
    );
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

/// `GET https://127.0.0.1:PORT{path}` trusting `ca`, with optional headers: status, the
/// `Set-Cookie` header, and the body's first 200 characters (Python's urllib and ssl).
fn https_get(port: u16, ca: &Path, path: &str, headers: &[(&str, &str)]) -> Value {
    const GET: &str = r#"
import json, ssl, sys, urllib.request, urllib.error
ctx = ssl.create_default_context(cafile=sys.argv[1])
req = urllib.request.Request(sys.argv[2], headers=json.loads(sys.argv[3]))
try:
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        out = [r.status, r.headers.get("Set-Cookie"), r.read().decode()[:200]]
except urllib.error.HTTPError as e:
    out = [e.code, e.headers.get("Set-Cookie"), e.read().decode()[:200]]
print(json.dumps(out))
"#;
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            GET,
            &ca.display().to_string(),
            &format!("https://127.0.0.1:{port}{path}"),
            &Value::Object(headers).to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_over_tls_the_view_is_for_holders_of_the_fleet_keys_token() {
    let pki = comms_test_support::Pki::new().unwrap();
    let ca = pki.ca("web").unwrap();
    let leaf = pki.localhost(&ca).unwrap();
    let mut fleet = Fleet::new(NATIVE);
    let (cert, key) = (
        leaf.cert.display().to_string(),
        leaf.key.display().to_string(),
    );
    fleet.start_server_with(&[
        "--http",
        "0.0.0.0:0",
        "--http-tls-cert",
        &cert,
        "--http-tls-key",
        &key,
    ]);
    fleet.wait_server(Duration::from_secs(30)).await;
    let port = logged_http_addr(&fleet.log("server"), Duration::from_secs(10)).port();
    // The token commsctl derives from the fleet key it finds.
    let out = tokio::process::Command::new(comms_tests::binary("server", "commsctl"))
        .args(["web-token"])
        .env("COMMS_FLEET_KEY_FILE", fleet.key_file())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64, "{token}");

    let anonymous = https_get(port, &ca.pem, "/", &[]);
    assert_eq!(anonymous[0], 401, "{anonymous}");
    assert!(anonymous[2]
        .as_str()
        .unwrap()
        .contains("commsctl web-token"));
    assert_eq!(https_get(port, &ca.pem, "/api/state", &[])[0], 401);
    let wrong = https_get(port, &ca.pem, &format!("/?token={}", "0".repeat(64)), &[]);
    assert_eq!(wrong[0], 401, "{wrong}");
    // The link with the token: the page, and a cookie that keeps it (secure, not for scripts).
    let first = https_get(port, &ca.pem, &format!("/?token={token}"), &[]);
    assert_eq!(first[0], 200, "{first}");
    assert!(first[2].as_str().unwrap().contains("comms fleet"));
    let cookie = first[1].as_str().expect("Set-Cookie").to_owned();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let jar = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = https_get(port, &ca.pem, "/api/state", &[("Cookie", &jar)]);
    assert_eq!(with_cookie[0], 200, "{with_cookie}");
    assert!(with_cookie[2].as_str().unwrap().contains("\"agents\""));
    let bearer = format!("Bearer {token}");
    assert_eq!(
        https_get(port, &ca.pem, "/api/state", &[("Authorization", &bearer)])[0],
        200
    );
    // Metrics and health need no token (a Prometheus elsewhere scrapes them).
    assert_eq!(https_get(port, &ca.pem, "/metrics", &[])[0], 200);
    assert_eq!(https_get(port, &ca.pem, "/readyz", &[])[0], 200);
}
