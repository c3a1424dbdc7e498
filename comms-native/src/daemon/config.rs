//! [`DaemonConfig`]: everything the daemon needs to start; no file or CLI parsing here (that
//! is the `commsd` binary's job).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use super::error::DaemonError;
use crate::codec::{DEFAULT_MAX_LINE_LENGTH, UDP_MAX_DATAGRAM};

/// Default Unix socket path of a stock Communicator daemon.
pub const DEFAULT_UNIX_PATH: &str = "/run/communicator/communicatord.sock";
/// Default loopback TCP service listener (`local_listen`).
pub const DEFAULT_TCP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4040));
/// Default UDP signal listener.
pub const DEFAULT_UDP: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4041));

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

/// Who may stop the daemon with `STOP` / `SHUTDOWN`, and who may watch all traffic with
/// `SNIFF` (a comms extension, docs/NATIVE.md). Build it with `..AdminRules::default()`: new
/// rules may be added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminRules {
    /// Accept `STOP`/`SHUTDOWN` from loopback TCP connections too (default: Unix socket only,
    /// whose file mode already restricts who can connect).
    pub allow_stop_from_tcp: bool,
    /// Refuse `STOP`/`SHUTDOWN` from the Unix socket too (an embedded daemon may want this).
    pub deny_stop_from_unix: bool,
    /// Refuse `SNIFF` from loopback TCP connections (default: allowed; the TCP listener is
    /// loopback only, so only local processes can sniff).
    pub deny_sniff_from_tcp: bool,
    /// Refuse `SNIFF` from the Unix socket (default: allowed).
    pub deny_sniff_from_unix: bool,
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
    /// Shared secret that UDP datagrams must carry as `secret_code` (stripped before routing).
    pub udp_secret: Option<String>,
    /// Largest accepted UDP datagram. Default 1024 bytes.
    pub udp_max_datagram: usize,
    /// `my_address` sent in `READY`. Default: the bound TCP address (else `127.0.0.1:4040`).
    pub my_address: Option<String>,
    /// Maximum simultaneous stream connections (TCP + Unix). Default 1000.
    pub max_connections: usize,
    /// Maximum line length in bytes (excluding `\n`). Default 64 KiB.
    pub max_line: usize,
    /// Per-connection outbound queue, in batches (one batch = what one routing round wrote for
    /// that connection). A connection whose queue is full is disconnected. Default 1024.
    pub outbound_queue: usize,
    /// Cache limits.
    pub cache: CacheLimits,
    /// STOP / SHUTDOWN rules.
    pub admin: AdminRules,
    /// After a stop request, how long services may still send (they get `QUITTING`) before
    /// every connection is closed. Default 200 ms.
    pub shutdown_grace: Duration,
    /// Bound on flushing outbound queues once the daemon stops. Default 2 s.
    pub flush_timeout: Duration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            name: comms_core::config::hostname_node(),
            unix_path: Some(PathBuf::from(DEFAULT_UNIX_PATH)),
            tcp: Some(DEFAULT_TCP),
            udp: Some(DEFAULT_UDP),
            udp_secret: None,
            udp_max_datagram: UDP_MAX_DATAGRAM,
            my_address: None,
            max_connections: 1000,
            max_line: DEFAULT_MAX_LINE_LENGTH,
            outbound_queue: 1024,
            cache: CacheLimits::default(),
            admin: AdminRules::default(),
            shutdown_grace: Duration::from_millis(200),
            flush_timeout: Duration::from_secs(2),
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
