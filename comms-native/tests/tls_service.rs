//! The secure service listener (`cds:`) over real sockets: a comms endpoint over `cds:` talks
//! to one over `cd:` through one `commsd` process; mutual TLS refuses a client without a
//! certificate or with one from another CA while the daemon keeps serving; a client that
//! does not trust the server's CA gets a clear error; plain text and silence on the TLS port
//! do not hurt the daemon; unusable certificate files stop the start with a clear error.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use comms_core::Connect;
use std::net::SocketAddr;
use std::time::Duration;

use comms_core::config::TransportUrl;
use comms_core::{Address, Advertisement, Message, Transport};
use comms_native::tls::TlsError;
use comms_native::transport::{NativeOptions, NativeTransport};
use comms_test_support::{client_config, CommsdSpec, Leaf, LineClient, Pki};
use commsd::{Daemon, DaemonConfig, DaemonError, DaemonHandle, TlsListenerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "vm";
const WAIT: Duration = Duration::from_secs(10);

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn recv(inbox: &mut comms_core::Inbox) -> comms_core::Delivery {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("a delivery in time")
        .expect("inbox open")
}

/// The next delivery: asserts its `n` and its sender, acknowledges it.
async fn recv_acked(inbox: &mut comms_core::Inbox, n: &str, from: &str) {
    let d = recv(inbox).await;
    assert_eq!(d.message().param("n"), Some(n));
    let sender = d.message().from().map(ToString::to_string);
    assert_eq!(sender.as_deref(), Some(from));
    d.ack().await.unwrap();
}

fn cds_url(addr: SocketAddr, ca: &std::path::Path, client: Option<&Leaf>) -> String {
    let mut url = format!(
        "cds://localhost:{}?node={NODE}&retry=0.05,0.1&register_timeout_ms=5000&ca={}",
        addr.port(),
        ca.display()
    );
    if let Some(c) = client {
        url.push_str(&format!(
            "&cert={}&key={}",
            c.cert.display(),
            c.key.display()
        ));
    }
    url
}

async fn bound(url: &str, service: &str, commands: &[&str]) -> comms_core::Result<NativeTransport> {
    let t = NativeTransport::connect_url(url).await?;
    let ad = Advertisement::new(Address::new(t.node(), service).unwrap(), commands.to_vec());
    t.advertise(&ad).await?;
    Ok(t)
}

/// An in-process daemon with only a Unix socket and a TLS listener.
async fn daemon(
    dir: &std::path::Path,
    server: &Leaf,
    client_ca: Option<&std::path::Path>,
    timeout: Duration,
) -> DaemonHandle {
    let mut cfg = DaemonConfig::ephemeral(NODE, dir.join("d.sock"));
    cfg.tcp = None;
    cfg.udp = None;
    let mut tls = TlsListenerConfig::new(any(), &server.cert, &server.key);
    tls.tls.client_ca = client_ca.map(|p| p.to_path_buf());
    tls.handshake_timeout = timeout;
    cfg.tls = Some(tls);
    Daemon::start(cfg).await.expect("daemon starts")
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ok() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn cds_endpoint_and_cd_endpoint_talk_through_one_commsd_with_mutual_tls() {
    let (pki, ca, server) = Pki::with_localhost().unwrap();
    let client = pki.leaf(&ca, "client", &["client.test"]).unwrap();
    let d = CommsdSpec::find()
        .unwrap()
        .name(NODE)
        .unix_only_in_dir()
        .tls(any(), &server.cert, &server.key, Some(&ca.pem))
        .start()
        .await
        .unwrap();
    let socket = d.socket().unwrap();
    let tls = d.listeners().tls.unwrap();

    let plain_url = format!("cd://{}?node={NODE}&retry=0.05,0.1", socket.display());
    let b = bound(&plain_url, "tls_b", &["PING", "PONG"]).await.unwrap();
    let mut b_inbox = b.listen().await.unwrap();
    let a = bound(&cds_url(tls, &ca.pem, Some(&client)), "tls_a", &["PONG"])
        .await
        .unwrap();
    let mut a_inbox = a.listen().await.unwrap();

    // cds: → cd:, at-least-once: delivered, stamped with the sender, acknowledged end to end.
    let to_b = b.local_address().unwrap();
    a.send(Message::new("PING", to_b).unwrap().with_param("n", "1"))
        .await
        .unwrap();
    recv_acked(&mut b_inbox, "1", "vm:tls_a").await;
    wait_for("the cds: sender never got its ack", || {
        a.unacknowledged() == 0
    })
    .await;

    // cd: → cds:
    let to_a = a.local_address().unwrap();
    b.send(Message::new("PONG", to_a).unwrap().with_param("n", "2"))
        .await
        .unwrap();
    recv_acked(&mut a_inbox, "2", "vm:tls_b").await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn mutual_tls_refuses_missing_or_foreign_client_certificates_and_keeps_serving() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("main").unwrap();
    let other = pki.ca("other").unwrap();
    let server = pki.localhost(&ca).unwrap();
    let good = pki.leaf(&ca, "good", &["good.test"]).unwrap();
    let foreign = pki.leaf(&other, "foreign", &["foreign.test"]).unwrap();
    let h = daemon(
        pki.dir.path(),
        &server,
        Some(&ca.pem),
        Duration::from_secs(10),
    )
    .await;
    let addr = h.tls_addr().unwrap();

    // No certificate, then a certificate from another CA: never registered.
    for (what, cfg) in [
        ("no certificate", client_config(&ca.pem, None).unwrap()),
        (
            "foreign certificate",
            client_config(&ca.pem, Some(&foreign)).unwrap(),
        ),
    ] {
        let outcome = match LineClient::tls(addr, cfg).await {
            Err(e) => Err(e),
            Ok(mut raw) => raw.register("intruder").await,
        };
        assert!(
            outcome.is_err(),
            "{what}: expected a refusal, got {outcome:?}"
        );
    }
    wait_for("both failed handshakes are counted", || {
        h.stats().tls_handshake_failures >= 2
    })
    .await;
    assert_eq!(h.stats().tls_handshakes, 0);

    // The daemon keeps serving: a client with a good certificate registers.
    let mut raw = LineClient::tls(addr, client_config(&ca.pem, Some(&good)).unwrap())
        .await
        .unwrap();
    let (help, ready) = raw.register("good_svc").await.unwrap();
    assert_eq!(help, "<vm:communicatord HELP");
    assert!(
        ready.starts_with("<vm:communicatord READY my_address="),
        "{ready}"
    );
    assert_eq!(h.stats().tls_handshakes, 1);

    // The native transport reports a refused client certificate as a TLS error.
    let e = bound(&cds_url(addr, &ca.pem, Some(&foreign)), "intruder2", &[])
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("TLS handshake"), "{e}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_server_certificate_from_an_untrusted_ca_is_a_clear_error() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("main").unwrap();
    let other = pki.ca("other").unwrap();
    let server = pki.localhost(&ca).unwrap();
    let h = daemon(pki.dir.path(), &server, None, Duration::from_secs(10)).await;
    let addr = h.tls_addr().unwrap();

    let started = tokio::time::Instant::now();
    let e = bound(&cds_url(addr, &other.pem, None), "distrustful", &[])
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("TLS handshake with the daemon failed"), "{e}");
    assert!(
        e.contains("UnknownIssuer") || e.contains("unknown issuer"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "reported at once, not after the register timeout"
    );

    // The server name is checked too: the certificate is for localhost, not for this name.
    let url = format!("{}&tls_name=elsewhere.test", cds_url(addr, &ca.pem, None));
    let e = bound(&url, "misnamed", &[])
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("TLS handshake") && e.contains("not valid for name"),
        "{e}"
    );

    // Trusting the right CA works (no client certificate needed without a client CA).
    let t = bound(&cds_url(addr, &ca.pem, None), "trusting", &[])
        .await
        .unwrap();
    assert!(t.connection_state().unwrap().borrow().is_connected());
    t.close().await.unwrap();
    h.shutdown().await;
}

#[tokio::test]
async fn plain_text_and_silent_clients_on_the_tls_port_do_not_hurt_the_daemon() {
    let (pki, ca, server) = Pki::with_localhost().unwrap();
    let h = daemon(pki.dir.path(), &server, None, Duration::from_millis(500)).await;
    let addr = h.tls_addr().unwrap();

    // Silent clients hold a pending handshake each; they must not block anyone.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Plain cd: text on the TLS port: the daemon closes the connection.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"REGISTER service=plain;version=1\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(WAIT, plain.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the daemon closes a plain-text connection");
    assert!(!String::from_utf8_lossy(&buf).contains("READY"));

    // Meanwhile a real TLS client is served at once.
    let mut raw = LineClient::tls(addr, client_config(&ca.pem, None).unwrap())
        .await
        .unwrap();
    let (help, _) = raw.register("real").await.unwrap();
    assert_eq!(help, "<vm:communicatord HELP");

    // The silent ones are dropped after the handshake timeout: 3 + 1 plain = 4 failures.
    wait_for("failed handshakes counted", || {
        h.stats().tls_handshake_failures >= 4
    })
    .await;
    for mut s in silent {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(WAIT, s.read(&mut b)).await.unwrap();
        assert!(matches!(n, Ok(0) | Err(_)), "a silent client is dropped");
    }
    // Still serving after all that.
    raw.send("HELP").await.unwrap();
    assert!(raw.line().await.unwrap().contains("COMMANDS list="));
    h.shutdown().await;
}

#[tokio::test]
async fn unusable_certificate_files_stop_the_start_with_a_clear_error() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("main").unwrap();
    let server = pki.leaf(&ca, "server", &["localhost"]).unwrap();
    let other = pki.leaf(&ca, "other", &["other.test"]).unwrap();
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "not a pem file\n").unwrap();
    let start = |cert: std::path::PathBuf, key: std::path::PathBuf| {
        let mut cfg = DaemonConfig::ephemeral(NODE, pki.path("x.sock"));
        cfg.tcp = None;
        cfg.udp = None;
        cfg.unix_path = None;
        cfg.tls = Some(TlsListenerConfig::new(any(), cert, key));
        Daemon::start(cfg)
    };
    let missing = pki.path("missing.crt");
    match start(missing.clone(), server.key.clone()).await {
        Err(DaemonError::Tls(TlsError::Read { path, .. })) => assert_eq!(path, missing),
        other => panic!("missing file: {other:?}"),
    }
    match start(garbage.clone(), server.key.clone()).await {
        Err(DaemonError::Tls(e @ TlsError::BadPem { .. })) => {
            assert!(e.to_string().contains("garbage.pem"), "{e}")
        }
        other => panic!("bad pem: {other:?}"),
    }
    match start(server.cert.clone(), garbage.clone()).await {
        Err(DaemonError::Tls(TlsError::BadPem { .. })) => {}
        other => panic!("no key: {other:?}"),
    }
    match start(server.cert.clone(), other.key.clone()).await {
        Err(DaemonError::Tls(e @ TlsError::KeyMismatch { .. })) => {
            assert!(e.to_string().contains("does not match"), "{e}")
        }
        other => panic!("key mismatch: {other:?}"),
    }
    assert!(start(server.cert.clone(), server.key.clone()).await.is_ok());
}

