//! Interop: raw Communicator lines over real sockets, exactly as a stock service speaks,
//! against an in-process daemon (and, at the end, the real `commsd` binary).

#[path = "daemon_util.rs"]
mod util;

use std::time::{Duration, Instant};

use util::{start, start_with, Raw, NODE};

#[tokio::test]
async fn register_help_ready_exact_bytes_and_status_to_listeners() {
    let (_d, h) = start().await;
    let mut mon = Raw::unix_as(&h, "monitor").await;
    mon.commands("STATUS", Some("monitor")).await;
    let mut a = Raw::tcp(&h).await;
    a.send("REGISTER service=probe_a;version=1").await;
    assert_eq!(a.line().await, format!("<{NODE}:communicatord HELP"));
    assert_eq!(
        a.line().await,
        format!("<{NODE}:communicatord READY my_address={}", h.my_address())
    );
    let s = mon
        .expect_prefix(&format!(
            "<{NODE}:communicatord STATUS cache=no;server_name={NODE};service=probe_a;status=up;up_since="
        ))
        .await;
    assert!(s
        .rsplit('=')
        .next()
        .and_then(|t| t.parse::<u64>().ok())
        .is_some());
    h.shutdown().await;
}

#[tokio::test]
async fn unicast_is_stamped_reserialized_and_spoof_replaced() {
    let (_d, h) = start().await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    let mut b = Raw::unix_as(&h, "probe_b").await;
    b.send("COMMANDS list=PROBE_PING").await;
    a.send("probe_b/PROBE_PING y=1;x=\"a;b\";z=line\\nbreak")
        .await;
    b.expect(&format!(
        "<{NODE}:probe_a probe_b/PROBE_PING x=\"a;b\";y=1;z=line\\nbreak"
    ))
    .await;
    a.send("<evil:mallory probe_b/PROBE_PING n=1").await;
    b.expect(&format!("<{NODE}:probe_a probe_b/PROBE_PING n=1"))
        .await;
    a.send(&format!("{NODE}:probe_b/PROBE_PING n=2")).await;
    b.expect(&format!("<{NODE}:probe_a {NODE}:probe_b/PROBE_PING n=2"))
        .await;
    a.silent(100).await;
    h.shutdown().await;
}

#[tokio::test]
async fn broadcast_reaches_declarers_only_including_sender() {
    let (_d, h) = start().await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    a.commands("PROBE_PING", Some("probe_a")).await;
    let mut b = Raw::tcp_as(&h, "probe_b").await;
    b.commands("PROBE_PING,OTHER", Some("probe_b")).await;
    let mut c = Raw::unix_as(&h, "probe_c").await;
    c.commands("OTHER", Some("probe_c")).await;
    a.send("./PROBE_PING n=7").await;
    a.expect(&format!("<{NODE}:probe_a ./PROBE_PING n=7")).await;
    b.expect(&format!("<{NODE}:probe_a ./PROBE_PING n=7")).await;
    a.send("*/PROBE_PING n=8").await;
    b.expect(&format!("<{NODE}:probe_a */PROBE_PING n=8")).await;
    a.expect(&format!("<{NODE}:probe_a */PROBE_PING n=8")).await;
    c.silent(150).await;
    h.shutdown().await;
}

#[tokio::test]
async fn daemon_commands_answer_in_cd_wire_shapes() {
    let (_d, h) = start().await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    let _b = Raw::tcp_as(&h, "probe_b").await;
    a.send("SERVICE_STATUS service=probe_b").await;
    a.expect_prefix(&format!(
        "<{NODE}:communicatord STATUS cache=no;server_name={NODE};service=probe_b;status=up;up_since="
    ))
    .await;
    a.send("SERVICE_STATUS service=nosuch").await;
    a.expect(&format!(
        "<{NODE}:communicatord STATUS cache=no;service=nosuch;status=unknown"
    ))
    .await;
    a.send("NO_SUCH").await;
    a.expect(&format!("{NODE}:probe_a/UNKNOWN command=NO_SUCH"))
        .await;
    a.send("communicatord/NO_SUCH").await;
    a.expect(&format!("{NODE}:probe_a/UNKNOWN command=NO_SUCH"))
        .await;
    a.send("ALIVE serial=42;timestamp=1").await;
    let l = a
        .expect_prefix(&format!("{NODE}:probe_a/ABSOLUTELY reply_timestamp="))
        .await;
    assert!(l.ends_with(";serial=42;timestamp=1"), "{l}");
    a.send("HELP").await;
    a.expect(&format!(
        "{NODE}:probe_a/COMMANDS list=ACCEPT,ALIVE,CLOCK_STATUS,CLUSTER_STATUS,COMMANDS,CONNECT,DISCONNECT,FORGET,GOSSIP,HELP,INVALID,LISTEN_LOADAVG,LIST_SERVICES,LOADAVG,LOG_ROTATE,PUBLIC_IP,QUITTING,READY,REFUSE,REGISTER,REGISTER_FOR_LOADAVG,SERVICE_STATUS,SERVICE_UNAVAILABLE,SHUTDOWN,STOP,UNKNOWN,UNREGISTER,UNREGISTER_FROM_LOADAVG"
    ))
    .await;
    a.send("LIST_SERVICES").await;
    a.expect(&format!(
        "{NODE}:probe_a/SERVICES list=probe_a,probe_b;server_name={NODE}"
    ))
    .await;
    // STOP over TCP is refused by default; the daemon keeps running.
    a.send("STOP").await;
    a.expect_prefix(&format!("{NODE}:probe_a/INVALID command=STOP;reason="))
        .await;
    assert!(!h.is_stopping());
    // Messages to the daemon that it only logs get no UNKNOWN (no ping-pong).
    a.send("UNKNOWN command=FOO").await;
    a.silent(100).await;
    h.shutdown().await;
}

