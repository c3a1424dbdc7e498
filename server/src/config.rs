//! The `[server]` section of the shared TOML config.

use serde::Deserialize;

/// `[server]`.
///
/// ```toml
/// [server]
/// recent = 100               # dispatches listed by RESULTS (the newest)
/// state_dir = "server-state" # the history database: <state_dir>/server.sqlite3
/// retain_dispatches = 10000  # history kept: the newest N dispatches...
/// retain_days = 30           # ...no older than this (whichever is smaller)
/// deadline_grace_secs = 5    # time past a task's timeout before a target counts as timed out
/// max_running = 64           # dispatches at once; more are refused
/// ttl_secs = 10              # the server's own advertisement TTL
/// key_file = "/etc/comms/fleet.key"  # sign tasks with it; answer only signed requests
///                            # (default: <state_dir>/fleet.key, created on the first start)
/// insecure = false           # run keyless: answer anyone (logged as INSECURE)
/// http = "127.0.0.1:9464"    # /metrics, /healthz, /readyz (docs/OPERATIONS.md); off by default
/// http_tls_cert = "/etc/comms/web.crt"  # serve it over TLS; off loopback the web view then
/// http_tls_key = "/etc/comms/web.key"   # asks for the token of `commsctl web-token`
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Dispatches listed by `RESULTS` (the newest).
    pub recent: usize,
    /// Where the dispatch history lives (`server.sqlite3`); default `server-state`, relative
    /// to the working directory (`--state-dir`).
    pub state_dir: std::path::PathBuf,
    /// History kept: at most this many dispatches...
    pub retain_dispatches: usize,
    /// ...and none older than this many days.
    pub retain_days: u64,
    /// Seconds past a task's timeout before a missing result counts as `timeout`.
    pub deadline_grace_secs: u64,
    /// Dispatches running at once.
    pub max_running: usize,
    /// Advertisement TTL of the server.
    pub ttl_secs: u64,
    /// The fleet key ([`comms_fleet::auth`]): the server signs every `RUN`/`CANCEL` with it
    /// and answers only requests (from `commsctl` or any tool) signed with it. Default:
    /// `<state_dir>/fleet.key`, created (mode 0600) on the first start.
    pub key_file: Option<std::path::PathBuf>,
    /// Run without a fleet key: sign nothing, answer unsigned requests from anyone (logged as
    /// a warning). Ignored when `key_file` is set.
    pub insecure: bool,
    /// The operator's HTTP endpoint (`/metrics`, `/healthz`, `/readyz`), also for the
    /// embedded daemon's metrics; off by default (`--http`).
    pub http: Option<std::net::SocketAddr>,
    /// PEM certificate chain of the `http` endpoint: with `http_tls_key`, it is served over
    /// TLS, and off loopback the web view is served too, to holders of the web-view token.
    pub http_tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `http_tls_cert`.
    pub http_tls_key: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            recent: 100,
            state_dir: std::path::PathBuf::from("server-state"),
            retain_dispatches: 10_000,
            retain_days: 30,
            deadline_grace_secs: 5,
            max_running: 64,
            ttl_secs: 10,
            key_file: None,
            insecure: false,
            http: None,
            http_tls_cert: None,
            http_tls_key: None,
        }
    }
}

/// Upper bounds of the `[server]` values: beyond them a value is a mistake (and some would
/// overflow a timer), so [`ServerConfig::validate`] refuses it.
pub mod limits {
    /// `recent`.
    pub const MAX_RECENT: usize = 1_000_000;
    /// `deadline_grace_secs` (one day).
    pub const MAX_DEADLINE_GRACE_SECS: u64 = 86_400;
    /// `max_running`.
    pub const MAX_RUNNING: usize = 1_000_000;
    /// `ttl_secs` (one day).
    pub const MAX_TTL_SECS: u64 = 86_400;
}

impl ServerConfig {
    /// Checks every value is in range; the error names the key and its bound.
    pub fn validate(&self) -> Result<(), String> {
        comms_ops::cli::over_maximum(&[
            ("recent", self.recent as u64, limits::MAX_RECENT as u64),
            (
                "deadline_grace_secs",
                self.deadline_grace_secs,
                limits::MAX_DEADLINE_GRACE_SECS,
            ),
            (
                "max_running",
                self.max_running as u64,
                limits::MAX_RUNNING as u64,
            ),
            ("ttl_secs", self.ttl_secs, limits::MAX_TTL_SECS),
            (
                "retain_dispatches",
                self.retain_dispatches as u64,
                limits::MAX_RECENT as u64 * 100,
            ),
            ("retain_days", self.retain_days, 36_500),
        ])
        .map_err(|p| format!("invalid [server] configuration: {p}"))
    }
}
