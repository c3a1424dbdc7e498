//! [`DaemonConfig`]: everything the daemon needs to start (this file), and how it is built
//! from a config file and a command line: [`DaemonSettings`] and [`load`] (`settings.rs`), the
//! one path the `commsd` binary and the server's embedded daemon share; [`Args`] (`args.rs`),
//! the binary's flags.

mod args;
mod settings;

pub use args::Args;
pub use settings::{load, ConfigError, DaemonSettings};

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::DaemonError;
use crate::tls::ServerTls;
use cd_wire::{DEFAULT_MAX_LINE_LENGTH, UDP_MAX_DATAGRAM};

/// Default Unix socket path of a stock Communicator daemon.
pub const DEFAULT_UNIX_PATH: &str = "/run/communicator/communicatord.sock";
/// Default loopback TCP service listener (`local_listen`).
pub const DEFAULT_TCP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4040));
/// Default UDP signal listener.
pub const DEFAULT_UDP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4041));

/// Default secure (TLS) service port (`secure_listen`, cd-wire §2.1).
pub const DEFAULT_TLS_PORT: u16 = 4043;
/// Default bound on one TLS handshake of the secure listener.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on TLS handshakes in progress at once.
pub const DEFAULT_TLS_MAX_PENDING_HANDSHAKES: usize = 64;
/// Default cap on TLS connections (pending handshakes and established) from one IP address.
pub const DEFAULT_TLS_MAX_PER_ADDRESS: usize = 16;
/// Default deadline for a new service connection's first complete valid line.
pub const DEFAULT_FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on the bytes queued for one connection's writer.
pub const DEFAULT_OUTBOUND_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Default bound on the bytes queued for all connections' writers together.
pub const DEFAULT_MEMORY_BUDGET: usize = 128 * 1024 * 1024;

/// The secure service listener (`cds:`): TLS over TCP on any address (not only loopback).
/// Once the handshake is done a connection is a service connection like a loopback TCP one
/// (same commands and routing); being possibly remote, it may `STOP`/`SHUTDOWN`/`SNIFF` only
/// with [`AdminRules::admin_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListenerConfig {
    /// Address to bind (any address; port 0 is allowed).
    pub addr: SocketAddr,
    /// Certificate, key, and the optional client CA (set: mutual TLS).
    pub tls: ServerTls,
    /// Bound on one handshake; a client that does not finish in time is dropped (counted).
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once (default 64); a TCP connection arriving when all are
    /// taken is closed at once (counted in `connections_refused`). Handshakes do not take a
    /// `max_connections` permit: a flood of silent clients on a public address cannot lock
    /// local services out. A connection takes its permit once its handshake is done.
    pub max_pending_handshakes: usize,
    /// TLS connections from one IP address at once, pending handshakes and established ones
    /// together (default 16); one more is closed at once (counted in `connections_refused`).
    pub max_per_address: usize,
}

impl TlsListenerConfig {
    /// A listener on `addr` with `cert` + `key`, no client certificate asked.
    pub fn new(addr: SocketAddr, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            addr,
            tls: ServerTls {
                cert: cert.into(),
                key: key.into(),
                client_ca: None,
            },
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            max_pending_handshakes: DEFAULT_TLS_MAX_PENDING_HANDSHAKES,
            max_per_address: DEFAULT_TLS_MAX_PER_ADDRESS,
        }
    }

    /// Requires client certificates signed by the CA in `ca` (mutual TLS).
    pub fn with_client_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.tls.client_ca = Some(ca.into());
        self
    }
}

/// Limits of the cache of messages for services that are not registered (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheLimits {
    /// Maximum number of cached messages (all services together). Default 10 000.
    pub max_messages: usize,
    /// Maximum total bytes of cached lines. Default 16 MiB.
    pub max_bytes: usize,
    /// TTL when the message has no `cache="ttl=N"`. Default 60 s.
    pub default_ttl: Duration,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_messages: 10_000,
            max_bytes: 16 * 1024 * 1024,
            default_ttl: Duration::from_secs(60),
        }
    }
}

