//! Peer-link TLS building blocks ([`commsd::tls::PeerTls`]) over real loopback sockets:
//! an allowed peer links in both directions and each side learns the other's name; a peer
//! whose certificate names no allowed peer is refused by the acceptor and by the dialler; a
//! dialler without a client certificate, or with one from another CA, is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::Duration;

use comms_test_support::{client_config, Ca, Leaf, Pki};
use commsd::tls::{PeerIdentity, PeerTls, PeerTlsContext, TlsError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn peer(leaf: &Leaf, ca: &Ca, allowed: &[&str]) -> PeerTlsContext {
    PeerTls::new(&leaf.cert, &leaf.key, &ca.pem)
        .allow(allowed.iter().copied())
        .load()
        .unwrap()
}

/// node1's side, allowing node2.
fn p1_for(n1: &Leaf, ca: &Ca) -> PeerTlsContext {
    peer(n1, ca, &["node2.cluster"])
}

/// One accepted link on a fresh loopback listener, and one dial to it.
async fn link(
    acceptor: &PeerTlsContext,
    dialler: &PeerTlsContext,
    expected: Option<&str>,
) -> (
    Result<PeerIdentity, TlsError>,
    Result<PeerIdentity, TlsError>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = acceptor.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match acceptor.accept(tcp).await {
            Ok((mut tls, who)) => {
                // Carry one cd: line each way to prove the stream works.
                let mut line = String::new();
                let mut r = BufReader::new(&mut tls);
                if let Err(e) = r.read_line(&mut line).await {
                    // The dialler refused us after the handshake and hung up.
                    return Err(TlsError::Handshake(e));
                }
                assert_eq!(line, "CONNECT version=1\n");
                tls.write_all(b"ACCEPT version=1\n").await.unwrap();
                tls.flush().await.unwrap();
                Ok(who)
            }
            Err(e) => Err(e),
        }
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client = match dialler.connect(tcp, expected).await {
        Ok((mut tls, who)) => {
            tls.write_all(b"CONNECT version=1\n").await.unwrap();
            tls.flush().await.unwrap();
            let mut line = String::new();
            let read = tokio::time::timeout(
                Duration::from_secs(10),
                BufReader::new(&mut tls).read_line(&mut line),
            )
            .await
            .unwrap();
            match read {
                Ok(n) if n > 0 && line == "ACCEPT version=1\n" => Ok(who),
                // TLS 1.3: a refused client certificate shows on the first read.
                Ok(_) => Err(TlsError::Config(format!("link closed: {line:?}"))),
                Err(e) => Err(TlsError::Handshake(e)),
            }
        }
        Err(e) => Err(e),
    };
    let server = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    (server, client)
}

#[tokio::test]
async fn allowed_peers_link_both_ways_and_learn_each_others_name() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("cluster").unwrap();
    let n1 = pki
        .leaf(&ca, "node1", &["node1.cluster", "10.0.0.1"])
        .unwrap();
    let n2 = pki.leaf(&ca, "node2", &["node2.cluster"]).unwrap();
    let p1 = peer(&n1, &ca, &["node2.cluster", "node3.cluster"]);
    let p2 = peer(&n2, &ca, &["10.0.0.1"]);

    let (server, client) = link(&p1, &p2, None).await;
    assert_eq!(server.unwrap().name, "node2.cluster");
    assert_eq!(client.unwrap().name, "10.0.0.1");

    let (server, client) = link(&p2, &p1, Some("node2.cluster")).await;
    assert_eq!(server.unwrap().name, "10.0.0.1");
    assert_eq!(client.unwrap().name, "node2.cluster");
}

