//! Rough cost of TLS on the service path: connect + handshake + REGISTER→READY latency, and
//! one-way line throughput (one sender, one receiver, stock-service style raw lines) through
//! an in-process daemon, over loopback TCP vs TLS (mutual TLS, ECDSA P-256 certificates made
//! with rcgen). Not a benchmark of record (see `bench/`): a probe for the TLS overhead.
//!
//! ```text
//! cargo run --release -p comms-native --example tls_probe -- [LINES]
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comms_native::tls::ClientTls;
use commsd::{Daemon, DaemonConfig, TlsListenerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

type Io = (
    Box<dyn AsyncRead + Unpin + Send>,
    Box<dyn AsyncWrite + Unpin + Send>,
);

async fn open(addr: SocketAddr, tls: Option<Arc<rustls::ClientConfig>>) -> anyhow::Result<Io> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(match tls {
        None => {
            let (r, w) = tcp.into_split();
            (Box::new(r), Box::new(w))
        }
        Some(cfg) => {
            let name = rustls_pki_types::ServerName::try_from("localhost")?;
            let s = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await?;
            let (r, w) = tokio::io::split(s);
            (Box::new(r), Box::new(w))
        }
    })
}

/// Connects and registers; returns the reader (after READY) and the writer.
async fn register(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    name: &str,
) -> anyhow::Result<(
    BufReader<Box<dyn AsyncRead + Unpin + Send>>,
    Box<dyn AsyncWrite + Unpin + Send>,
)> {
    let (r, mut w) = open(addr, tls).await?;
    w.write_all(format!("REGISTER service={name};version=1\n").as_bytes())
        .await?;
    w.flush().await?;
    let mut r = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            anyhow::bail!("closed before READY");
        }
        if line.contains("READY") {
            return Ok((r, w));
        }
    }
}

async fn latency(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Duration> {
    let mut all = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        let (_r, mut w) = register(addr, tls.clone(), &format!("lat{i}")).await?;
        all.push(t.elapsed());
        w.shutdown().await?;
    }
    all.sort();
    Ok(all[all.len() / 2])
}

async fn throughput(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    lines: usize,
    tag: &str,
) -> anyhow::Result<f64> {
    let (mut rx, _rx_w) = register(addr, tls.clone(), &format!("recv_{tag}")).await?;
    let (_tx_r, mut tx) = register(addr, tls, &format!("send_{tag}")).await?;
    let line = format!("recv_{tag}/DATA payload={}\n", "x".repeat(100));
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let mut batch = String::new();
        for _ in 0..lines / 100 {
            batch.clear();
            for _ in 0..100 {
                batch.push_str(&line);
            }
            tx.write_all(batch.as_bytes()).await?;
        }
        tx.flush().await?;
        anyhow::Ok(tx)
    });
    let mut got = 0usize;
    let mut buf = String::new();
    while got < lines / 100 * 100 {
        buf.clear();
        if rx.read_line(&mut buf).await? == 0 {
            anyhow::bail!("receiver closed after {got}");
        }
        if buf.contains("/DATA") {
            got += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let _tx = sender.await??;
    Ok(got as f64 / secs)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let lines: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir()?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca.self_signed(&ca_key)?;
    let leaf = |sans: Vec<String>,
                stem: &str|
     -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(sans)?;
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &ca, &ca_key)?;
        let (c, k) = (
            dir.path().join(format!("{stem}.crt")),
            dir.path().join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        Ok((c, k))
    };
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, ca.pem())?;
    let (scert, skey) = leaf(vec!["localhost".into()], "server")?;
    let (ccert, ckey) = leaf(vec!["client.probe".into()], "client")?;

    let mut cfg = DaemonConfig::ephemeral("probe", dir.path().join("d.sock"));
    cfg.udp = None;
    cfg.tls =
        Some(TlsListenerConfig::new("127.0.0.1:0".parse()?, scert, skey).with_client_ca(&ca_pem));
    let h = Daemon::start(cfg).await?;
    let (tcp, tls_addr) = (h.tcp_addr().expect("tcp"), h.tls_addr().expect("tls"));
    let client = ClientTls {
        ca: Some(ca_pem),
        cert: Some(ccert),
        key: Some(ckey),
        server_name: None,
    }
    .client_config()?;

    println!(
        "connect+REGISTER→READY, median of 50:  tcp {:?}  tls(mutual) {:?}",
        latency(tcp, None).await?,
        latency(tls_addr, Some(client.clone())).await?
    );
    let plain = throughput(tcp, None, lines, "tcp").await?;
    let secure = throughput(tls_addr, Some(client), lines, "tls").await?;
    println!(
        "one-way lines/s ({lines} lines of ~130 B): tcp {plain:.0}  tls {secure:.0}  ({:.0}%)",
        100.0 * secure / plain
    );
    h.shutdown().await;
    Ok(())
}
