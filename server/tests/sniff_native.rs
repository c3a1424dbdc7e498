//! `commsctl sniff` (the binary) against commsd on a temp Unix socket: filtered text output,
//! `--count`, JSON lines; and against the server's embedded daemon on loopback TCP, where only
//! admins sniff: commsctl holding the fleet key (the daemon's token is derived from it) may,
//! without the key it is refused, the reason naming the admin token.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use comms::Connect;
use std::process::Stdio;
use std::time::Duration;

use comms::{Address, Advertisement, Destination, Message, Transport};
use comms_native::transport::NativeTransport;
use commsd::{Daemon, DaemonConfig, DaemonHandle};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const NODE: &str = "sn";
const WAIT: Duration = Duration::from_secs(15);

async fn daemon() -> (tempfile::TempDir, DaemonHandle, String) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("commsd.sock");
    let h = Daemon::start(DaemonConfig::ephemeral(NODE, &sock))
        .await
        .unwrap();
    let url = format!("cd://{}?node={NODE}&retry=0.05", sock.display());
    (dir, h, url)
}

async fn bound(url: &str, service: &str, commands: &[&str]) -> NativeTransport {
    let t = NativeTransport::connect_url(url).await.unwrap();
    let ad = Advertisement::new(Address::new(t.node(), service).unwrap(), commands.to_vec());
    t.advertise(&ad).await.unwrap();
    t
}

fn commsctl(url: &str, global: &[&str], sniff: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_commsctl"));
    // Nothing of the caller's: no key file, no token, no state directory of a real server.
    cmd.env_remove("COMMS_FLEET_KEY_FILE")
        .env_remove("COMMSD_ADMIN_TOKEN")
        .env("COMMS_SERVER_STATE_DIR", "/nonexistent/state")
        .env_remove("COMMS_URL")
        .arg("--url")
        .arg(url)
        .args(global)
        .arg("sniff")
        .args(sniff)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Starts `commsctl --url URL [args] sniff ...` and waits until it is sniffing.
async fn commsctl_sniff(url: &str, global: &[&str], sniff: &[&str]) -> Child {
    let mut child = commsctl(url, global, sniff).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(WAIT, async {
        while let Some(l) = err.next_line().await.unwrap() {
            if l.contains("sniffing the native transport") {
                return;
            }
            eprintln!("commsctl: {l}");
        }
        panic!("commsctl ended before sniffing");
    })
    .await
    .expect("commsctl starts sniffing");
    child
}

async fn stdout_of(mut child: Child) -> String {
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("commsctl stops after --count")
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    assert!(status.success(), "{status:?}: {out}");
    out
}

async fn traffic(url: &str) -> Vec<NativeTransport> {
    let b = bound(url, "b", &["PING", "OTHER"]).await;
    let c = bound(url, "c", &["PING"]).await;
    let a = bound(url, "a", &[]).await;
    let send = |cmd: &str, to: &str, n: &str| {
        Message::new(cmd, Destination::Service(to.into()))
            .unwrap()
            .with_param("n", n)
    };
    a.send(send("PING", "c", "0")).await.unwrap(); // other service: filtered out
    a.send(send("OTHER", "b", "0")).await.unwrap(); // other command: filtered out
    a.send(send("PING", "b", "1")).await.unwrap();
    a.send(send("PING", "b", "2 two")).await.unwrap();
    a.send(send("PING", "b", "3")).await.unwrap(); // past --count
    vec![a, b, c]
}

#[tokio::test]
async fn commsctl_sniff_prints_filtered_messages_and_stops_after_count() {
    let (_dir, h, url) = daemon().await;
    let child = commsctl_sniff(
        &url,
        &[],
        &["--command", "PING", "--service", "b", "--count", "2"],
    )
    .await;
    let ts = traffic(&url).await;
    let out = stdout_of(child).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let strip = |l: &str| l.split_once(' ').unwrap().1.to_owned();
    assert_eq!(strip(lines[0]), format!("{NODE}:a -> b PING n=1"));
    assert_eq!(strip(lines[1]), format!("{NODE}:a -> b PING n=\"2 two\""));
    let time = lines[0].split(' ').next().unwrap();
    assert_eq!(time.len(), "HH:MM:SS.mmm".len(), "{time}");
    drop(ts); // nobody consumed b and c: no graceful close to wait for
    h.shutdown().await;
}

#[tokio::test]
async fn commsctl_sniff_json_lines() {
    let (_dir, h, url) = daemon().await;
    let child = commsctl_sniff(
        &url,
        &["--json"],
        &["--service", "c", "--command", "PING", "--count", "1"],
    )
    .await;
    let ts = traffic(&url).await;
    let out = stdout_of(child).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["command"], "PING");
    assert_eq!(v["params"]["n"], "0");
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    drop(ts); // nobody consumed b and c: no graceful close to wait for
    h.shutdown().await;
}

/// The server's embedded daemon on loopback TCP (port 0), its token derived from a fresh key
/// written to `<dir>/fleet.key`; the URL of its bound address.
async fn embedded(dir: &std::path::Path) -> (DaemonHandle, String) {
    let key_file = dir.join("fleet.key");
    comms_server::keygen::write_key_file(&key_file, false).unwrap();
    let key = comms_fleet::auth::FleetKey::from_file(&key_file).unwrap();
    let config = comms::Config::from_url(format!("cd://127.0.0.1:0?node={NODE}")).unwrap();
    let token = comms_server::embed::admin_token(Some(&key));
    let h = comms_server::embed::start(&config, token)
        .await
        .unwrap()
        .unwrap();
    let url = format!("cd://{}?node={NODE}&retry=0.05", h.tcp_addr().unwrap());
    (h, url)
}

#[tokio::test]
async fn commsctl_sniffs_the_embedded_daemon_with_the_fleet_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let (h, url) = embedded(dir.path()).await;
    let key_file = dir.path().join("fleet.key");
    let child = commsctl_sniff(
        &url,
        &["--key-file", key_file.to_str().unwrap()],
        &["--command", "PING", "--service", "b", "--count", "1"],
    )
    .await;
    let ts = traffic(&url).await;
    let out = stdout_of(child).await;
    assert!(out.contains(&format!("{NODE}:a -> b PING n=1")), "{out}");
    drop(ts);

    // Without the key: refused by the daemon, exit 2, the reason says what would allow it.
    let out = tokio::time::timeout(WAIT, commsctl(&url, &[], &["--count", "1"]).output())
        .await
        .expect("commsctl ends")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("SNIFF refused") && err.contains("admin_token") && err.contains("fleet key"),
        "{err}"
    );
    // A key of another fleet derives another token: refused too.
    let other = dir.path().join("other.key");
    comms_server::keygen::write_key_file(&other, false).unwrap();
    let out = commsctl(
        &url,
        &["--key-file", other.to_str().unwrap()],
        &["--count", "1"],
    )
    .output()
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("wrong admin_token"), "{err}");
    h.shutdown().await;
}