#[tokio::test]
async fn a_peer_not_on_the_allow_list_is_refused_on_both_sides() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("cluster").unwrap();
    let n1 = pki.leaf(&ca, "node1", &["node1.cluster"]).unwrap();
    let n2 = pki.leaf(&ca, "node2", &["node2.cluster"]).unwrap();
    let stranger = pki.leaf(&ca, "stranger", &["stranger.cluster"]).unwrap();
    let p1 = peer(&n1, &ca, &["node2.cluster"]);
    let p2 = peer(&n2, &ca, &["node1.cluster"]);
    // The stranger allows everyone it might dial, but nobody allows it.
    let ps = peer(&stranger, &ca, &["node1.cluster", "node2.cluster"]);

    // The stranger dials node1: node1 refuses its certificate.
    let (server, client) = link(&p1, &ps, None).await;
    assert!(
        matches!(server, Err(TlsError::PeerNotAllowed { .. })),
        "{server:?}"
    );
    assert!(client.is_err(), "the stranger gets no ACCEPT: {client:?}");

    // node2 dials the stranger's listener: node2 refuses the server certificate.
    let (server, client) = link(&ps, &p2, None).await;
    assert!(
        matches!(client, Err(TlsError::PeerNotAllowed { .. })),
        "{client:?}"
    );
    assert!(server.is_err(), "{server:?}");

    // Expecting an allowed name the certificate does not carry: refused after the handshake.
    let p2_both = peer(&n2, &ca, &["node1.cluster", "stranger.cluster"]);
    let (_, client) = link(&p1_for(&n1, &ca), &p2_both, Some("stranger.cluster")).await;
    assert!(
        matches!(client, Err(TlsError::PeerNotAllowed { .. })),
        "{client:?}"
    );

    // Expecting a name that is not allowed fails before any byte is sent.
    let tcp = TcpStream::connect(
        TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap(),
    )
    .await
    .unwrap();
    let e = p2.connect(tcp, Some("node9.cluster")).await.err();
    assert!(matches!(e, Some(TlsError::PeerNotAllowed { .. })), "{e:?}");
}

#[tokio::test]
async fn a_dialler_without_a_certificate_or_from_another_ca_is_refused() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("cluster").unwrap();
    let other = pki.ca("other").unwrap();
    let n1 = pki.leaf(&ca, "node1", &["node1.cluster"]).unwrap();
    let fake = pki.leaf(&other, "node2", &["node2.cluster"]).unwrap();
    let p1 = peer(&n1, &ca, &["node2.cluster"]);

    for (what, cfg) in [
        ("no certificate", client_config(&ca.pem, None).unwrap()),
        (
            "certificate from another CA",
            client_config(&ca.pem, Some(&fake)).unwrap(),
        ),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let p1 = p1.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            p1.accept(tcp).await.map(|(_, who)| who)
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("node1.cluster").unwrap();
        // The dialler may finish its side (TLS 1.3); the acceptor must refuse.
        let _client = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await;
        let r = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(r, Err(TlsError::Handshake(_))), "{what}: {r:?}");
    }
}

#[tokio::test]
async fn bad_peer_settings_are_refused_at_load() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("cluster").unwrap();
    let n1 = pki.leaf(&ca, "node1", &["node1.cluster"]).unwrap();
    let empty = PeerTls::new(&n1.cert, &n1.key, &ca.pem).load();
    assert!(matches!(empty, Err(TlsError::Config(_))), "{empty:?}");
    let bad_name = PeerTls::new(&n1.cert, &n1.key, &ca.pem)
        .allow(["not a name!"])
        .load();
    assert!(
        matches!(bad_name, Err(TlsError::BadServerName(_))),
        "{bad_name:?}"
    );
    let no_ca = PeerTls::new(&n1.cert, &n1.key, pki.path("none.pem"))
        .allow(["node2.cluster"])
        .load();
    assert!(matches!(no_ca, Err(TlsError::Read { .. })), "{no_ca:?}");
}

#[tokio::test]
async fn a_silent_peer_times_out_instead_of_holding_the_link() {
    let pki = Pki::new().unwrap();
    let ca = pki.ca("cluster").unwrap();
    let n1 = pki.leaf(&ca, "node1", &["node1.cluster"]).unwrap();
    let mut settings = PeerTls::new(&n1.cert, &n1.key, &ca.pem).allow(["node2.cluster"]);
    settings.handshake_timeout = Duration::from_millis(300);
    let p1 = settings.load().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _silent = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let started = tokio::time::Instant::now();
    let r = p1.accept(tcp).await.map(|(_, who)| who);
    assert!(matches!(r, Err(TlsError::HandshakeTimeout(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
