//! The embedded daemon: with a `cd:` URL, `server` starts `commsd` inside its own process on the
//! address the URL names, so the server alone is a working system.
//!
//! Its admin token ([`admin_token`]): `COMMSD_ADMIN_TOKEN` when set, else derived from the
//! fleet key ([`FleetKey::daemon_admin_token`]), so that `commsctl sniff` on a host that holds
//! the key (it derives the same token) may sniff, as an admin, over loopback TCP. `STOP` and
//! `SHUTDOWN` stay refused from every connection, token or not (`AdminRules::deny_stop`): only
//! the server's own shutdown stops it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use comms::{Config, Scheme};
use comms_fleet::auth::FleetKey;
use commsd::config::DaemonSettings;
use commsd::{Daemon, DaemonConfig, DaemonHandle};

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
    Daemon(#[from] commsd::DaemonError),
    /// The configuration.
    #[error(transparent)]
    Comms(#[from] comms::Error),
    /// The daemon settings were refused.
    #[error("embedded daemon: {0}")]
    Settings(#[from] commsd::config::ConfigError),
}

/// The environment variable that sets a daemon's admin token (`commsd --admin-token`); for the
/// embedded daemon and `commsctl sniff` it takes the place of the fleet-key-derived token.
pub const ADMIN_TOKEN_ENV: &str = "COMMSD_ADMIN_TOKEN";

/// The admin token of the embedded daemon, and the one `commsctl sniff` sends: `COMMSD_ADMIN_TOKEN`
/// when set (not empty), else derived from `key`; `None` without either (a keyless server:
/// then only root or the server's user on a Unix socket may sniff).
pub fn admin_token(key: Option<&FleetKey>) -> Option<String> {
    std::env::var(ADMIN_TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .or_else(|| key.map(FleetKey::daemon_admin_token))
}

/// The daemon config for `config`'s `cd:` URL: the Unix socket (`cd:///path`) or the loopback
/// TCP address (`cd://127.0.0.1:4040`) it names, node `transport.node` (default: hostname), no
/// UDP, `STOP`/`SHUTDOWN` refused (only the server's own shutdown stops it), and `admin_token`
/// (see [`admin_token`]) admitting `SNIFF`.
pub fn daemon_config(
    config: &Config,
    admin_token: Option<String>,
) -> Result<Option<DaemonConfig>, EmbedError> {
    let url = config.url()?;
    if url.scheme() != Scheme::Cd {
        return Ok(None);
    }
    let bad = |reason: &str| EmbedError::Url {
        url: url.to_string(),
        reason: reason.to_owned(),
    };
    // The same settings layer as a `commsd` command line, over the same defaults
    // (`commsd::config::load`): no UDP, STOP/SHUTDOWN refused from every connection.
    let mut settings = DaemonSettings {
        admin_token,
        name: config.transport.node.clone().or_else(|| url.query("node")),
        unix: Some(PathBuf::new()),
        tcp: Some(String::new()),
        udp: Some(String::new()),
        allow_stop_from_tcp: Some(false),
        deny_stop_from_unix: Some(true),
        ..DaemonSettings::default()
    };
    match url.url().host_str().filter(|h| !h.is_empty()) {
        None => settings.unix = Some(PathBuf::from(url.url().path())),
        Some(host) => {
            let port = url.url().port().unwrap_or(4040);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let addr: SocketAddr = (host, port)
                .to_socket_addrs()
                .map_err(|e| bad(&e.to_string()))?
                .find(|a| a.ip().is_loopback())
                .ok_or_else(|| bad("an embedded daemon listens on loopback only; use commsd for other addresses"))?;
            settings.tcp = Some(addr.to_string());
        }
    }
    let mut dc = commsd::config::load(None, settings)?;
    dc.admin.deny_stop = true;
    Ok(Some(dc))
}

/// Start the embedded daemon when `config`'s URL is `cd:` (see [`daemon_config`]); `None` for
/// other backends.
pub async fn start(
    config: &Config,
    admin_token: Option<String>,
) -> Result<Option<DaemonHandle>, EmbedError> {
    match daemon_config(config, admin_token)? {
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
        let d = daemon_config(&c, Some("tok".into())).unwrap().unwrap();
        assert_eq!(d.tcp, Some("127.0.0.1:4999".parse().unwrap()));
        assert_eq!(d.admin.admin_token.as_deref(), Some("tok"));
        assert!(d.admin.deny_stop && !d.admin.allow_sniff_from_tcp);
        assert_eq!((d.name.as_str(), d.unix_path, d.udp), ("n1", None, None));
        let c = Config::from_url("cd:///tmp/x/commsd.sock").unwrap();
        assert_eq!(
            daemon_config(&c, None).unwrap().unwrap().unix_path,
            Some(PathBuf::from("/tmp/x/commsd.sock"))
        );
        assert!(
            daemon_config(&Config::from_url("memory://x").unwrap(), None)
                .unwrap()
                .is_none()
        );
        assert!(daemon_config(&Config::from_url("cd://10.1.2.3:4040").unwrap(), None).is_err());
    }
}
