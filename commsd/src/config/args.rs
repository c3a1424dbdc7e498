//! [`Args`]: the `commsd` command line (clap), and its [`DaemonSettings`] layer: a flag
//! overrides the config file's key of the same name; `--no-X` disables listener X.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::settings::DaemonSettings;

const AFTER_HELP: &str = "\
Examples:
  commsd --name vm --unix /run/communicator/communicatord.sock
  commsd --tcp 127.0.0.1:0 --no-unix --no-udp --ready-file /tmp/commsd.ready
  commsd --config /etc/comms/commsd.toml --http 127.0.0.1:9464   # metrics: curl 127.0.0.1:9464/metrics

Once every listener is bound it prints one line per listener (commsd: listening tcp ADDR).

Environment:
  RUST_LOG  log filter (default: info); logs go to stderr

Exit codes:
  0  stopped by SIGTERM, SIGINT or an allowed STOP
  1  error at start (bad config, an address in use...), named in one line";

/// The comms routing daemon, speaking the Communicator cd: line protocol.
#[derive(Debug, Parser)]
#[command(
    name = "commsd",
    version,
    about = "The comms routing daemon (Communicator cd: line protocol)",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// TOML configuration file with a [daemon] section (flags override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Node name (server_name); default: the hostname, '-'→'_', dots removed.
    #[arg(long)]
    pub name: Option<String>,
    /// Unix stream socket path.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Do not listen on a Unix socket.
    #[arg(long, conflicts_with = "unix")]
    pub no_unix: bool,
    /// Loopback TCP listener (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<SocketAddr>,
    /// Do not listen on TCP.
    #[arg(long, conflicts_with = "tcp")]
    pub no_tcp: bool,
    /// UDP listener (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<SocketAddr>,
    /// Do not listen on UDP.
    #[arg(long, conflicts_with = "udp")]
    pub no_udp: bool,
    /// Secure (TLS) service listener for cds: clients, on any address (e.g. 0.0.0.0:4043);
    /// needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR")]
    pub tls: Option<SocketAddr>,
    /// Do not listen on TLS (overrides the config file).
    #[arg(long, conflicts_with = "tls")]
    pub no_tls: bool,
    /// PEM certificate chain (leaf first) of the TLS listener.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS listener (PKCS#8, RSA or EC).
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: when set, TLS clients must present a certificate signed by
    /// one of them (mutual TLS).
    #[arg(long, value_name = "PATH")]
    pub tls_client_ca: Option<PathBuf>,
    /// Bound on one TLS handshake, in milliseconds (default 10000).
    #[arg(long, value_name = "MS")]
    pub tls_handshake_timeout_ms: Option<u64>,
    /// TLS handshakes in progress at once (default 64); more connections are closed at once.
    #[arg(long, value_name = "N")]
    pub tls_max_pending_handshakes: Option<usize>,
    /// Secret UDP datagrams must carry as secret_code.
    #[arg(long, env = "COMMSD_UDP_SECRET", hide_env_values = true)]
    pub udp_secret: Option<String>,
    /// Largest accepted UDP datagram in bytes.
    #[arg(long)]
    pub udp_max_datagram: Option<usize>,
    /// my_address announced in READY.
    #[arg(long)]
    pub my_address: Option<String>,
    /// Serve /metrics (Prometheus), /healthz and /readyz over HTTP on this address
    /// (e.g. 127.0.0.1:9464; port 0: any free port). Off by default.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Public IP answered to `PUBLIC_IP` (`SERVER_PUBLIC_IP public_ip=`).
    #[arg(long)]
    pub public_ip: Option<String>,
    /// Maximum simultaneous stream connections.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Maximum line length in bytes.
    #[arg(long)]
    pub max_line: Option<usize>,
    /// Per-connection outbound queue, in batches.
    #[arg(long)]
    pub outbound_queue: Option<usize>,
    /// Per-connection outbound queue, in bytes (default 4 MiB).
    #[arg(long)]
    pub outbound_queue_bytes: Option<usize>,
    /// Bytes queued for all connections together (default 128 MiB).
    #[arg(long)]
    pub memory_budget: Option<usize>,
    /// Close a service connection that sends no valid line within this many ms (default 10000).
    #[arg(long)]
    pub first_line_timeout_ms: Option<u64>,
    /// TLS connections from one IP address at once (default 16).
    #[arg(long)]
    pub tls_max_per_address: Option<usize>,
    /// Maximum number of cached messages.
    #[arg(long)]
    pub cache_max_messages: Option<usize>,
    /// Maximum bytes of cached messages.
    #[arg(long)]
    pub cache_max_bytes: Option<usize>,
    /// Default cache TTL in seconds.
    #[arg(long)]
    pub cache_ttl_secs: Option<u64>,
    /// Accept STOP/SHUTDOWN from any loopback TCP connection without the admin token
    /// (default: only admins: the admin token, or root / the daemon's user on the Unix socket).
    #[arg(long)]
    pub allow_stop_from_tcp: bool,
    /// Accept SNIFF (copies of all routed traffic) from any loopback TCP connection without
    /// the admin token (default: only admins, as for STOP).
    #[arg(long)]
    pub allow_sniff_from_tcp: bool,
    /// Deprecated and ignored (warns): SNIFF over TLS needs admin_token=<token>, like STOP.
    #[arg(long, hide = true)]
    pub allow_sniff_from_tls: bool,
    /// Listener for other daemons (remote_listen), e.g. 10.0.0.5:4042; port 0: any free port.
    /// Without it the daemon is a single node.
    #[arg(long, value_name = "ADDR")]
    pub remote_listen: Option<SocketAddr>,
    /// Address announced to peer daemons (default: the bound remote_listen address).
    #[arg(long, value_name = "ADDR")]
    pub peer_my_address: Option<SocketAddr>,
    /// Neighbour daemons, comma-separated ip[:port] (port 4042 when omitted).
    #[arg(long, value_name = "LIST")]
    pub neighbors: Option<String>,
    /// Directory of the persisted cluster state (neighbors.txt, cluster-status.txt); default:
    /// nothing persisted.
    #[arg(long, value_name = "DIR")]
    pub peer_state_dir: Option<PathBuf>,
    /// Allow loopback (127.0.0.x) peer addresses, to run a cluster on one machine.
    #[arg(long)]
    pub allow_loopback_peers: bool,
    /// Most peer links at once (a CONNECT beyond gets a bare REFUSE).
    #[arg(long)]
    pub max_peer_links: Option<usize>,
    /// Pauses between reconnection attempts to a neighbour, comma-separated seconds
    /// (decimals allowed; the last repeats); default 1,1,1,3,5,10,20,30,60.
    #[arg(long, value_name = "LIST")]
    pub peer_retry_secs: Option<String>,
    /// Mutual TLS on peer links: this daemon's certificate (PEM; with --peer-tls-key,
    /// --peer-tls-ca and --peer-allow).
    #[arg(long, value_name = "FILE")]
    pub peer_tls_cert: Option<PathBuf>,
    /// Private key of --peer-tls-cert (PEM).
    #[arg(long, value_name = "FILE")]
    pub peer_tls_key: Option<PathBuf>,
    /// CA that peer daemons' certificates must chain to (PEM).
    #[arg(long, value_name = "FILE")]
    pub peer_tls_ca: Option<PathBuf>,
    /// Peer names (certificate subject alternative names) allowed to link, comma-separated.
    #[arg(long, value_name = "LIST")]
    pub peer_allow: Option<String>,
    /// Accept plain, unauthenticated links with any peer daemon (without it, a peer listener
    /// needs --peer-tls-* or --plain-peer). Logged as a warning.
    #[arg(long)]
    pub insecure_peers: bool,
    /// Peer IP allowed a plain link (a stock daemon), comma-separated or repeated.
    #[arg(long, value_name = "IP", value_delimiter = ',')]
    pub plain_peer: Vec<std::net::IpAddr>,
    /// File holding the admin token: STOP/SHUTDOWN/SNIFF carrying admin_token=<token> are
    /// accepted from any connection (the token never appears in `ps` or logs).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The admin token itself (prefer --admin-token-file or the environment).
    #[arg(
        long,
        env = "COMMSD_ADMIN_TOKEN",
        hide_env_values = true,
        conflicts_with = "admin_token_file"
    )]
    pub admin_token: Option<String>,
    /// File written with one line per listener once all are bound.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

