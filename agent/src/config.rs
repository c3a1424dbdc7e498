//! The `[agent]` section of the shared TOML config.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `[agent]`.
///
/// ```toml
/// [agent]
/// name = "web01"              # service name; default agent_<first 10 characters of the id>
/// state_dir = "/var/lib/comms-agent"
/// key_file = "/etc/comms/fleet.key"  # tasks must be signed with this fleet key; default: the
///                             # server's ($COMMS_SERVER_STATE_DIR or ./server-state)/fleet.key
/// insecure = false            # run keyless: any client may run commands (alias
///                             # allow_unsigned_tasks); logged as INSECURE
/// groups = ["web"]
/// labels = { zone = "eu1" }
/// max_tasks = 4
/// ttl_secs = 10               # advertisement TTL; heartbeats every ttl/3
/// max_timeout_secs = 3600
/// max_output_bytes = 1048576  # per stream
/// http = "127.0.0.1:9465"     # /metrics, /healthz, /readyz (docs/OPERATIONS.md); off by default
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Service name.
    pub name: Option<String>,
    /// Where the stable id is kept.
    pub state_dir: PathBuf,
    /// Accepted for compatibility and ignored: a task is authorised by the fleet key's
    /// signature, never by the name of its sender (any client can take a name).
    pub server: String,
    /// The fleet key: `RUN`/`CANCEL` must be signed with it ([`comms_fleet::auth`]). The
    /// `agent` binary fills it from `--key-file`, `COMMS_FLEET_KEY_FILE` or the server's
    /// default key ([`comms_fleet::auth::find_key_file`]); [`crate::Agent::start`] refuses to
    /// start without one unless `insecure`.
    pub key_file: Option<PathBuf>,
    /// Run without a fleet key, accepting unsigned tasks from any client (logged as a
    /// warning). Also read as `allow_unsigned_tasks` (its former name).
    #[serde(alias = "allow_unsigned_tasks")]
    pub insecure: bool,
    /// Groups.
    pub groups: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Tasks running at once; more are rejected.
    pub max_tasks: usize,
    /// Advertisement TTL in seconds.
    pub ttl_secs: u64,
    /// Upper bound for a task's timeout.
    pub max_timeout_secs: u64,
    /// Upper bound for a task's output cap, per stream.
    pub max_output_bytes: u64,
    /// The operator's HTTP endpoint (`/metrics`, `/healthz`, `/readyz`); off by default
    /// (`--http`).
    pub http: Option<std::net::SocketAddr>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            name: None,
            state_dir: PathBuf::from("agent-state"),
            server: "server".into(),
            key_file: None,
            insecure: false,
            groups: Vec::new(),
            labels: BTreeMap::new(),
            max_tasks: 4,
            ttl_secs: 10,
            max_timeout_secs: 3600,
            max_output_bytes: 1024 * 1024,
            http: None,
        }
    }
}

/// Upper bounds of the `[agent]` values: beyond them a value is a mistake (and some would
/// overflow a timer or a semaphore), so [`AgentConfig::validate`] refuses it.
pub mod limits {
    /// `max_tasks`.
    pub const MAX_TASKS: usize = 65_536;
    /// `ttl_secs` (one day).
    pub const MAX_TTL_SECS: u64 = 86_400;
    /// `max_timeout_secs` (30 days).
    pub const MAX_TIMEOUT_SECS: u64 = 30 * 86_400;
    /// `max_output_bytes` (1 GiB per stream).
    pub const MAX_OUTPUT_BYTES: u64 = 1 << 30;
}

impl AgentConfig {
    /// Checks every value is in range; the error names the key and its bound.
    pub fn validate(&self) -> Result<(), String> {
        comms_ops::cli::over_maximum(&[
            ("max_tasks", self.max_tasks as u64, limits::MAX_TASKS as u64),
            ("ttl_secs", self.ttl_secs, limits::MAX_TTL_SECS),
            (
                "max_timeout_secs",
                self.max_timeout_secs,
                limits::MAX_TIMEOUT_SECS,
            ),
            (
                "max_output_bytes",
                self.max_output_bytes,
                limits::MAX_OUTPUT_BYTES,
            ),
        ])
    }
}
