//! `commsd`: the comms routing daemon (a Communicator `communicatord` replacement).
//!
//! Configuration: built-in defaults (the stock Communicator endpoints), then the `[daemon]`
//! section of `--config FILE` (TOML), then command-line flags. Logs go to stderr through
//! `tracing-subscriber` (`RUST_LOG`, default `info`). Once every listener is bound, one line
//! per listener is printed to stdout (`commsd: listening tcp 127.0.0.1:4040`), and the same
//! lines are written to `--ready-file` if given. SIGINT/SIGTERM (or an allowed `STOP`) stop
//! the daemon gracefully.
//!
//! ```toml
//! [daemon]
//! name = "vm"
//! unix = "/run/communicator/communicatord.sock"   # "" disables
//! tcp = "127.0.0.1:4040"                          # "" disables; loopback only
//! udp = "127.0.0.1:4041"                          # "" disables
//! tls = "0.0.0.0:4043"                          # secure listener (cds:); any address; "" disables
//! tls_cert = "/etc/communicator/keys/communicatord.crt"   # PEM chain, leaf first
//! tls_key = "/etc/communicator/keys/communicatord.key"    # PEM private key
//! tls_client_ca = "/etc/communicator/keys/clients-ca.crt" # optional: mutual TLS
//! tls_handshake_timeout_ms = 10000
//! tls_max_pending_handshakes = 64
//! udp_secret = "s3cret"
//! udp_max_datagram = 1024
//! max_connections = 1000
//! max_line = 65536
//! outbound_queue = 1024
//! cache_max_messages = 10000
//! cache_max_bytes = 16777216
//! cache_ttl_secs = 60
//! allow_stop_from_tcp = false
//! allow_sniff_from_tls = false                   # SNIFF over the TLS listener
//! deny_stop_from_unix = false
//! unix_admin_uids = [1000]      # default: root and the socket owner (the daemon's user)
//! admin_token_file = "/etc/comms/admin.token"   # STOP/SHUTDOWN with admin_token=<its text>
//! shutdown_grace_ms = 200
//! flush_timeout_ms = 2000
//! # cluster (docs/NATIVE.md "Cluster"); no remote_listen: a single node
//! remote_listen = "10.0.0.5:4042"                 # private IPv4 (loopback: allow_loopback_peers)
//! peer_my_address = "10.0.0.5:4042"               # default: the bound remote_listen address
//! neighbors = "10.0.0.6,10.0.0.7:4042"           # port 4042 when omitted
//! allow_loopback_peers = false
//! max_peer_links = 100
//! peer_retry_secs = "1,1,1,3,5,10,20,30,60"
//! peer_tls_cert = "/etc/comms/node1.crt"          # mutual TLS on peer links (all four keys)
//! peer_tls_key = "/etc/comms/node1.key"
//! peer_tls_ca = "/etc/comms/fleet-ca.crt"
//! peer_allow = "node2.example,node3.example"     # names the peers' certificates must carry
//! ```
//!
//! With `remote_listen`, the bound address is printed as `commsd: listening peer ADDR`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use comms_native::daemon::{
    Daemon, DaemonConfig, DaemonHandle, TlsListenerConfig, DEFAULT_PEER_PORT,
};
use serde::Deserialize;