#[tokio::test]
async fn commsd_reads_the_tls_listener_from_its_config_file_and_documents_the_flags() {
    let (pki, ca, server) = Pki::with_localhost().unwrap();
    let conf = pki.path("commsd.toml");
    std::fs::write(
        &conf,
        format!(
            "[daemon]\nname = \"cf\"\nunix = \"\"\ntcp = \"\"\nudp = \"\"\ntls = \"127.0.0.1:0\"\n\
             tls_cert = {:?}\ntls_key = {:?}\ntls_handshake_timeout_ms = 2000\n",
            server.cert.display().to_string(),
            server.key.display().to_string()
        ),
    )
    .unwrap();
    let daemon = CommsdSpec::find()
        .unwrap()
        .config_file(&conf)
        .start()
        .await
        .unwrap();
    let addr = daemon.listeners().tls.expect("a tls listener");
    let mut raw = LineClient::tls(addr, client_config(&ca.pem, None).unwrap())
        .await
        .unwrap();
    let (help, _) = raw.register("from_conf").await.unwrap();
    assert_eq!(help, "<cf:communicatord HELP");

    // A TLS address without certificate files is refused at start, with the reason.
    let out = tokio::process::Command::new(comms_test_support::commsd_binary().unwrap())
        .args(["--no-unix", "--no-tcp", "--no-udp", "--tls", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tls_cert"),
        "{out:?}"
    );

    let help = tokio::process::Command::new(comms_test_support::commsd_binary().unwrap())
        .arg("--help")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--tls <ADDR>",
        "--tls-cert",
        "--tls-key",
        "--tls-client-ca",
        "mutual TLS",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}: {help}");
    }
}

