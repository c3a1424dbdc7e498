//! [`DaemonSettings`]: the daemon's settings as a config file's `[daemon]` section or a
//! command line gives them (each `None` when not given), and [`load`], the one function that
//! layers them over the defaults into a [`DaemonConfig`]: the `commsd` binary (file, then
//! flags) and the server's embedded daemon (settings from its `cd:` URL) both use it.
//!
//! Addresses are text here: `""` disables a listener (`unix = ""`, `--no-unix`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{DaemonConfig, TlsListenerConfig, DEFAULT_PEER_PORT};
use crate::tls::PeerTls;

/// Why a configuration file or a setting was refused (each message names the setting).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, too large, not UTF-8).
    #[error(transparent)]
    Read(#[from] comms_core::Error),
    /// The file is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("invalid config {}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// What TOML says.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// An address setting is not `ip:port`.
    #[error("[daemon] {what} = {value:?} is not an ip:port")]
    Addr {
        /// The setting.
        what: &'static str,
        /// Its value.
        value: String,
        /// The parse error.
        #[source]
        source: std::net::AddrParseError,
    },
    /// A neighbour is not `ip[:port]`.
    #[error("neighbour {value:?} is not an ip[:port]")]
    Neighbour {
        /// The list item.
        value: String,
        /// The parse error.
        #[source]
        source: std::net::AddrParseError,
    },
    /// A pause of the peer retry schedule is not a number of seconds, or the list is empty.
    #[error("{0}")]
    Retry(String),
    /// A `plain_peers` entry is not an IP address.
    #[error("plain_peers: {0:?} is not an IP address")]
    PlainPeer(String),
    /// The TLS listener lacks its certificate or key.
    #[error("the TLS listener {0} needs tls_cert and tls_key (--tls-cert, --tls-key)")]
    TlsIncomplete(SocketAddr),
    /// Peer TLS needs all four parts, and a non-empty allow-list.
    #[error("{0}")]
    PeerTls(&'static str),
    /// The admin token file cannot be read.
    #[error("cannot read admin token file {}", path.display())]
    TokenRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The admin token (file) is empty or not one line without `;`.
    #[error("{0}")]
    Token(String),
}

/// Every setting of the `[daemon]` section (and of the command line); `None`: not given, the
/// layer below stays. A later layer overrides an earlier one setting by setting.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // the fields are the documented `[daemon]` keys (see the binary)
pub struct DaemonSettings {
    pub name: Option<String>,
    pub unix: Option<PathBuf>,
    pub tcp: Option<String>,
    pub udp: Option<String>,
    pub tls: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub tls_handshake_timeout_ms: Option<u64>,
    pub tls_max_pending_handshakes: Option<usize>,
    pub tls_max_per_address: Option<usize>,
    pub first_line_timeout_ms: Option<u64>,
    pub outbound_queue_bytes: Option<usize>,
    pub memory_budget: Option<usize>,
    pub udp_secret: Option<String>,
    pub udp_max_datagram: Option<usize>,
    pub my_address: Option<String>,
    pub public_ip: Option<String>,
    /// The operator's HTTP endpoint (`/metrics`, `/healthz`, `/readyz`); `""`: none.
    pub http: Option<String>,
    pub max_connections: Option<usize>,
    pub max_line: Option<usize>,
    pub outbound_queue: Option<usize>,
    pub cache_max_messages: Option<usize>,
    pub cache_max_bytes: Option<usize>,
    pub cache_ttl_secs: Option<u64>,
    pub allow_stop_from_tcp: Option<bool>,
    pub allow_sniff_from_tcp: Option<bool>,
    /// Deprecated, ignored with a warning: SNIFF over TLS needs the admin token.
    pub allow_sniff_from_tls: Option<bool>,
    pub deny_stop_from_unix: Option<bool>,
    pub unix_admin_uids: Option<Vec<u32>>,
    pub admin_token_file: Option<PathBuf>,
    /// The token itself: command line or environment only, never a file key.
    #[serde(skip)]
    pub admin_token: Option<String>,
    pub shutdown_grace_ms: Option<u64>,
    pub flush_timeout_ms: Option<u64>,
    pub remote_listen: Option<String>,
    pub peer_my_address: Option<String>,
    pub neighbors: Option<String>,
    pub peer_state_dir: Option<PathBuf>,
    pub allow_loopback_peers: Option<bool>,
    pub max_peer_links: Option<usize>,
    pub peer_retry_secs: Option<String>,
    pub peer_tls_cert: Option<PathBuf>,
    pub peer_tls_key: Option<PathBuf>,
    pub peer_tls_ca: Option<PathBuf>,
    pub peer_allow: Option<String>,
    pub insecure_peers: Option<bool>,
    /// Comma-separated peer IPs allowed a plain link (`plain_peer`).
    pub plain_peers: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    daemon: DaemonSettings,
}

impl DaemonSettings {
    /// The `[daemon]` section of a TOML file (no section: nothing set).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = comms_core::config::read_config_file(path)?;
        let file: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Toml {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        Ok(file.daemon)
    }
}

/// The daemon configuration: the defaults, then the `[daemon]` section of `file` (if any),
/// then `overrides` (command-line flags, or an embedding's own settings).
pub fn load(file: Option<&Path>, overrides: DaemonSettings) -> Result<DaemonConfig, ConfigError> {
    let mut cfg = DaemonConfig::default();
    let mut tls = TlsParts::default();
    if let Some(path) = file {
        apply(&mut cfg, &mut tls, DaemonSettings::from_file(path)?)?;
    }
    apply(&mut cfg, &mut tls, overrides)?;
    cfg.tls = tls.into_config()?;
    Ok(cfg)
}

/// The TLS listener settings gathered from every layer, turned into `DaemonConfig::tls` once
/// all are read (the address, certificate and key may come from different layers).
#[derive(Debug, Default)]
struct TlsParts {
    addr: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    handshake_timeout_ms: Option<u64>,
    max_pending_handshakes: Option<usize>,
    max_per_address: Option<usize>,
}

impl TlsParts {
    fn into_config(self) -> Result<Option<TlsListenerConfig>, ConfigError> {
        let Some(addr) = self.addr else {
            if self.cert.is_some() || self.key.is_some() || self.client_ca.is_some() {
                tracing::warn!("tls_cert / tls_key / tls_client_ca given without a tls listener address: ignored");
            }
            return Ok(None);
        };
        let (Some(cert), Some(key)) = (self.cert, self.key) else {
            return Err(ConfigError::TlsIncomplete(addr));
        };
        let mut t = TlsListenerConfig::new(addr, cert, key);
        t.tls.client_ca = self.client_ca;
        if let Some(ms) = self.handshake_timeout_ms {
            t.handshake_timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(n) = self.max_pending_handshakes {
            t.max_pending_handshakes = n.max(1);
        }
        if let Some(n) = self.max_per_address {
            t.max_per_address = n.max(1);
        }
        Ok(Some(t))
    }
}

/// One layer over `cfg` (and the TLS parts).
fn apply(cfg: &mut DaemonConfig, tls: &mut TlsParts, d: DaemonSettings) -> Result<(), ConfigError> {
    if let Some(v) = d.name {
        cfg.name = v;
    }
    if let Some(v) = d.unix {
        cfg.unix_path = (!v.as_os_str().is_empty()).then_some(v);
    }
    if let Some(v) = d.tcp {
        cfg.tcp = addr(&v, "tcp")?;
    }
    if let Some(v) = d.udp {
        cfg.udp = addr(&v, "udp")?;
    }
    if let Some(v) = d.http {
        cfg.http = addr(&v, "http")?;
    }
    if let Some(v) = d.tls {
        tls.addr = addr(&v, "tls")?;
    }
    tls.cert = d.tls_cert.or(tls.cert.take());
    tls.key = d.tls_key.or(tls.key.take());
    tls.client_ca = d.tls_client_ca.or(tls.client_ca.take());
    tls.handshake_timeout_ms = d.tls_handshake_timeout_ms.or(tls.handshake_timeout_ms);
    tls.max_pending_handshakes = d.tls_max_pending_handshakes.or(tls.max_pending_handshakes);
    tls.max_per_address = d.tls_max_per_address.or(tls.max_per_address);
    if let Some(ms) = d.first_line_timeout_ms {
        cfg.first_line_timeout = Duration::from_millis(ms.max(1));
    }
    cfg.udp_secret = d.udp_secret.or(cfg.udp_secret.take());
    cfg.my_address = d.my_address.or(cfg.my_address.take());
    cfg.public_ip = d.public_ip.or(cfg.public_ip.take());
    let set = |dst: &mut usize, v: Option<usize>| {
        if let Some(v) = v {
            *dst = v;
        }
    };
    set(&mut cfg.udp_max_datagram, d.udp_max_datagram);
    set(&mut cfg.max_connections, d.max_connections);
    set(&mut cfg.max_line, d.max_line);
    set(&mut cfg.outbound_queue, d.outbound_queue);
    set(&mut cfg.outbound_queue_bytes, d.outbound_queue_bytes);
    set(&mut cfg.memory_budget, d.memory_budget);
    set(&mut cfg.cache.max_messages, d.cache_max_messages);
    set(&mut cfg.cache.max_bytes, d.cache_max_bytes);
    if let Some(v) = d.cache_ttl_secs {
        cfg.cache.default_ttl = Duration::from_secs(v);
    }
    let admin = &mut cfg.admin;
    if let Some(v) = d.allow_sniff_from_tls {
        tracing::warn!(
            allow_sniff_from_tls = v,
            "allow_sniff_from_tls is deprecated and ignored: SNIFF over TLS is accepted only \
             with admin_token=<token> (set admin_token_file), like STOP"
        );
    }
    admin.allow_sniff_from_tcp = d.allow_sniff_from_tcp.unwrap_or(admin.allow_sniff_from_tcp);
    admin.allow_stop_from_tcp = d.allow_stop_from_tcp.unwrap_or(admin.allow_stop_from_tcp);
    admin.deny_stop_from_unix = d.deny_stop_from_unix.unwrap_or(admin.deny_stop_from_unix);
    if let Some(v) = d.unix_admin_uids {
        admin.unix_admin_uids = v;
    }
    if let Some(p) = d.admin_token_file {
        admin.admin_token = Some(read_token(&p)?);
    } else if let Some(t) = d.admin_token {
        if t.trim().is_empty() {
            return Err(ConfigError::Token("--admin-token is empty".into()));
        }
        admin.admin_token = Some(t.trim().to_owned());
    }
    if let Some(v) = d.shutdown_grace_ms {
        cfg.shutdown_grace = Duration::from_millis(v);
    }
    if let Some(v) = d.flush_timeout_ms {
        cfg.flush_timeout = Duration::from_millis(v);
    }
    let peers = &mut cfg.peers;
    if let Some(v) = d.remote_listen {
        peers.listen = addr(&v, "remote_listen")?;
    }
    if let Some(v) = d.peer_my_address {
        peers.my_address = addr(&v, "peer_my_address")?;
    }
    if let Some(v) = d.neighbors {
        peers.neighbors = neighbor_list(&v)?;
    }
    if let Some(v) = d.peer_state_dir {
        peers.state_dir = Some(v);
    }
    peers.allow_loopback = d.allow_loopback_peers.unwrap_or(peers.allow_loopback);
    if let Some(v) = d.max_peer_links {
        peers.max_links = v;
    }
    if let Some(v) = d.peer_retry_secs {
        peers.retry = retry_list(&v)?;
    }
    peers.insecure = d.insecure_peers.unwrap_or(peers.insecure);
    if let Some(v) = d.plain_peers {
        peers.plain_peers = v
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| {
                n.parse::<IpAddr>()
                    .map_err(|_| ConfigError::PlainPeer(n.to_owned()))
            })
            .collect::<Result<_, _>>()?;
    }
    peer_tls(
        cfg,
        d.peer_tls_cert,
        d.peer_tls_key,
        d.peer_tls_ca,
        d.peer_allow,
    )
}

/// `ip:port`; `""` is `None` (the listener is disabled).
fn addr(s: &str, what: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|source| ConfigError::Addr {
        what,
        value: s.to_owned(),
        source,
    })
}

