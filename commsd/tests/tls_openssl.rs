//! Interop of commsd's secure listener with an OpenSSL client (the C++ Communicator's TLS
//! stack), using the C++ client's cipher list over TLS 1.2 and default TLS 1.3, with and
//! without a client certificate. Skipped (with a message) when `openssl` is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use comms_test_support::line::WAIT;
use comms_test_support::{Leaf, Pki};
use commsd::{Daemon, DaemonConfig, TlsListenerConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The cipher list of the C++ client (docs/PROTOCOL.md §3).
const CXX_CIPHERS: &str = "HIGH:!aNULL:!kRSA:!PSK:!SRP:!MD5:!RC4";

fn openssl() -> Option<&'static str> {
    let ok = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("openssl not installed: interop test skipped");
    }
    ok.then_some("openssl")
}

/// Runs `openssl s_client`, sends REGISTER, returns the lines read until READY (or the end).
async fn s_client(
    addr: SocketAddr,
    ca: &std::path::Path,
    client: Option<&Leaf>,
    extra: &[&str],
) -> Vec<String> {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-verify_return_error"])
        .arg("-connect")
        .arg(addr.to_string())
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .arg("-CAfile")
        .arg(ca)
        .args(extra);
    if let Some(c) = client {
        cmd.arg("-cert").arg(&c.cert).arg("-key").arg(&c.key);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"REGISTER service=ossl;version=1\n")
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    let read = async {
        while let Ok(Some(l)) = out.next_line().await {
            let done = l.contains("READY");
            lines.push(l);
            if done {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(WAIT, read).await;
    let _ = child.kill().await;
    drop(stdin);
    lines
}

#[tokio::test]
async fn an_openssl_client_with_the_cxx_cipher_list_registers_over_tls() {
    let Some(_) = openssl() else { return };
    let (pki, ca, server) = Pki::with_localhost().unwrap();
    let client = pki.leaf(&ca, "client", &["client.test"]).unwrap();
    let mut cfg = DaemonConfig::ephemeral("vm", pki.path("d.sock"));
    cfg.tcp = None;
    cfg.udp = None;
    cfg.tls = Some(
        TlsListenerConfig::new("127.0.0.1:0".parse().unwrap(), &server.cert, &server.key)
            .with_client_ca(&ca.pem),
    );
    let h = Daemon::start(cfg).await.unwrap();
    let addr = h.tls_addr().unwrap();

    let tls12 = ["-tls1_2", "-cipher", CXX_CIPHERS];
    let lines = s_client(addr, &ca.pem, Some(&client), &tls12).await;
    assert_eq!(
        lines.first().map(String::as_str),
        Some("<vm:communicatord HELP"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<vm:communicatord READY")),
        "{lines:?}"
    );
    let lines = s_client(addr, &ca.pem, Some(&client), &[]).await;
    assert!(
        lines.iter().any(|l| l.contains("READY")),
        "TLS 1.3: {lines:?}"
    );

    // Mutual TLS: without a certificate OpenSSL gets nothing.
    let lines = s_client(addr, &ca.pem, None, &tls12).await;
    assert!(!lines.iter().any(|l| l.contains("READY")), "{lines:?}");
    assert_eq!(h.stats().tls_handshakes, 2);
    tokio::time::timeout(Duration::from_secs(5), h.shutdown())
        .await
        .unwrap();
}
