//! The `[server]` section of the shared TOML config.

use serde::Deserialize;

/// `[server]`.
///
/// ```toml
/// [server]
/// recent = 100               # dispatches kept for RESULTS (oldest dropped first)
/// deadline_grace_secs = 5    # time past a task's timeout before a target counts as timed out
/// max_running = 64           # dispatches at once; more are refused
/// ttl_secs = 10              # the server's own advertisement TTL
/// key_file = "/etc/comms/fleet.key"  # sign tasks with it; answer only signed requests
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Dispatches kept for `RESULTS`.
    pub recent: usize,
    /// Seconds past a task's timeout before a missing result counts as `timeout`.
    pub deadline_grace_secs: u64,
    /// Dispatches running at once.
    pub max_running: usize,
    /// Advertisement TTL of the server.
    pub ttl_secs: u64,
    /// The fleet key ([`comms_agent::auth`]): the server signs every `RUN`/`CANCEL` with it
    /// and answers only requests (from `commsctl` or any tool) signed with it.
    pub key_file: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            recent: 100,
            deadline_grace_secs: 5,
            max_running: 64,
            ttl_secs: 10,
            key_file: None,
        }
    }
}