/// Who is an **admin** of the daemon: who may stop it with `STOP` / `SHUTDOWN` and watch all
/// traffic with `SNIFF` (a comms extension, docs/NATIVE.md). Build it with
/// `..AdminRules::default()`: new rules may be added.
///
/// Both commands are accepted by one rule (`router/admin.rs`) when **either** the message
/// carries `admin_token=<token>` equal to [`AdminRules::admin_token`] (from any stream
/// connection, TLS included), **or** the connection's transport credentials allow it: a Unix
/// connection whose peer uid (`SO_PEERCRED`) is in [`AdminRules::unix_admin_uids`] (default:
/// root and the uid that owns the daemon's socket, i.e. the daemon's own user), or a loopback
/// TCP connection with the opt-in of that command (`allow_stop_from_tcp`,
/// `allow_sniff_from_tcp`). A TLS connection needs the token. Everything else gets
/// `INVALID command=STOP;reason=...` (or `SNIFF`) and the daemon keeps running.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AdminRules {
    /// Accept `STOP`/`SHUTDOWN` from any loopback TCP connection, without a token (default:
    /// no; any local process can reach the TCP listener).
    pub allow_stop_from_tcp: bool,
    /// Accept `SNIFF` from any loopback TCP connection, without a token (default: no; any
    /// local process can reach the TCP listener, and a sniffer reads every routed line).
    pub allow_sniff_from_tcp: bool,
    /// Refuse `STOP`/`SHUTDOWN` from the Unix socket unless it carries the admin token (an
    /// embedded daemon may want this). `SNIFF` is not affected.
    pub deny_stop_from_unix: bool,
    /// Refuse `STOP`/`SHUTDOWN` from every connection, even with the admin token: only the
    /// process that owns the [`DaemonHandle`](crate::DaemonHandle) stops the daemon (the
    /// server's embedded daemon, whose token is for `SNIFF`). Not a config-file setting.
    pub deny_stop: bool,
    /// Uids that are admins over the Unix socket (checked with `SO_PEERCRED`).
    /// Empty (the default): root and the owner of the socket file (the daemon's user).
    pub unix_admin_uids: Vec<u32>,
    /// A shared secret: a `STOP`/`SHUTDOWN`/`SNIFF` carrying `admin_token=<this>` is accepted
    /// from any stream connection. Compared in constant time; never logged.
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for AdminRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminRules")
            .field("allow_stop_from_tcp", &self.allow_stop_from_tcp)
            .field("allow_sniff_from_tcp", &self.allow_sniff_from_tcp)
            .field("deny_stop_from_unix", &self.deny_stop_from_unix)
            .field("deny_stop", &self.deny_stop)
            .field("unix_admin_uids", &self.unix_admin_uids)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The stock retry schedule of permanent connections, in seconds (docs/PROTOCOL.md §3).
pub const DEFAULT_PEER_RETRY: &[u64] = &[1, 1, 1, 3, 5, 10, 20, 30, 60];
/// Default port of a neighbour given without one (the stock `remote_listen` port).
pub const DEFAULT_PEER_PORT: u16 = 4042;

/// Daemon-to-daemon links (docs/PROTOCOL.md §2.6, docs/NATIVE.md "Cluster"). Build it with
/// `..PeerConfig::default()`: new settings may be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// Plain TCP listener for other daemons (`remote_listen`; `None`: no cluster). Must be a
    /// private IPv4 address, or loopback when `allow_loopback` is set. Port 0 is allowed.
    pub listen: Option<SocketAddr>,
    /// The address announced to peers (`my_address` of CONNECT/ACCEPT/GOSSIP). Default: the
    /// bound peer listener address.
    pub my_address: Option<SocketAddr>,
    /// Neighbours to link with (the `neighbors` option). Of each pair, the daemon with the
    /// larger address connects; the other one sends it `GOSSIP` so that it learns about it.
    pub neighbors: Vec<SocketAddr>,
    /// Allow loopback peer addresses (127.0.0.x), e.g. to test a cluster on one machine. The
    /// stock daemon ignores loopback neighbours.
    pub allow_loopback: bool,
    /// Most peer links at once; a `CONNECT` beyond is answered a bare `REFUSE`. Default 100.
    pub max_links: usize,
    /// Pauses between attempts to (re)connect to a neighbour; the last one repeats.
    /// Default: the stock 1,1,1,3,5,10,20,30,60 s.
    pub retry: Vec<std::time::Duration>,
    /// Mutual TLS on every peer link (`crate::tls::PeerTls`): each daemon presents its
    /// certificate, verifies the other's against the CA and its name against the allow-list;
    /// a plain or unlisted peer never gets a link. `None` (default): plain links, as the stock
    /// daemon (which cannot do TLS between daemons).
    pub tls: Option<crate::tls::PeerTls>,
    /// Plain (unauthenticated) links with **any** peer (`--insecure-peers`): without it, a
    /// daemon with a peer listener refuses to start unless `tls` is set or `plain_peers`
    /// names the stock peers allowed to link in plain TCP. Logged as a warning at start.
    pub insecure: bool,
    /// Peer IP addresses allowed a plain link without `insecure` (`--plain-peer`, e.g.
    /// stock C++ daemons): a plain `CONNECT` from any other address is refused, and no other
    /// address is dialed. Ignored when `tls` is set (every link is then mutual TLS).
    pub plain_peers: Vec<std::net::IpAddr>,
    /// Directory of the persisted cluster state (the stock data path): `neighbors.txt`
    /// (read at start, rewritten when the neighbour set changes) and `cluster-status.txt`.
    /// `None` (default): nothing persisted.
    pub state_dir: Option<std::path::PathBuf>,
}

