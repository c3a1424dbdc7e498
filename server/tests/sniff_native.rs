//! `commsctl sniff` (the binary) against an embedded commsd on a temp Unix socket: filtered
//! text output, `--count`, JSON lines.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

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
    let t = NativeTransport::connect(url).unwrap();
    let ad = Advertisement::new(Address::new(t.node(), service).unwrap(), commands.to_vec());
    t.advertise(&ad).await.unwrap();
    t
}

/// Starts `commsctl --url URL [args] sniff ...` and waits until it is sniffing.
async fn commsctl_sniff(url: &str, global: &[&str], sniff: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_commsctl"))
        .arg("--url")
        .arg(url)
        .args(global)
        .arg("sniff")
        .args(sniff)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
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
