//! Administrative commands: who may STOP/SHUTDOWN the daemon (SO_PEERCRED uids, admin token,
//! TCP rule). A refused request gets `INVALID` and the daemon keeps serving everyone.

#[path = "daemon_util.rs"]
mod util;

use std::time::Duration;

use commsd::DaemonHandle;
use util::{start, start_with, Raw, NODE};

/// Proves the daemon still routes: `b` sends to `a` and `a` gets it.
async fn still_routes(h: &DaemonHandle, a: &mut Raw, b: &mut Raw) {
    assert!(!h.is_stopping(), "the daemon must not be stopping");
    b.send("probe_a/PING n=1").await;
    a.expect(&format!("<{NODE}:probe_b probe_a/PING n=1")).await;
}

async fn pair(h: &DaemonHandle) -> (Raw, Raw) {
    let mut a = Raw::tcp(h).await;
    a.register("probe_a", h).await;
    let mut b = Raw::tcp(h).await;
    b.register("probe_b", h).await;
    (a, b)
}

async fn stopped(h: &DaemonHandle) {
    tokio::time::timeout(Duration::from_secs(5), h.stopped())
        .await
        .expect("the daemon stops");
}

#[tokio::test]
async fn stop_from_tcp_is_refused_by_default_and_the_daemon_keeps_serving() {
    let (_d, h) = start().await;
    let (mut a, mut b) = pair(&h).await;
    let mut intruder = Raw::tcp(&h).await;
    for cmd in ["STOP", "SHUTDOWN"] {
        intruder.send(cmd).await;
        let line = intruder
            .expect_prefix(&format!("INVALID command={cmd};reason="))
            .await;
        assert!(line.contains("TCP"), "{line}");
    }
    // A registered service is not more privileged than an anonymous connection.
    b.send("STOP").await;
    b.expect_prefix(&format!("{NODE}:probe_b/INVALID command=STOP;reason="))
        .await;
    still_routes(&h, &mut a, &mut b).await;
}

#[tokio::test]
async fn unix_peer_outside_the_admin_uids_is_refused() {
    // The test runs as some uid; allow only another one.
    let (_d, h) = start_with(|c| c.admin.unix_admin_uids = vec![u32::MAX - 7]).await;
    let (mut a, mut b) = pair(&h).await;
    let mut local = Raw::unix(&h).await;
    local.send("STOP").await;
    let line = local.expect_prefix("INVALID command=STOP;reason=").await;
    assert!(line.contains("is not an admin uid"), "{line}");
    still_routes(&h, &mut a, &mut b).await;
}

#[tokio::test]
async fn the_socket_owner_may_stop_over_unix_by_default() {
    // Default rules: root and the socket file's owner (this test's own user) are admins.
    let (_d, h) = start().await;
    let mut local = Raw::unix(&h).await;
    local.send("SHUTDOWN").await;
    stopped(&h).await;
}

#[tokio::test]
async fn admin_token_allows_stop_from_tcp_and_a_wrong_token_is_refused() {
    let (_d, h) = start_with(|c| {
        c.admin.admin_token = Some("s3cret-token".into());
        c.admin.deny_stop_from_unix = true;
    })
    .await;
    let (mut a, mut b) = pair(&h).await;
    let mut tcp = Raw::tcp(&h).await;
    tcp.send("STOP admin_token=guess").await;
    let line = tcp.expect_prefix("INVALID command=STOP;reason=").await;
    assert!(line.contains("wrong admin_token"), "{line}");
    assert!(
        !line.contains("guess") && !line.contains("s3cret"),
        "{line}"
    );
    // deny_stop_from_unix: even the owner needs the token.
    let mut unix = Raw::unix(&h).await;
    unix.send("STOP").await;
    unix.expect_prefix("INVALID command=STOP;reason=").await;
    still_routes(&h, &mut a, &mut b).await;

    tcp.send("STOP admin_token=s3cret-token").await;
    stopped(&h).await;
}

#[tokio::test]
async fn deny_stop_refuses_even_the_token_which_still_admits_sniff() {
    // The server's embedded daemon: its token (derived from the fleet key) is for SNIFF.
    let (_d, h) = start_with(|c| {
        c.admin.admin_token = Some("s3cret-token".into());
        c.admin.deny_stop = true;
    })
    .await;
    let (mut a, mut b) = pair(&h).await;
    let mut tcp = Raw::tcp(&h).await;
    tcp.send("STOP admin_token=s3cret-token").await;
    let line = tcp.expect_prefix("INVALID command=STOP;reason=").await;
    assert!(line.contains("embeds it"), "{line}");
    let mut unix = Raw::unix(&h).await;
    unix.send("SHUTDOWN").await;
    unix.expect_prefix("INVALID command=SHUTDOWN;reason=").await;
    still_routes(&h, &mut a, &mut b).await;
    let mut sniffer = Raw::tcp(&h).await;
    sniffer.send("SNIFF admin_token=s3cret-token").await;
    sniffer
        .expect_prefix(&format!("<{NODE}:communicatord SNIFFING "))
        .await;
}
