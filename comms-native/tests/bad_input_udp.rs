//! Hostile UDP datagrams against the real `commsd` binary: each is dropped with a warning that
//! names the reason on the daemon's log (stderr); the daemon keeps running, a good datagram
//! sent after it is delivered (nothing accepted is lost), and two services on the same daemon
//! keep exchanging messages over their streams.
#![allow(clippy::unwrap_used)]

#[path = "daemon_util.rs"]
mod util;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use util::{Raw, NODE, WAIT};

/// A `commsd` child process with its stderr log lines streamed to the test.
struct Commsd {
    child: tokio::process::Child,
    udp: SocketAddr,
    unix: PathBuf,
    log: mpsc::UnboundedReceiver<String>,
    _dir: tempfile::TempDir,
}

impl Commsd {
    async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let unix = dir.path().join("commsd.sock");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_commsd"))
            .args([
                "--name",
                NODE,
                "--tcp",
                "127.0.0.1:0",
                "--udp",
                "127.0.0.1:0",
            ])
            .arg("--unix")
            .arg(&unix)
            .args(extra)
            .env("RUST_LOG", "info,comms_native::daemon=debug")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut udp = None;
        while udp.is_none() {
            let l = tokio::time::timeout(WAIT, out.next_line())
                .await
                .expect("listening lines")
                .unwrap()
                .expect("commsd printed its listeners");
            udp = l
                .strip_prefix("commsd: listening udp ")
                .map(|a| a.parse().unwrap());
        }
        let (tx, log) = mpsc::unbounded_channel();
        let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(l)) = err.next_line().await {
                let _ = tx.send(strip_ansi(&l));
            }
        });
        Self {
            child,
            udp: udp.unwrap(),
            unix,
            log,
            _dir: dir,
        }
    }

    /// Waits for a log line containing every one of `parts`; returns it.
    async fn expect_log(&mut self, parts: &[&str]) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let l = tokio::time::timeout_at(deadline, self.log.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line with {parts:?} within 5 s"))
                .expect("commsd stderr closed");
            if parts.iter().all(|p| l.contains(p)) {
                return l;
            }
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Sends `datagram`, then checks: the drop is logged with `why`, the daemon is alive, a good
/// datagram to `victim` is delivered and the bystanders still talk.
async fn hostile(
    d: &mut Commsd,
    udp: &tokio::net::UdpSocket,
    victim: &mut Raw,
    by: &mut (Raw, Raw),
    datagram: &[u8],
    why: &[&str],
    n: u32,
) {
    udp.send_to(datagram, d.udp).await.unwrap();
    let l = d.expect_log(why).await;
    // Every drop is logged with its reason: at WARN the first of its kind in each interval,
    // at DEBUG the others (a flood must not flood the log).
    assert!(
        l.contains("WARN") || l.contains("DEBUG"),
        "not a drop log line: {l}"
    );
    assert!(d.alive(), "commsd died on {datagram:?}");
    udp.send_to(format!("victim/PING n={n}").as_bytes(), d.udp)
        .await
        .unwrap();
    victim.expect(&format!("<{NODE}: victim/PING n={n}")).await;
    by.0.send(&format!("by_b/CHAT n={n}")).await;
    by.1.expect(&format!("<{NODE}:by_a by_b/CHAT n={n}")).await;
}

#[tokio::test]
async fn hostile_datagrams_are_dropped_with_a_logged_reason() {
    let mut d = Commsd::start(&[]).await;
    let h_unix = d.unix.clone();
    let mut victim = Raw::unix_at(&h_unix).await;
    victim.send("REGISTER service=victim;version=1").await;
    victim.expect(&format!("<{NODE}:communicatord HELP")).await;
    victim
        .expect_prefix(&format!("<{NODE}:communicatord READY"))
        .await;
    let mut by = (Raw::unix_at(&h_unix).await, Raw::unix_at(&h_unix).await);
    for (raw, name) in [(&mut by.0, "by_a"), (&mut by.1, "by_b")] {
        raw.send(&format!("REGISTER service={name};version=1"))
            .await;
        raw.expect(&format!("<{NODE}:communicatord HELP")).await;
        raw.expect_prefix(&format!("<{NODE}:communicatord READY"))
            .await;
    }
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dropped = "udp datagram dropped";

    let mut deep = b"{\"command\":\"PING\",\"service\":\"victim\",\"parameters\":{\"p\":".to_vec();
    deep.resize(1000, b'[');
    let over = format!("victim/PING x={}", "y".repeat(1100));
    let huge = format!("victim/PING x={}", "y".repeat(60_000));
    let cases: Vec<(&[u8], Vec<&str>)> = vec![
        (
            b"victim/PING n=\xff\xfe",
            vec![dropped, "invalid UTF-8 at byte 14"],
        ),
        (b"\xc3", vec![dropped, "invalid UTF-8 at byte 0"]),
        (b"victim/PING n=a\0b", vec![dropped, "NUL byte at byte 15"]),
        (b"\0", vec![dropped, "NUL byte at byte 0"]),
        (&deep, vec![dropped, "recursion limit exceeded"]),
        (b"", vec![dropped, "empty message line"]),
        (
            over.as_bytes(),
            vec![dropped, "datagram too long: over 1024 bytes"],
        ),
        (
            huge.as_bytes(),
            vec![dropped, "datagram too long: over 1024 bytes"],
        ),
        (
            b"victim/lower-case x=1",
            vec!["udp datagram not routable", "invalid command"],
        ),
        (
            b"NO_SUCH_COMMAND a=1",
            vec!["not accepted over udp", "NO_SUCH_COMMAND"],
        ),
        (
            b"REGISTER service=victim;version=1",
            vec!["not accepted over udp", "REGISTER"],
        ),
        (b"STOP", vec!["not accepted over udp", "STOP"]),
        (
            b"communicatord/SHUTDOWN",
            vec!["not accepted over udp", "SHUTDOWN"],
        ),
    ];
    for (i, (datagram, why)) in cases.iter().enumerate() {
        hostile(&mut d, &udp, &mut victim, &mut by, datagram, why, i as u32).await;
    }
    // A spoofed prefix is replaced by the UDP stamp `<NODE: ` (no service can be claimed).
    for spoof in ["<evil:mallory ", "<vm:by_a ", "<vm:communicatord "] {
        udp.send_to(format!("{spoof}victim/PING s=1").as_bytes(), d.udp)
            .await
            .unwrap();
        victim.expect(&format!("<{NODE}: victim/PING s=1")).await;
    }
    // The live name was not taken over by the UDP REGISTER, and the daemon never stopped.
    by.0.send("victim/PING from=by_a").await;
    victim
        .expect(&format!("<{NODE}:by_a victim/PING from=by_a"))
        .await;
    victim.silent(100).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(d.alive());
    d.child.start_kill().unwrap();
}

/// With a secret configured, a missing or wrong secret is logged and the datagram dropped.
#[tokio::test]
async fn datagrams_without_the_secret_are_dropped_with_a_logged_reason() {
    let mut d = Commsd::start(&["--udp-secret", "s3cret"]).await;
    let mut victim = Raw::unix_at(&d.unix.clone()).await;
    victim.send("REGISTER service=victim;version=1").await;
    victim.expect(&format!("<{NODE}:communicatord HELP")).await;
    victim
        .expect_prefix(&format!("<{NODE}:communicatord READY"))
        .await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(b"victim/PING n=1", d.udp).await.unwrap();
    d.expect_log(&["udp datagram dropped", "datagram has no secret_code"])
        .await;
    udp.send_to(b"victim/PING n=2;secret_code=guess", d.udp)
        .await
        .unwrap();
    d.expect_log(&["udp datagram dropped", "wrong secret_code"])
        .await;
    udp.send_to(b"victim/PING n=3;secret_code=s3cret", d.udp)
        .await
        .unwrap();
    victim.expect(&format!("<{NODE}: victim/PING n=3")).await;
    assert!(d.alive());
    d.child.start_kill().unwrap();
}
