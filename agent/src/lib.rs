//! `comms-agent`: the agent of a comms fleet, as a library (the `agent` binary is a thin
//! `main`). The messages it takes and sends, and the fleet key, are the fleet protocol
//! ([`comms_fleet::task`], [`comms_fleet::auth`]), shared with the server.
//!
//! - [`runner`]: one task = one process in its own process group; output streamed in chunks up
//!   to a cap; at the timeout or on cancel the **whole group** is killed.
//! - [`Agent`]: advertises `role=agent` with facts (hostname, OS, CPUs, memory, version, id),
//!   groups and labels, heartbeats every TTL/3, keeps a stable id on disk
//!   ([`identity`]), runs at most `max_tasks` tasks (more are `rejected`), and accepts a task
//!   only when it is signed with the fleet key ([`comms_fleet::auth`]), whoever sent it, and at
//!   most once, also across restarts (the replay guard is kept in `<state_dir>/replay-guard`).
//!   Without a key it does not start, unless `insecure`. `PONG` is at-most-once, so fake
//!   `PING`s from a peer that never acknowledges cannot wedge the agent's outbox.

pub mod config;
pub mod facts;
pub mod identity;
pub mod runner;
mod service;

pub use config::AgentConfig;
pub use service::{no_key_hint, Agent};

/// What can stop an agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The state directory or id file.
    #[error("agent state: {0}")]
    State(String),
    /// The fleet key or the replay guard.
    #[error(transparent)]
    Auth(#[from] comms_fleet::auth::AuthError),
    /// No fleet key was given or found, and `insecure` is not set.
    #[error("{0}")]
    NoKey(String),
    /// A value of the `[agent]` configuration is out of range.
    #[error("invalid [agent] configuration: {0}")]
    Config(String),
    /// The transport or endpoint.
    #[error(transparent)]
    Comms(#[from] comms::Error),
}