impl PeerConfig {
    /// Why a daemon with this peer configuration must not start (a peer listener without
    /// authentication, nor `insecure`, nor named plain peers), if so.
    pub fn refusal(&self) -> Option<&'static str> {
        (self.listen.is_some()
            && self.tls.is_none()
            && !self.insecure
            && self.plain_peers.is_empty())
        .then_some(
            "a peer listener (remote_listen) needs peer authentication: mutual TLS \
             (peer_tls_cert, peer_tls_key, peer_tls_ca, peer_allow), or plain_peer naming the \
             stock peers allowed in plain TCP, or insecure_peers to accept any peer unauthenticated",
        )
    }

    /// Whether a plain link with `ip` is allowed (always with TLS, which authenticates).
    pub fn plain_allowed(&self, ip: std::net::IpAddr) -> bool {
        self.tls.is_some() || self.insecure || self.plain_peers.contains(&ip)
    }
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            listen: None,
            my_address: None,
            neighbors: Vec::new(),
            allow_loopback: false,
            max_links: 100,
            retry: DEFAULT_PEER_RETRY
                .iter()
                .map(|s| std::time::Duration::from_secs(*s))
                .collect(),
            tls: None,
            insecure: false,
            plain_peers: Vec::new(),
            state_dir: None,
        }
    }
}

/// Configuration of one daemon. `Default` gives the stock Communicator endpoints.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// This node's `server_name` (the `<NODE:` of every stamp). Default: the hostname with
    /// `-`→`_` and dots removed (`comms_core::config::hostname_node`).
    pub name: String,
    /// Unix stream listener path (`None`: no Unix listener). A stale socket file is replaced.
    pub unix_path: Option<PathBuf>,
    /// Loopback TCP service listener (`None`: none). Must be a loopback address; port 0 is allowed.
    pub tcp: Option<SocketAddr>,
    /// UDP signal listener (`None`: none). Port 0 is allowed.
    pub udp: Option<SocketAddr>,
    /// Secure (TLS) service listener (`None`: none). See [`TlsListenerConfig`].
    pub tls: Option<TlsListenerConfig>,
    /// Shared secret that UDP datagrams must carry as `secret_code` (stripped before routing).
    pub udp_secret: Option<String>,
    /// Largest accepted UDP datagram. Default 1024 bytes. Larger ones are dropped (logged,
    /// counted in [`StatsSnapshot::udp_oversize`](super::StatsSnapshot::udp_oversize)), never
    /// truncated.
    pub udp_max_datagram: usize,
    /// `my_address` sent in `READY`. Default: the peer (remote) address when clustering, as
    /// the stock daemon, else the bound TCP address (else `127.0.0.1:4040`).
    pub my_address: Option<String>,
    /// The public IP answered to `PUBLIC_IP` (`SERVER_PUBLIC_IP public_ip=`); none by default.
    pub public_ip: Option<String>,
    /// The operator's HTTP endpoint (`/metrics`, `/healthz`, `/readyz`; `comms-ops`), served
    /// by the `commsd` binary, not by [`Daemon::start`](crate::Daemon::start). Off by default;
    /// any address (metrics are read-only and hold no secrets).
    pub http: Option<std::net::SocketAddr>,
    /// Maximum simultaneous stream connections **per listener**: the Unix socket, the loopback
    /// TCP listener and the TLS listener each have their own budget of this many, so a flood
    /// on one (e.g. remote TLS clients) cannot take the slots of another (local services on
    /// the Unix socket). A TLS connection counts once its handshake is done; pending
    /// handshakes have their own bound. Default 1000.
    pub max_connections: usize,
    /// A service connection (Unix, TCP, TLS) that sends no complete valid line within this
    /// time after it was accepted is closed (counted in `idle_connections_closed`). Once it
    /// has sent one, it may stay silent for ever. Default 10 s.
    pub first_line_timeout: Duration,
    /// Maximum line length in bytes (excluding `\n`). Default 64 KiB.
    pub max_line: usize,
    /// Per-connection outbound queue, in batches (one batch = what one routing round wrote for
    /// that connection). A connection whose queue is full is disconnected. Default 1024.
    pub outbound_queue: usize,
    /// Per-connection outbound queue, in bytes: a connection with more than this queued for
    /// its writer (not yet written to the socket) is disconnected as a slow consumer.
    /// Default 4 MiB.
    pub outbound_queue_bytes: usize,
    /// Bytes queued for all writers together: a connection whose output would take the
    /// daemon over it is disconnected as a slow consumer. Default 128 MiB.
    pub memory_budget: usize,
    /// Cache limits.
    pub cache: CacheLimits,
    /// STOP / SHUTDOWN rules.
    pub admin: AdminRules,
    /// After a stop request, how long services may still send (they get `QUITTING`) before
    /// every connection is closed. Default 200 ms.
    pub shutdown_grace: Duration,
    /// Bound on flushing outbound queues once the daemon stops. Default 2 s.
    pub flush_timeout: Duration,
    /// Links with other daemons (default: none, a single node).
    pub peers: PeerConfig,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            name: comms_core::config::hostname_node(),
            unix_path: Some(PathBuf::from(DEFAULT_UNIX_PATH)),
            tcp: Some(DEFAULT_TCP),
            udp: Some(DEFAULT_UDP),
            tls: None,
            udp_secret: None,
            udp_max_datagram: UDP_MAX_DATAGRAM,
            my_address: None,
            public_ip: None,
            http: None,
            max_connections: 1000,
            first_line_timeout: DEFAULT_FIRST_LINE_TIMEOUT,
            max_line: DEFAULT_MAX_LINE_LENGTH,
            outbound_queue: 1024,
            outbound_queue_bytes: DEFAULT_OUTBOUND_QUEUE_BYTES,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            cache: CacheLimits::default(),
            admin: AdminRules::default(),
            shutdown_grace: Duration::from_millis(200),
            flush_timeout: Duration::from_secs(2),
            peers: PeerConfig::default(),
        }
    }
}

