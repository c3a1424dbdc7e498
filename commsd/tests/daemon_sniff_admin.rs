//! Issue 18 point 8: `SNIFF` only for admins, by the same rule as `STOP` (`AdminRules`): the
//! admin token on any stream connection (TLS included), root or the daemon's user on the Unix
//! socket, or loopback TCP with `allow_sniff_from_tcp`. Everyone else gets `INVALID` naming
//! what would allow it, and the daemon keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

#[path = "daemon_util.rs"]
mod daemon_util;

use comms_test_support::{client_config, LineClient, Pki};
use commsd::DaemonHandle;
use daemon_util::{start, start_with, Raw, NODE};

const TOKEN: &str = "s3cret-admin-token";

/// Asks `SNIFF` (with `params`) and returns the refusal line; panics if it was accepted.
async fn refused(s: &mut Raw, params: &str) -> String {
    s.send(&format!("SNIFF{params}")).await;
    let line = s.line().await;
    assert!(
        line.starts_with("INVALID command=SNIFF;reason=SNIFF refused: "),
        "SNIFF{params} must be refused: {line}"
    );
    assert!(
        line.contains("admin_token"),
        "the reason names the token: {line}"
    );
    line
}

async fn accepted(s: &mut Raw, params: &str) {
    s.send(&format!("SNIFF{params}")).await;
    s.expect_prefix(&format!("<{NODE}:communicatord SNIFFING max_round="))
        .await;
}

/// `a` sends `b/PING n=N` and the sniffer `s` gets its copy.
async fn sniffs_a_routed_line(h: &DaemonHandle, s: &mut Raw, n: u32) {
    let mut a = Raw::unix(h).await;
    a.register(&format!("sa{n}"), h).await;
    let mut b = Raw::unix(h).await;
    b.register(&format!("sb{n}"), h).await;
    b.commands("PING", Some(&format!("sb{n}"))).await;
    a.send(&format!("sb{n}/PING n={n}")).await;
    b.expect(&format!("<{NODE}:sa{n} sb{n}/PING n={n}")).await;
    s.expect(&format!("<{NODE}:sa{n} sb{n}/PING n={n}")).await;
}

#[tokio::test]
async fn sniff_from_loopback_tcp_without_the_token_is_refused() {
    let (_dir, h) = start_with(|c| c.admin.admin_token = Some(TOKEN.into())).await;
    let mut t = Raw::tcp(&h).await;
    let line = refused(&mut t, "").await;
    assert!(line.contains("TCP connection"), "{line}");
    assert!(line.contains("allow_sniff_from_tcp"), "{line}");
    // Refused, the connection is not a sniffer: a routed line does not reach it.
    let mut a = Raw::unix_as(&h, "a").await;
    a.send("a/PING n=1").await;
    t.silent(200).await;
    assert!(!h.is_stopping());
}

#[tokio::test]
async fn sniff_with_a_wrong_token_is_refused_on_tcp_and_unix() {
    let (_dir, h) = start_with(|c| c.admin.admin_token = Some(TOKEN.into())).await;
    let mut t = Raw::tcp(&h).await;
    let line = refused(&mut t, " admin_token=s3cret-admin-tokeN").await;
    assert!(line.contains("wrong admin_token"), "{line}");
    assert!(!line.contains(TOKEN), "the token is never echoed: {line}");
    // A wrong token is refused even where the connection alone would be enough.
    let mut u = Raw::unix(&h).await;
    let line = refused(&mut u, " admin_token=nope").await;
    assert!(line.contains("wrong admin_token"), "{line}");
}

#[tokio::test]
async fn sniff_with_the_admin_token_is_accepted_on_tcp_and_tls_and_gets_routed_lines() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("ca").unwrap();
    let server = pki.leaf(&ca, "server", &["localhost"]).unwrap();
    let (_dir, h) = start_with(|c| {
        c.admin.admin_token = Some(TOKEN.into());
        c.tls = Some(commsd::TlsListenerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            &server.cert,
            &server.key,
        ));
    })
    .await;
    let mut t = Raw::tcp(&h).await;
    accepted(&mut t, &format!(" admin_token={TOKEN}")).await;
    sniffs_a_routed_line(&h, &mut t, 1).await;

    let tls = LineClient::tls(h.tls_addr().unwrap(), client_config(&ca.pem, None).unwrap())
        .await
        .unwrap();
    let mut s = Raw(tls.into());
    let line = refused(&mut s, "").await;
    assert!(line.contains("TLS connection"), "{line}");
    accepted(&mut s, &format!(" admin_token={TOKEN}")).await;
    sniffs_a_routed_line(&h, &mut s, 2).await;
}

#[tokio::test]
async fn unix_sniff_is_for_root_and_the_daemons_user_only() {
    // Default uids: root and the socket's owner, i.e. whoever runs this test.
    let (_dir, h) = start().await;
    let mut u = Raw::unix(&h).await;
    accepted(&mut u, "").await;
    sniffs_a_routed_line(&h, &mut u, 3).await;

    // The test runs as some uid; make only another one an admin.
    let (_dir2, h2) = start_with(|c| c.admin.unix_admin_uids = vec![u32::MAX - 7]).await;
    let mut u = Raw::unix(&h2).await;
    let line = refused(&mut u, "").await;
    assert!(line.contains("is not an admin uid"), "{line}");
}

#[tokio::test]
async fn allow_sniff_from_tcp_admits_loopback_tcp_without_a_token() {
    let (_dir, h) = start_with(|c| c.admin.allow_sniff_from_tcp = true).await;
    let mut t = Raw::tcp(&h).await;
    accepted(&mut t, "").await;
    sniffs_a_routed_line(&h, &mut t, 4).await;
    // The opt-in is for SNIFF only: STOP from TCP is still refused.
    let mut other = Raw::tcp(&h).await;
    other.send("STOP").await;
    other
        .expect_prefix("INVALID command=STOP;reason=STOP refused: ")
        .await;
    assert!(!h.is_stopping());
}
