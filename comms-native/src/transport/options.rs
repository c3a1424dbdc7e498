//! [`NativeOptions`]: the settings of a native transport, from a `cd:` URL's query.

use std::time::Duration;

use comms_core::config::{Scheme, TransportUrl};
use comms_core::transport::DEFAULT_HOP_LIMIT;
use comms_core::{Error, Result};

use crate::client::{default_retry, parse_retry};

/// Default bound of unacknowledged at-least-once messages per transport (`queue_bound`).
pub const DEFAULT_QUEUE_BOUND: usize = 4096;
/// Default inbox depth (deliveries handed to the endpoint and not yet taken).
pub const DEFAULT_PREFETCH: usize = 256;

/// Settings of a [`super::NativeTransport`]. Every one can be set in the URL query:
/// `cd:///run/x.sock?node=vm&retry=0.05,0.1&queue_bound=4096&send_timeout_ms=30000&ack_timeout_ms=1000&close_timeout_ms=30000&register_timeout_ms=5000&max_message_size=30720`.
/// A `cds://host:port` URL also takes the TLS options `ca=`, `cert=`, `key=`, `tls_name=`
/// (read by [`crate::client::Target`]).
#[derive(Debug, Clone)]
pub struct NativeOptions {
    /// The URL (scheme, target) as written.
    pub url: String,
    /// The node name endpoints get (`?node=`; without it, the daemon's own name, asked by
    /// [`super::NativeTransport::with_options`], else the hostname as communicatord makes it).
    pub node: String,
    /// Whether `node` was given (`?node=`); if not, the transport asks the daemon.
    pub node_given: bool,
    /// Reconnect schedule (`?retry=` seconds, comma-separated).
    pub retry: Vec<Duration>,
    /// Unacknowledged at-least-once messages kept before `send` waits.
    pub queue_bound: usize,
    /// How long `send` waits for room before [`Error::Backpressure`].
    pub send_timeout: Duration,
    /// First resend delay for an unacknowledged message (doubles per resend, up to 8×).
    pub ack_timeout: Duration,
    /// How long `close` waits for the last acknowledgements.
    pub close_timeout: Duration,
    /// How long the first `advertise` waits for the daemon's READY.
    pub register_timeout: Duration,
    /// Inbox depth.
    pub prefetch: usize,
    /// Largest payload accepted by `send` ([`super::MAX_MESSAGE_SIZE`] by default, which fits
    /// a default commsd's 64 KiB lines; raise it only with the daemon's `max_line`).
    pub max_message_size: usize,
    /// Hop limit for `forward`.
    pub hop_limit: u8,
    /// The daemon's admin token, sent with `SNIFF` (`admin_token=`): commsd lets only admins
    /// sniff. Never in the URL (URLs get logged); set it with [`NativeOptions::with_admin_token`].
    pub admin_token: Option<AdminToken>,
    /// The local state directory (attempt counts, dead letters: see
    /// [`comms_core::state`]); default [`comms_core::state::resolve`]`(None)`.
    pub state_dir: Option<std::path::PathBuf>,
}

/// A daemon admin token: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl NativeOptions {
    /// Options from a configuration: its `cd:`/`cds:` URL, the state directory, and
    /// `[transport] node` where the URL names none (then the daemon is not asked).
    pub fn from_config(config: &comms_core::Config) -> Result<Self> {
        let url = config.url()?;
        let mut opts = Self::from_url(&url)?;
        opts.state_dir = config.state_dir();
        if let Some(node) = config.node_for(&url) {
            opts.node = node;
            opts.node_given = true;
        }
        Ok(opts)
    }

    /// Options from a `cd:` or `cds:` URL.
    pub fn from_url(url: &TransportUrl) -> Result<Self> {
        match url.scheme() {
            Scheme::Cd | Scheme::Cds => {}
            Scheme::Cdu => {
                return Err(Error::Config(format!(
                    "{url}: cdu: is send-only UDP, served by DatagramTransport (comms::connect picks it), not NativeTransport"
                )))
            }
            other => {
                return Err(Error::Config(format!(
                    "{url}: `{}:` is not a native URL (cd:, cds:, cdu:)",
                    other.as_str()
                )))
            }
        }
        let node = url.node()?;
        let retry = match url.query("retry") {
            Some(r) => parse_retry(&r).map_err(|e| Error::Config(format!("{url}: {e}")))?,
            None => default_retry(),
        };
        let number = |name: &str, default: u64| -> Result<u64> {
            match url.query(name) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::Config(format!("{url}: `{name}` must be a positive integer"))
                }),
            }
        };
        let ms = |name: &str, default: u64| number(name, default).map(Duration::from_millis);
        Ok(Self {
            url: url.as_str().to_owned(),
            node_given: url.query("node").is_some(),
            node,
            retry,
            queue_bound: number("queue_bound", DEFAULT_QUEUE_BOUND as u64)? as usize,
            send_timeout: ms("send_timeout_ms", 30_000)?,
            ack_timeout: ms("ack_timeout_ms", 1_000)?,
            close_timeout: ms("close_timeout_ms", 30_000)?,
            register_timeout: ms("register_timeout_ms", 5_000)?,
            prefetch: number("prefetch", DEFAULT_PREFETCH as u64)? as usize,
            max_message_size: number("max_message_size", super::MAX_MESSAGE_SIZE as u64)? as usize,
            hop_limit: DEFAULT_HOP_LIMIT,
            admin_token: None,
            state_dir: comms_core::state::resolve(None),
        })
    }

    /// These options, sending `admin_token=<token>` with `SNIFF`.
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(AdminToken(token.into()));
        self
    }
}