impl DaemonConfig {
    /// A config for tests and embedding: node `name`, Unix socket at `unix_path`, TCP and UDP
    /// on `127.0.0.1:0` (ephemeral ports, read them back from the handle).
    pub fn ephemeral(name: impl Into<String>, unix_path: impl Into<PathBuf>) -> Self {
        let any = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
        Self {
            name: name.into(),
            unix_path: Some(unix_path.into()),
            tcp: Some(any),
            udp: Some(any),
            ..Self::default()
        }
    }
}

/// Largest `max_connections` and `outbound_queue` (a tokio semaphore's limit; far beyond use).
pub const MAX_COUNT: usize = tokio::sync::Semaphore::MAX_PERMITS;
/// Largest `udp_max_datagram`: the largest UDP payload.
pub const MAX_UDP_DATAGRAM: usize = 65_507;
/// Largest cache TTL, shutdown grace and flush timeout: one day.
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);

impl DaemonConfig {
    /// Checks every value is in range ([`Daemon::start`](super::Daemon::start) does); the error
    /// names the setting and its bounds. Out-of-range values would otherwise refuse every line
    /// or connection, or panic later (a semaphore, a timer).
    pub fn validate(&self) -> Result<(), DaemonError> {
        let bad = |what: String| Err(DaemonError::Config(what));
        for (key, v) in [
            ("max_line", self.max_line),
            ("outbound_queue", self.outbound_queue),
            ("max_connections", self.max_connections),
            ("udp_max_datagram", self.udp_max_datagram),
            ("outbound_queue_bytes", self.outbound_queue_bytes),
            ("memory_budget", self.memory_budget),
        ] {
            if v == 0 {
                return bad(format!("{key} must be > 0"));
            }
        }
        for (key, v) in [
            ("max_connections", self.max_connections),
            ("outbound_queue", self.outbound_queue),
        ] {
            if v > MAX_COUNT {
                return bad(format!("{key} = {v} is over the maximum {MAX_COUNT}"));
            }
        }
        if self.udp_max_datagram > MAX_UDP_DATAGRAM {
            return bad(format!(
                "udp_max_datagram = {} is over the largest UDP payload {MAX_UDP_DATAGRAM}",
                self.udp_max_datagram
            ));
        }
        for (key, v) in [
            ("cache ttl", self.cache.default_ttl),
            ("shutdown_grace", self.shutdown_grace),
            ("flush_timeout", self.flush_timeout),
            ("first_line_timeout", self.first_line_timeout),
        ] {
            if v > MAX_DURATION {
                return bad(format!(
                    "{key} = {} s is over the maximum {} s",
                    v.as_secs(),
                    MAX_DURATION.as_secs()
                ));
            }
        }
        Ok(())
    }
}