/// The comms routing daemon, speaking the Communicator cd: line protocol.
#[derive(Debug, Parser)]
#[command(
    name = "commsd",
    version,
    about = "The comms routing daemon (Communicator cd: line protocol)"
)]
struct Cli {
    /// TOML configuration file with a [daemon] section (flags override it).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Node name (server_name); default: the hostname, '-'→'_', dots removed.
    #[arg(long)]
    name: Option<String>,
    /// Unix stream socket path.
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Do not listen on a Unix socket.
    #[arg(long, conflicts_with = "unix")]
    no_unix: bool,
    /// Loopback TCP listener (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    tcp: Option<SocketAddr>,
    /// Do not listen on TCP.
    #[arg(long, conflicts_with = "tcp")]
    no_tcp: bool,
    /// UDP listener (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    udp: Option<SocketAddr>,
    /// Do not listen on UDP.
    #[arg(long, conflicts_with = "udp")]
    no_udp: bool,
    /// Secure (TLS) service listener for cds: clients, on any address (e.g. 0.0.0.0:4043);
    /// needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR")]
    tls: Option<SocketAddr>,
    /// Do not listen on TLS (overrides the config file).
    #[arg(long, conflicts_with = "tls")]
    no_tls: bool,
    /// PEM certificate chain (leaf first) of the TLS listener.
    #[arg(long, value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS listener (PKCS#8, RSA or EC).
    #[arg(long, value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates: when set, TLS clients must present a certificate signed by
    /// one of them (mutual TLS).
    #[arg(long, value_name = "PATH")]
    tls_client_ca: Option<PathBuf>,
    /// Bound on one TLS handshake, in milliseconds (default 10000).
    #[arg(long, value_name = "MS")]
    tls_handshake_timeout_ms: Option<u64>,
    /// TLS handshakes in progress at once (default 64); more connections are closed at once.
    #[arg(long, value_name = "N")]
    tls_max_pending_handshakes: Option<usize>,
    /// Secret UDP datagrams must carry as secret_code.
    #[arg(long, env = "COMMSD_UDP_SECRET", hide_env_values = true)]
    udp_secret: Option<String>,
    /// Largest accepted UDP datagram in bytes.
    #[arg(long)]
    udp_max_datagram: Option<usize>,
    /// my_address announced in READY.
    #[arg(long)]
    my_address: Option<String>,
    /// Maximum simultaneous stream connections.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Maximum line length in bytes.
    #[arg(long)]
    max_line: Option<usize>,
    /// Per-connection outbound queue, in batches.
    #[arg(long)]
    outbound_queue: Option<usize>,
    /// Maximum number of cached messages.
    #[arg(long)]
    cache_max_messages: Option<usize>,
    /// Maximum bytes of cached messages.
    #[arg(long)]
    cache_max_bytes: Option<usize>,
    /// Default cache TTL in seconds.
    #[arg(long)]
    cache_ttl_secs: Option<u64>,
    /// Accept STOP/SHUTDOWN from TCP connections too (default: Unix socket only).
    #[arg(long)]
    allow_stop_from_tcp: bool,
    /// Accept SNIFF (copies of all routed traffic) from TLS connections (default: refused,
    /// the TLS listener may be reachable from other hosts).
    #[arg(long)]
    allow_sniff_from_tls: bool,
    /// Listener for other daemons (remote_listen), e.g. 10.0.0.5:4042; port 0: any free port.
    /// Without it the daemon is a single node.
    #[arg(long, value_name = "ADDR")]
    remote_listen: Option<SocketAddr>,
    /// Address announced to peer daemons (default: the bound remote_listen address).
    #[arg(long, value_name = "ADDR")]
    peer_my_address: Option<SocketAddr>,
    /// Neighbour daemons, comma-separated ip[:port] (port 4042 when omitted).
    #[arg(long, value_name = "LIST")]
    neighbors: Option<String>,
    /// Allow loopback (127.0.0.x) peer addresses, to run a cluster on one machine.
    #[arg(long)]
    allow_loopback_peers: bool,
    /// Most peer links at once (a CONNECT beyond gets a bare REFUSE).
    #[arg(long)]
    max_peer_links: Option<usize>,
    /// Pauses between reconnection attempts to a neighbour, comma-separated seconds
    /// (decimals allowed; the last repeats); default 1,1,1,3,5,10,20,30,60.
    #[arg(long, value_name = "LIST")]
    peer_retry_secs: Option<String>,
    /// Mutual TLS on peer links: this daemon's certificate (PEM; with --peer-tls-key,
    /// --peer-tls-ca and --peer-allow).
    #[arg(long, value_name = "FILE")]
    peer_tls_cert: Option<PathBuf>,
    /// Private key of --peer-tls-cert (PEM).
    #[arg(long, value_name = "FILE")]
    peer_tls_key: Option<PathBuf>,
    /// CA that peer daemons' certificates must chain to (PEM).
    #[arg(long, value_name = "FILE")]
    peer_tls_ca: Option<PathBuf>,
    /// Peer names (certificate subject alternative names) allowed to link, comma-separated.
    #[arg(long, value_name = "LIST")]
    peer_allow: Option<String>,
    /// File holding the admin token: STOP/SHUTDOWN carrying admin_token=<token> are accepted
    /// from any connection (the token never appears in `ps` or logs).
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// The admin token itself (prefer --admin-token-file or the environment).
    #[arg(
        long,
        env = "COMMSD_ADMIN_TOKEN",
        hide_env_values = true,
        conflicts_with = "admin_token_file"
    )]
    admin_token: Option<String>,
    /// File written with one line per listener once all are bound.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    daemon: DaemonSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonSection {
    name: Option<String>,
    unix: Option<String>,
    tcp: Option<String>,
    udp: Option<String>,
    tls: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    tls_handshake_timeout_ms: Option<u64>,
    tls_max_pending_handshakes: Option<usize>,
    udp_secret: Option<String>,
    udp_max_datagram: Option<usize>,
    my_address: Option<String>,
    max_connections: Option<usize>,
    max_line: Option<usize>,
    outbound_queue: Option<usize>,
    cache_max_messages: Option<usize>,
    cache_max_bytes: Option<usize>,
    cache_ttl_secs: Option<u64>,
    allow_stop_from_tcp: Option<bool>,
    allow_sniff_from_tls: Option<bool>,
    deny_stop_from_unix: Option<bool>,
    unix_admin_uids: Option<Vec<u32>>,
    admin_token_file: Option<PathBuf>,
    shutdown_grace_ms: Option<u64>,
    flush_timeout_ms: Option<u64>,
    remote_listen: Option<String>,
    peer_my_address: Option<String>,
    neighbors: Option<String>,
    allow_loopback_peers: Option<bool>,
    max_peer_links: Option<usize>,
    peer_retry_secs: Option<String>,
    peer_tls_cert: Option<PathBuf>,
    peer_tls_key: Option<PathBuf>,
    peer_tls_ca: Option<PathBuf>,
    peer_allow: Option<String>,
}