#[tokio::test]
async fn register_refusals_keep_the_connection_usable() {
    let (_d, h) = start().await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    let mut dup = Raw::unix(&h).await;
    dup.send("REGISTER service=probe_a;version=1").await;
    dup.expect_prefix(&format!(
        "<{NODE}:communicatord INVALID command=REGISTER;reason="
    ))
    .await;
    dup.send("REGISTER service=probe_z").await;
    let l = dup
        .expect_prefix(&format!(
            "<{NODE}:communicatord INVALID command=REGISTER;reason="
        ))
        .await;
    assert!(
        l.contains("version") && l.ends_with(";service=probe_z"),
        "{l}"
    );
    dup.send("REGISTER service=probe_z;version=2").await;
    dup.expect_prefix(&format!(
        "<{NODE}:communicatord INVALID command=REGISTER;reason="
    ))
    .await;
    // Unregistered: routed as the stock daemon does, stamped without a service.
    dup.send("probe_a/PING").await;
    a.expect(&format!("<{NODE}: probe_a/PING")).await;
    // Still usable: register under a free name.
    dup.register("probe_z", &h).await;
    dup.send("LIST_SERVICES").await;
    dup.expect(&format!(
        "{NODE}:probe_z/SERVICES list=probe_a,probe_z;server_name={NODE}"
    ))
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn bad_lines_get_invalid_and_the_connection_stays_usable() {
    let (_d, h) = start_with(|c| c.max_line = 1024).await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    a.send("CMD p=\"abc").await;
    a.expect_prefix(&format!(
        "{NODE}:probe_a/INVALID command=CMD;reason=unterminated"
    ))
    .await;
    a.send("svc/").await;
    a.expect_prefix(&format!("{NODE}:probe_a/INVALID reason="))
        .await;
    // Lowercase commands are forwarded as the stock daemon does; a non-name is refused.
    a.send("probe_a/lower x=1").await;
    a.expect(&format!("<{NODE}:probe_a probe_a/lower x=1"))
        .await;
    a.send("probe_a/9lower x=1").await;
    a.expect_prefix(&format!("{NODE}:probe_a/INVALID command=9lower;reason="))
        .await;
    let long = format!("probe_a/BIG x={}", "y".repeat(5000));
    a.send(&long).await;
    let l = a
        .expect_prefix(&format!("{NODE}:probe_a/INVALID reason=line too long"))
        .await;
    assert!(l.contains("5014"), "{l}");
    a.send_raw(&[0xff, 0xfe, b'\n']).await;
    a.expect_prefix(&format!("{NODE}:probe_a/INVALID reason="))
        .await;
    a.send("ALIVE").await;
    a.expect_prefix(&format!("{NODE}:probe_a/ABSOLUTELY")).await;
    assert!(h.stats().invalid_lines >= 5);
    h.shutdown().await;
}

#[tokio::test]
async fn unregister_and_loss_announce_down_unregistered_close_is_silent() {
    let (_d, h) = start().await;
    let mut mon = Raw::unix_as(&h, "monitor").await;
    mon.commands("STATUS", Some("monitor")).await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    mon.expect_prefix(&format!(
        "<{NODE}:communicatord STATUS cache=no;server_name={NODE};service=probe_a;status=up"
    ))
    .await;
    a.send("UNREGISTER service=probe_a").await;
    assert!(a.eof().await.is_empty());
    let down = mon
        .expect_prefix(&format!(
            "<{NODE}:communicatord STATUS cache=no;down_since="
        ))
        .await;
    assert!(down.contains(&format!(
        ";server_name={NODE};service=probe_a;status=down;up_since="
    )));
    mon.send("SERVICE_STATUS service=probe_a").await;
    mon.expect_prefix(&format!(
        "<{NODE}:communicatord STATUS cache=no;down_since="
    ))
    .await;
    let b = Raw::tcp_as(&h, "probe_b").await;
    mon.expect_prefix(&format!("<{NODE}:communicatord STATUS"))
        .await;
    drop(b);
    mon.expect_prefix(&format!(
        "<{NODE}:communicatord STATUS cache=no;down_since="
    ))
    .await;
    let mut anon = Raw::tcp(&h).await;
    anon.send("ALIVE").await;
    anon.expect_prefix("ABSOLUTELY").await;
    drop(anon);
    mon.silent(150).await;
    h.shutdown().await;
}

#[tokio::test]
async fn cache_replays_on_register_in_order() {
    let (_d, h) = start().await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    a.send("later/PING n=1").await;
    a.send("later/PING n=2;transmission_report=failure").await;
    a.expect(&format!(
        "<{NODE}:communicatord TRANSMISSION_REPORT command=PING;status=cached"
    ))
    .await;
    let mut l = Raw::unix_as(&h, "later").await;
    l.expect(&format!("<{NODE}:probe_a later/PING n=1")).await;
    l.expect(&format!(
        "<{NODE}:probe_a later/PING n=2;transmission_report=failure"
    ))
    .await;
    assert_eq!(h.stats().cached, 2);
    h.shutdown().await;
}

#[tokio::test]
async fn cache_no_reply_and_ttl_expiry_send_service_unavailable() {
    let (_d, h) = start().await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    a.send("nosvc/PING cache=\"no;reply\";comms_id=ID1").await;
    a.expect(&format!(
        "{NODE}:probe_a/SERVICE_UNAVAILABLE comms_corr=ID1;destination_service=nosvc;unsent_command=PING"
    ))
    .await;
    let t0 = Instant::now();
    a.send("nosvc/REQ cache=\"ttl=1;reply\";comms_id=ID2").await;
    a.expect(&format!(
        "{NODE}:probe_a/SERVICE_UNAVAILABLE comms_corr=ID2;destination_service=nosvc;unsent_command=REQ"
    ))
    .await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // The expired message is gone: registering nosvc replays nothing.
    let mut n = Raw::tcp_as(&h, "nosvc").await;
    n.silent(100).await;
    assert_eq!(h.stats().cache_expired, 1);
    h.shutdown().await;
}

#[tokio::test]
async fn other_server_is_dropped_with_report() {
    let (_d, h) = start().await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    a.send("far:probe_b/PING transmission_report=failure").await;
    a.expect(&format!(
        "<{NODE}:communicatord TRANSMISSION_REPORT command=PING;status=failed"
    ))
    .await;
    assert_eq!(h.stats().dropped_other_server, 1);
    h.shutdown().await;
}

#[tokio::test]
async fn json_line_is_routed() {
    let (_d, h) = start().await;
    let mut a = Raw::tcp_as(&h, "probe_a").await;
    a.send(r#"{"service":"probe_a","command":"PING","parameters":{"n":1}}"#)
        .await;
    a.expect(&format!("<{NODE}:probe_a probe_a/PING n=1")).await;
    h.shutdown().await;
}

/// The real `commsd` binary as a child process, on a temp Unix socket and port 0; killed
/// with SIGKILL at the end.
#[tokio::test]
async fn real_commsd_binary_speaks_the_wire() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("commsd.sock");
    let ready = dir.path().join("ready");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_commsd"))
        .args([
            "--name",
            NODE,
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--unix",
        ])
        .arg(&sock)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn commsd");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut tcp = None;
    for _ in 0..3 {
        let l = tokio::time::timeout(util::WAIT, lines.next_line())
            .await
            .expect("listening lines")
            .expect("read")
            .expect("a line");
        if let Some(a) = l.strip_prefix("commsd: listening tcp ") {
            tcp = Some(a.to_owned());
        }
    }
    let tcp = tcp.expect("tcp line");
    let ready_text = std::fs::read_to_string(&ready).expect("ready file");
    assert!(ready_text.contains(&format!("commsd: listening tcp {tcp}")));
    let mut a = Raw::unix_at(&sock).await;
    a.send("REGISTER service=probe_a;version=1").await;
    a.expect(&format!("<{NODE}:communicatord HELP")).await;
    a.expect(&format!("<{NODE}:communicatord READY my_address={tcp}"))
        .await;
    let s = tokio::net::TcpStream::connect(&tcp).await.expect("tcp");
    drop(s);
    a.send("probe_a/PROBE_PING y=1;x=\"a;b\";z=line\\nbreak")
        .await;
    a.expect(&format!(
        "<{NODE}:probe_a probe_a/PROBE_PING x=\"a;b\";y=1;z=line\\nbreak"
    ))
    .await;
    child.start_kill().expect("SIGKILL");
    let status = child.wait().await.expect("wait");
    assert!(!status.success());
}