impl Args {
    /// The flags as a settings layer (over the `--config` file).
    pub fn settings(&self) -> DaemonSettings {
        let listener = |off: bool, on: Option<SocketAddr>| {
            if off {
                Some(String::new())
            } else {
                on.map(|a| a.to_string())
            }
        };
        let flag = |set: bool| set.then_some(true);
        DaemonSettings {
            name: self.name.clone(),
            unix: if self.no_unix {
                Some(PathBuf::new())
            } else {
                self.unix.clone()
            },
            tcp: listener(self.no_tcp, self.tcp),
            udp: listener(self.no_udp, self.udp),
            tls: listener(self.no_tls, self.tls),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca: self.tls_client_ca.clone(),
            tls_handshake_timeout_ms: self.tls_handshake_timeout_ms,
            tls_max_pending_handshakes: self.tls_max_pending_handshakes,
            udp_secret: self.udp_secret.clone(),
            udp_max_datagram: self.udp_max_datagram,
            my_address: self.my_address.clone(),
            public_ip: self.public_ip.clone(),
            http: self.http.map(|a| a.to_string()),
            max_connections: self.max_connections,
            max_line: self.max_line,
            outbound_queue: self.outbound_queue,
            outbound_queue_bytes: self.outbound_queue_bytes,
            memory_budget: self.memory_budget,
            first_line_timeout_ms: self.first_line_timeout_ms,
            tls_max_per_address: self.tls_max_per_address,
            cache_max_messages: self.cache_max_messages,
            cache_max_bytes: self.cache_max_bytes,
            cache_ttl_secs: self.cache_ttl_secs,
            allow_stop_from_tcp: flag(self.allow_stop_from_tcp),
            allow_sniff_from_tcp: flag(self.allow_sniff_from_tcp),
            allow_sniff_from_tls: flag(self.allow_sniff_from_tls),
            admin_token_file: self.admin_token_file.clone(),
            admin_token: self.admin_token.clone(),
            remote_listen: self.remote_listen.map(|a| a.to_string()),
            peer_my_address: self.peer_my_address.map(|a| a.to_string()),
            neighbors: self.neighbors.clone(),
            peer_state_dir: self.peer_state_dir.clone(),
            allow_loopback_peers: flag(self.allow_loopback_peers),
            max_peer_links: self.max_peer_links,
            peer_retry_secs: self.peer_retry_secs.clone(),
            peer_tls_cert: self.peer_tls_cert.clone(),
            peer_tls_key: self.peer_tls_key.clone(),
            peer_tls_ca: self.peer_tls_ca.clone(),
            peer_allow: self.peer_allow.clone(),
            insecure_peers: flag(self.insecure_peers),
            plain_peers: (!self.plain_peer.is_empty()).then(|| {
                self.plain_peer
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            }),
            ..DaemonSettings::default()
        }
    }
}
