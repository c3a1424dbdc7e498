//! The embedded daemon: with a `cd:` URL, `server` starts `commsd` inside its own process on the
//! address the URL names, so the server alone is a working system.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use comms::{Config, Scheme};
use comms_native::daemon::{AdminRules, Daemon, DaemonConfig, DaemonHandle};

/// Why the embedded daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The URL does not say where to listen.
    #[error("cannot embed a daemon for {url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The daemon failed to start (address in use...).
    #[error("embedded daemon: {0}")]
    Daemon(#[from] comms_native::daemon::DaemonError),
    /// The configuration.
    #[error(transparent)]
    Comms(#[from] comms::Error),
}

/// The daemon config for `config`'s `cd:` URL: the Unix socket (`cd:///path`) or the loopback
/// TCP address (`cd://127.0.0.1:4040`) it names, node `transport.node` (default: hostname), no
/// UDP, and `STOP`/`SHUTDOWN` refused (only the server's own shutdown stops it).
pub fn daemon_config(config: &Config) -> Result<Option<DaemonConfig>, EmbedError> {
    let url = config.url()?;
    if url.scheme() != Scheme::Cd {
        return Ok(None);
    }
    let bad = |reason: &str| EmbedError::Url {
        url: url.to_string(),
        reason: reason.to_owned(),
    };
    let mut daemon = DaemonConfig {
        name: config
            .transport
            .node
            .clone()
            .or_else(|| url.query("node"))
            .unwrap_or_else(comms::config::hostname_node),
        unix_path: None,
        tcp: None,
        udp: None,
        admin: AdminRules {
            allow_stop_from_tcp: false,
            deny_stop_from_unix: true,
            ..AdminRules::default()
        },
        ..DaemonConfig::default()
    };
    match url.url().host_str().filter(|h| !h.is_empty()) {
        None => daemon.unix_path = Some(PathBuf::from(url.url().path())),
        Some(host) => {
            let port = url.url().port().unwrap_or(4040);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let addr: SocketAddr = (host, port)
                .to_socket_addrs()
                .map_err(|e| bad(&e.to_string()))?
                .find(|a| a.ip().is_loopback())
                .ok_or_else(|| bad("an embedded daemon listens on loopback only; use commsd for other addresses"))?;
            daemon.tcp = Some(addr);
        }
    }
    Ok(Some(daemon))
}

/// Start the embedded daemon when `config`'s URL is `cd:`; `None` for other backends.
pub async fn start(config: &Config) -> Result<Option<DaemonHandle>, EmbedError> {
    match daemon_config(config)? {
        None => Ok(None),
        Some(dc) => {
            let handle = Daemon::start(dc).await?;
            tracing::info!(node = handle.node_name(), tcp = ?handle.tcp_addr(), unix = ?handle.unix_path(), "embedded commsd started");
            Ok(Some(handle))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_from_urls() {
        let c = Config::from_url("cd://127.0.0.1:4999?node=n1").unwrap();
        let d = daemon_config(&c).unwrap().unwrap();
        assert_eq!(d.tcp, Some("127.0.0.1:4999".parse().unwrap()));
        assert_eq!((d.name.as_str(), d.unix_path, d.udp), ("n1", None, None));
        let c = Config::from_url("cd:///tmp/x/commsd.sock").unwrap();
        assert_eq!(
            daemon_config(&c).unwrap().unwrap().unix_path,
            Some(PathBuf::from("/tmp/x/commsd.sock"))
        );
        assert!(daemon_config(&Config::from_url("memory://x").unwrap())
            .unwrap()
            .is_none());
        assert!(daemon_config(&Config::from_url("cd://10.1.2.3:4040").unwrap()).is_err());
    }
}