#[tokio::test]
async fn a_cds_client_reconnects_after_a_daemon_restart_and_honours_tls_name() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("main").unwrap();
    // The certificate names neither 127.0.0.1 nor localhost: only tls_name makes it match.
    let server = pki.leaf(&ca, "server", &["daemon.test"]).unwrap();
    let dir1 = pki.path("d1");
    std::fs::create_dir_all(&dir1).unwrap();
    let h1 = daemon(&dir1, &server, None, Duration::from_secs(10)).await;
    let addr = h1.tls_addr().unwrap();
    let url = format!(
        "cds://127.0.0.1:{}?node={NODE}&retry=0.05,0.1&ca={}&tls_name=daemon.test",
        addr.port(),
        ca.pem.display()
    );
    let a = bound(&url, "roamer", &["HELLO"]).await.unwrap();
    let mut a_inbox = a.listen().await.unwrap();
    let mut state = a.connection_state().unwrap();
    assert!(matches!(
        *state.borrow(),
        comms_native::client::ConnectionState::Connected { session: 1, .. }
    ));

    h1.shutdown().await;
    tokio::time::timeout(WAIT, state.wait_for(|s| !s.is_connected()))
        .await
        .expect("the client sees the daemon go")
        .unwrap();

    // Same TLS address, new daemon: the client comes back on its own (session 2).
    let dir2 = pki.path("d2");
    std::fs::create_dir_all(&dir2).unwrap();
    let mut cfg = DaemonConfig::ephemeral(NODE, dir2.join("d.sock"));
    cfg.tcp = None;
    cfg.udp = None;
    cfg.tls = Some(TlsListenerConfig::new(addr, &server.cert, &server.key));
    let h2 = Daemon::start(cfg)
        .await
        .expect("restart on the same address");
    tokio::time::timeout(
        WAIT,
        state.wait_for(|s| {
            matches!(
                s,
                comms_native::client::ConnectionState::Connected { session: 2, .. }
            )
        }),
    )
    .await
    .expect("reconnected over TLS")
    .unwrap();

    // And it is registered again: a cd: service on the new daemon reaches it.
    let plain = bound(
        &format!(
            "cd://{}?node={NODE}&retry=0.05,0.1",
            dir2.join("d.sock").display()
        ),
        "greeter",
        &[],
    )
    .await
    .unwrap();
    plain
        .send(Message::new("HELLO", a.local_address().unwrap()).unwrap())
        .await
        .unwrap();
    let hello = recv(&mut a_inbox).await;
    assert_eq!(hello.message().command, "HELLO");
    hello.ack().await.unwrap();
    plain.close().await.unwrap();
    a.close().await.unwrap();
    h2.shutdown().await;
}