/// `ip[:port]` list (port 4042 when omitted).
fn neighbor_list(s: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    s.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<SocketAddr>()
                .or_else(|_| {
                    n.parse::<IpAddr>()
                        .map(|ip| SocketAddr::new(ip, DEFAULT_PEER_PORT))
                })
                .map_err(|source| ConfigError::Neighbour {
                    value: n.to_owned(),
                    source,
                })
        })
        .collect()
}

/// Comma-separated seconds (decimals allowed, e.g. `0.2`).
fn retry_list(s: &str) -> Result<Vec<Duration>, ConfigError> {
    let v: Vec<Duration> = s
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<f64>()
                .ok()
                .and_then(|f| Duration::try_from_secs_f64(f).ok())
                .ok_or_else(|| {
                    ConfigError::Retry(format!("retry pause {n:?} is not a number of seconds"))
                })
        })
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err(ConfigError::Retry("the retry schedule is empty".into()));
    }
    Ok(v)
}

/// Completes `cfg.peers.tls` with the given parts (each overrides what is there); all four
/// (certificate, key, CA, allow-list) are needed once any is given.
fn peer_tls(
    cfg: &mut DaemonConfig,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    allow: Option<String>,
) -> Result<(), ConfigError> {
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
        return Err(ConfigError::PeerTls(
            "peer TLS needs all of peer_tls_cert, peer_tls_key, peer_tls_ca and peer_allow",
        ));
    };
    if allow.is_empty() {
        return Err(ConfigError::PeerTls("peer_allow lists no peer name"));
    }
    cfg.peers.tls = Some(PeerTls::new(cert, key, ca).allow(allow));
    Ok(())
}

/// Reads an admin token file: its text without surrounding whitespace, which must not be empty.
fn read_token(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenRead {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::Token(format!(
            "admin token file {} is empty",
            path.display()
        )));
    }
    if token.contains(['\n', ';', '\0']) {
        return Err(ConfigError::Token(format!(
            "admin token file {} must hold one line without ';'",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[test]
    fn sniff_settings_and_the_deprecated_tls_one_still_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commsd.toml");
        std::fs::write(
            &path,
            "[daemon]\nallow_sniff_from_tcp = true\nallow_sniff_from_tls = true\n",
        )
        .unwrap();
        let cfg = load(Some(&path), DaemonSettings::default()).unwrap();
        assert!(cfg.admin.allow_sniff_from_tcp);
        let flags = super::super::Args::try_parse_from([
            "commsd",
            "--allow-sniff-from-tls",
            "--allow-sniff-from-tcp",
        ])
        .unwrap();
        assert!(
            load(None, flags.settings())
                .unwrap()
                .admin
                .allow_sniff_from_tcp
        );
        assert!(
            !load(None, DaemonSettings::default())
                .unwrap()
                .admin
                .allow_sniff_from_tcp
        );
    }
}