/// `ip[:port]` list (port 4042 when omitted).
fn neighbor_list(s: &str) -> anyhow::Result<Vec<SocketAddr>> {
    s.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<SocketAddr>()
                .or_else(|_| {
                    n.parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, DEFAULT_PEER_PORT))
                })
                .with_context(|| format!("neighbour {n:?} is not an ip[:port]"))
        })
        .collect()
}

/// Comma-separated seconds (decimals allowed, e.g. `0.2`).
fn retry_list(s: &str) -> anyhow::Result<Vec<Duration>> {
    let v: Vec<Duration> = s
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<f64>()
                .ok()
                .and_then(|f| Duration::try_from_secs_f64(f).ok())
                .with_context(|| format!("retry pause {n:?} is not a number of seconds"))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!v.is_empty(), "the retry schedule is empty");
    Ok(v)
}

fn addr(s: &str, what: &str) -> anyhow::Result<Option<SocketAddr>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .with_context(|| format!("[daemon] {what} = {s:?} is not an ip:port"))
}

/// The TLS listener settings gathered from the file and the flags (flags win), turned into
/// `DaemonConfig::tls` once both are read.
#[derive(Debug, Default)]
struct TlsParts {
    addr: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    handshake_timeout_ms: Option<u64>,
    max_pending_handshakes: Option<usize>,
}