#[tokio::test]
async fn pending_handshakes_are_bounded_apart_from_service_connections() {
    let (pki, ca, server) = Pki::with_localhost().unwrap();
    let mut cfg = DaemonConfig::ephemeral(NODE, pki.path("d.sock"));
    cfg.udp = None;
    cfg.max_connections = 3;
    let mut tls = TlsListenerConfig::new(any(), &server.cert, &server.key);
    tls.handshake_timeout = Duration::from_secs(60);
    tls.max_pending_handshakes = 2;
    cfg.tls = Some(tls);
    let h = Daemon::start(cfg).await.unwrap();
    let addr = h.tls_addr().unwrap();

    // Two silent clients take both handshake slots (and no connection permit)...
    let silent: Vec<_> = [
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        tokio::net::TcpStream::connect(addr).await.unwrap(),
    ]
    .into();
    // ...so a third TLS connection is closed at once, not after the 60 s handshake timeout.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut b))
        .await
        .expect("closed at once");
    assert!(matches!(n, Ok(0) | Err(_)));
    assert_eq!(h.stats().connections_refused, 1);

    // Local services are not locked out: all three connection permits are still free.
    let mut locals = Vec::new();
    for i in 0..3 {
        let mut c = tokio::net::UnixStream::connect(h.unix_path().unwrap())
            .await
            .unwrap();
        c.write_all(format!("REGISTER service=local{i};version=1\n").as_bytes())
            .await
            .unwrap();
        let mut buf = vec![0u8; 64];
        let n = tokio::time::timeout(WAIT, c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("HELP"));
        locals.push(c);
    }
    drop(locals);

    // Once the silent ones leave, a TLS client gets through.
    drop(silent);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let attempt = match LineClient::tls(addr, client_config(&ca.pem, None).unwrap()).await {
            Ok(mut raw) => raw.register("late").await.ok(),
            Err(_) => None,
        };
        if let Some((help, _)) = attempt {
            assert_eq!(help, "<vm:communicatord HELP");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slots were never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.shutdown().await;
}

#[tokio::test]
async fn tls_connections_get_no_admin_trust_without_the_token() {
    let (pki, ca, server) = Pki::with_localhost().unwrap();
    let start = |sock: &str| {
        let mut cfg = DaemonConfig::ephemeral(NODE, pki.path(sock));
        cfg.udp = None;
        // Loopback TCP may stop and sniff; that must not extend to TLS.
        cfg.admin.allow_stop_from_tcp = true;
        cfg.admin.allow_sniff_from_tcp = true;
        cfg.admin.admin_token = Some("letmein".into());
        cfg.tls = Some(TlsListenerConfig::new(any(), &server.cert, &server.key));
        Daemon::start(cfg)
    };
    let h = start("a.sock").await.unwrap();
    let addr = h.tls_addr().unwrap();
    let mut raw = LineClient::tls(addr, client_config(&ca.pem, None).unwrap())
        .await
        .unwrap();
    raw.send("STOP").await.unwrap();
    let l = raw.line().await.unwrap();
    assert!(l.contains("INVALID") && l.contains("TLS connection"), "{l}");
    raw.send("SNIFF").await.unwrap();
    let l = raw.line().await.unwrap();
    assert!(l.contains("INVALID") && l.contains("SNIFF"), "{l}");
    assert!(!h.is_stopping());
    raw.send("STOP admin_token=letmein").await.unwrap();
    tokio::time::timeout(WAIT, h.stopped())
        .await
        .expect("the token stops it");

    let h = start("b.sock").await.unwrap();
    let mut raw = LineClient::tls(h.tls_addr().unwrap(), client_config(&ca.pem, None).unwrap())
        .await
        .unwrap();
    raw.send("SNIFF admin_token=letmein").await.unwrap();
    let l = raw.line().await.unwrap();
    assert!(l.contains("SNIFFING"), "{l}");
    h.shutdown().await;
}

#[tokio::test]
async fn the_transport_sniffs_over_cds_with_the_admin_token() {
    let (pki, ca, server) = Pki::with_localhost().unwrap();
    let client = pki.leaf(&ca, "client", &["client.test"]).unwrap();
    let mut cfg = DaemonConfig::ephemeral(NODE, pki.path("d.sock"));
    cfg.tcp = None;
    cfg.udp = None;
    cfg.admin.admin_token = Some("letmein".into());
    cfg.tls =
        Some(TlsListenerConfig::new(any(), &server.cert, &server.key).with_client_ca(&ca.pem));
    let h = Daemon::start(cfg).await.unwrap();
    let url = cds_url(h.tls_addr().unwrap(), &ca.pem, Some(&client));
    // Without the token (a client certificate is not admin trust): refused, the reason says why.
    let anyone = NativeTransport::connect_url(&url).await.unwrap();
    let refused = anyone.sniff().await.map(|_| ()).unwrap_err().to_string();
    assert!(refused.contains("admin_token"), "{refused}");
    let opts = NativeOptions::from_url(&TransportUrl::parse(&url).unwrap())
        .unwrap()
        .with_admin_token("letmein");
    let watcher = NativeTransport::with_options(opts);
    let mut copies = watcher.sniff().await.unwrap();

    let plain_url = format!(
        "cd://{}?node={NODE}&retry=0.05,0.1",
        pki.path("d.sock").display()
    );
    let b = bound(&plain_url, "sniffed_b", &["NOTE"]).await.unwrap();
    let _b_inbox = b.listen().await.unwrap();
    let a = bound(&plain_url, "sniffed_a", &[]).await.unwrap();
    a.send(
        Message::new("NOTE", b.local_address().unwrap())
            .unwrap()
            .with_param("k", "v")
            .at_most_once(),
    )
    .await
    .unwrap();
    let copy = loop {
        let d = recv(&mut copies).await;
        if d.message().command == "NOTE" {
            break d;
        }
    };
    assert_eq!(copy.message().param("k"), Some("v"));
    assert_eq!(
        copy.message()
            .from()
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("vm:sniffed_a")
    );
    watcher.close().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
    h.shutdown().await;
}
