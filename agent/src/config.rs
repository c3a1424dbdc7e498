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
/// server = "server"           # only this service (or node:service) may run tasks here
/// key_file = "/etc/comms/fleet.key"  # tasks must be signed with this fleet key (see `auth`)
/// allow_unsigned_tasks = false # without key_file, trust the transport-stamped origin alone
/// groups = ["web"]
/// labels = { zone = "eu1" }
/// max_tasks = 4
/// ttl_secs = 10               # advertisement TTL; heartbeats every ttl/3
/// max_timeout_secs = 3600
/// max_output_bytes = 1048576  # per stream
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Service name.
    pub name: Option<String>,
    /// Where the stable id is kept.
    pub state_dir: PathBuf,
    /// The server identity allowed to run tasks: `service` or `node:service`.
    pub server: String,
    /// The fleet key: `RUN`/`CANCEL` must be signed with it ([`crate::auth`]).
    pub key_file: Option<PathBuf>,
    /// Without `key_file`, accept tasks on the transport-stamped origin alone. The `agent`
    /// binary requires a key (or this) on broker transports, where any client can forge the
    /// origin; on `cd:` the daemon stamps it.
    pub allow_unsigned_tasks: bool,
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
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            name: None,
            state_dir: PathBuf::from("agent-state"),
            server: "server".into(),
            key_file: None,
            allow_unsigned_tasks: false,
            groups: Vec::new(),
            labels: BTreeMap::new(),
            max_tasks: 4,
            ttl_secs: 10,
            max_timeout_secs: 3600,
            max_output_bytes: 1024 * 1024,
        }
    }
}