impl TlsParts {
    fn into_config(self) -> anyhow::Result<Option<TlsListenerConfig>> {
        let Some(addr) = self.addr else {
            if self.cert.is_some() || self.key.is_some() || self.client_ca.is_some() {
                tracing::warn!("tls_cert / tls_key / tls_client_ca given without a tls listener address: ignored");
            }
            return Ok(None);
        };
        let (Some(cert), Some(key)) = (self.cert, self.key) else {
            anyhow::bail!(
                "the TLS listener {addr} needs tls_cert and tls_key (--tls-cert, --tls-key)"
            );
        };
        let mut t = TlsListenerConfig::new(addr, cert, key);
        t.tls.client_ca = self.client_ca;
        if let Some(ms) = self.handshake_timeout_ms {
            t.handshake_timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(n) = self.max_pending_handshakes {
            t.max_pending_handshakes = n.max(1);
        }
        Ok(Some(t))
    }
}

fn apply_file(cfg: &mut DaemonConfig, tls: &mut TlsParts, path: &Path) -> anyhow::Result<()> {
    let text = comms_core::config::read_config_file(path)?;
    let file: FileConfig =
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
    let d = file.daemon;
    if let Some(v) = d.name {
        cfg.name = v;
    }
    if let Some(v) = d.unix {
        cfg.unix_path = (!v.is_empty()).then(|| PathBuf::from(v));
    }
    if let Some(v) = d.tcp {
        cfg.tcp = addr(&v, "tcp")?;
    }
    if let Some(v) = d.udp {
        cfg.udp = addr(&v, "udp")?;
    }
    if let Some(v) = d.tls {
        tls.addr = addr(&v, "tls")?;
    }
    tls.cert = d.tls_cert.or(tls.cert.take());
    tls.key = d.tls_key.or(tls.key.take());
    tls.client_ca = d.tls_client_ca.or(tls.client_ca.take());
    tls.handshake_timeout_ms = d.tls_handshake_timeout_ms.or(tls.handshake_timeout_ms);
    tls.max_pending_handshakes = d.tls_max_pending_handshakes.or(tls.max_pending_handshakes);
    cfg.udp_secret = d.udp_secret.or(cfg.udp_secret.take());
    cfg.my_address = d.my_address.or(cfg.my_address.take());
    let set = |dst: &mut usize, v: Option<usize>| {
        if let Some(v) = v {
            *dst = v;
        }
    };
    set(&mut cfg.udp_max_datagram, d.udp_max_datagram);
    set(&mut cfg.max_connections, d.max_connections);
    set(&mut cfg.max_line, d.max_line);
    set(&mut cfg.outbound_queue, d.outbound_queue);
    set(&mut cfg.cache.max_messages, d.cache_max_messages);
    set(&mut cfg.cache.max_bytes, d.cache_max_bytes);
    if let Some(v) = d.cache_ttl_secs {
        cfg.cache.default_ttl = Duration::from_secs(v);
    }
    if let Some(v) = d.allow_sniff_from_tls {
        cfg.admin.allow_sniff_from_tls = v;
    }
    if let Some(v) = d.allow_stop_from_tcp {
        cfg.admin.allow_stop_from_tcp = v;
    }
    if let Some(v) = d.deny_stop_from_unix {
        cfg.admin.deny_stop_from_unix = v;
    }
    if let Some(v) = d.unix_admin_uids {
        cfg.admin.unix_admin_uids = v;
    }
    if let Some(p) = d.admin_token_file {
        cfg.admin.admin_token = Some(read_token(&p)?);
    }
    if let Some(v) = d.shutdown_grace_ms {
        cfg.shutdown_grace = Duration::from_millis(v);
    }
    if let Some(v) = d.flush_timeout_ms {
        cfg.flush_timeout = Duration::from_millis(v);
    }
    if let Some(v) = d.remote_listen {
        cfg.peers.listen = addr(&v, "remote_listen")?;
    }
    if let Some(v) = d.peer_my_address {
        cfg.peers.my_address = addr(&v, "peer_my_address")?;
    }
    if let Some(v) = d.neighbors {
        cfg.peers.neighbors = neighbor_list(&v)?;
    }
    if let Some(v) = d.allow_loopback_peers {
        cfg.peers.allow_loopback = v;
    }
    if let Some(v) = d.max_peer_links {
        cfg.peers.max_links = v;
    }
    if let Some(v) = d.peer_retry_secs {
        cfg.peers.retry = retry_list(&v)?;
    }
    peer_tls(
        cfg,
        d.peer_tls_cert,
        d.peer_tls_key,
        d.peer_tls_ca,
        d.peer_allow,
    )?;
    Ok(())
}

/// Completes `cfg.peers.tls` with the given parts (each overrides what is there); all four
/// (certificate, key, CA, allow-list) are needed once any is given.
fn peer_tls(
    cfg: &mut DaemonConfig,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    allow: Option<String>,
) -> anyhow::Result<()> {
    if cert.is_none() && key.is_none() && ca.is_none() && allow.is_none() {
        return Ok(());
    }
    let old = cfg.peers.tls.take();
    let cert = cert.or_else(|| old.as_ref().map(|t| t.cert.clone()));
    let key = key.or_else(|| old.as_ref().map(|t| t.key.clone()));
    let ca = ca.or_else(|| old.as_ref().map(|t| t.ca.clone()));
    let allow: Option<Vec<String>> = allow
        .map(|a| {
            a.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .or_else(|| old.as_ref().map(|t| t.allowed_peers.clone()));
    let (Some(cert), Some(key), Some(ca), Some(allow)) = (cert, key, ca, allow) else {
        anyhow::bail!(
            "peer TLS needs all of peer_tls_cert, peer_tls_key, peer_tls_ca and peer_allow"
        );
    };
    anyhow::ensure!(!allow.is_empty(), "peer_allow lists no peer name");
    cfg.peers.tls = Some(comms_native::tls::PeerTls::new(cert, key, ca).allow(allow));
    Ok(())
}

fn build_config(cli: &Cli) -> anyhow::Result<DaemonConfig> {
    let mut cfg = DaemonConfig::default();
    let mut tls = TlsParts::default();
    if let Some(path) = &cli.config {
        apply_file(&mut cfg, &mut tls, path)?;
    }
    if cli.no_tls {
        tls.addr = None;
    } else if cli.tls.is_some() {
        tls.addr = cli.tls;
    }
    tls.cert = cli.tls_cert.clone().or(tls.cert);
    tls.key = cli.tls_key.clone().or(tls.key);
    tls.client_ca = cli.tls_client_ca.clone().or(tls.client_ca);
    tls.handshake_timeout_ms = cli.tls_handshake_timeout_ms.or(tls.handshake_timeout_ms);
    tls.max_pending_handshakes = cli
        .tls_max_pending_handshakes
        .or(tls.max_pending_handshakes);
    cfg.tls = tls.into_config()?;
    if let Some(v) = &cli.name {
        cfg.name.clone_from(v);
    }
    if cli.no_unix {
        cfg.unix_path = None;
    } else if let Some(v) = &cli.unix {
        cfg.unix_path = Some(v.clone());
    }
    if cli.no_tcp {
        cfg.tcp = None;
    } else if cli.tcp.is_some() {
        cfg.tcp = cli.tcp;
    }
    if cli.no_udp {
        cfg.udp = None;
    } else if cli.udp.is_some() {
        cfg.udp = cli.udp;
    }
    if cli.udp_secret.is_some() {
        cfg.udp_secret.clone_from(&cli.udp_secret);
    }
    if cli.my_address.is_some() {
        cfg.my_address.clone_from(&cli.my_address);
    }
    let set = |dst: &mut usize, v: Option<usize>| {
        if let Some(v) = v {
            *dst = v;
        }
    };
    set(&mut cfg.udp_max_datagram, cli.udp_max_datagram);
    set(&mut cfg.max_connections, cli.max_connections);
    set(&mut cfg.max_line, cli.max_line);
    set(&mut cfg.outbound_queue, cli.outbound_queue);
    set(&mut cfg.cache.max_messages, cli.cache_max_messages);
    set(&mut cfg.cache.max_bytes, cli.cache_max_bytes);
    if let Some(v) = cli.cache_ttl_secs {
        cfg.cache.default_ttl = Duration::from_secs(v);
    }
    if cli.allow_sniff_from_tls {
        cfg.admin.allow_sniff_from_tls = true;
    }
    if cli.allow_stop_from_tcp {
        cfg.admin.allow_stop_from_tcp = true;
    }
    if cli.remote_listen.is_some() {
        cfg.peers.listen = cli.remote_listen;
    }
    if cli.peer_my_address.is_some() {
        cfg.peers.my_address = cli.peer_my_address;
    }
    if let Some(v) = &cli.neighbors {
        cfg.peers.neighbors = neighbor_list(v)?;
    }
    if cli.allow_loopback_peers {
        cfg.peers.allow_loopback = true;
    }
    if let Some(v) = cli.max_peer_links {
        cfg.peers.max_links = v;
    }
    if let Some(v) = &cli.peer_retry_secs {
        cfg.peers.retry = retry_list(v)?;
    }
    peer_tls(
        &mut cfg,
        cli.peer_tls_cert.clone(),
        cli.peer_tls_key.clone(),
        cli.peer_tls_ca.clone(),
        cli.peer_allow.clone(),
    )?;
    if let Some(p) = &cli.admin_token_file {
        cfg.admin.admin_token = Some(read_token(p)?);
    } else if let Some(t) = &cli.admin_token {
        anyhow::ensure!(!t.trim().is_empty(), "--admin-token is empty");
        cfg.admin.admin_token = Some(t.trim().to_owned());
    }
    Ok(cfg)
}

/// Reads an admin token file: its text without surrounding whitespace, which must not be empty.
fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read admin token file {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "admin token file {} is empty",
        path.display()
    );
    anyhow::ensure!(
        !token.contains(['\n', ';', '\0']),
        "admin token file {} must hold one line without ';'",
        path.display()
    );
    Ok(token.to_owned())
}

fn announce(handle: &DaemonHandle, ready_file: Option<&Path>) -> anyhow::Result<()> {
    let mut text = String::new();
    if let Some(p) = handle.unix_path() {
        text.push_str(&format!("commsd: listening unix {}\n", p.display()));
    }
    if let Some(a) = handle.tcp_addr() {
        text.push_str(&format!("commsd: listening tcp {a}\n"));
    }
    if let Some(a) = handle.udp_addr() {
        text.push_str(&format!("commsd: listening udp {a}\n"));
    }
    if let Some(a) = handle.tls_addr() {
        text.push_str(&format!("commsd: listening tls {a}\n"));
    }
    if let Some(a) = handle.peer_addr() {
        text.push_str(&format!("commsd: listening peer {a}\n"));
    }
    if let Some(path) = ready_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = build_config(&cli)?;
    let handle = Daemon::start(cfg).await.context("cannot start commsd")?;
    announce(&handle, cli.ready_file.as_deref())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = handle.stopped() => {}
    }
    tracing::info!(stats = ?handle.stats(), "commsd stopping");
    handle.shutdown().await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // Single-threaded: one router owns all state; DESIGN.md §7 measured it faster here.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build the tokio runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    // One line naming the problem, exit code 1; no backtrace (even with RUST_BACKTRACE set).
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("commsd: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
