//! `comms-server`: the fleet server as a library (the `server` binary is a thin `main`), and the
//! client side used by `commsctl`.
//!
//! The server advertises the `server` service, keeps a live [`comms::Directory`] of agents
//! (`role=agent`, up/down by TTL), dispatches tasks to one agent, a group, a label selector or
//! all ([`comms_fleet::control::Selector`]), gives every target exactly one outcome (ok,
//! failed, timeout, unreachable, cancelled) by a per-task deadline, streams output and results
//! back to the requester as they arrive, and keeps the dispatch history in SQLite ([`store`],
//! under `state_dir`) for `RESULTS`: a restarted server takes up the dispatches it had
//! running and accepts their results. The messages (to agents: [`comms_fleet::task`]; from tools:
//! [`comms_fleet::control`]) and the fleet key ([`comms_fleet::auth`]) are the fleet protocol,
//! in `comms-fleet`, shared with the agent. Dispatch logic: `dispatch.rs`. State: `state.rs`.
//! Fleet key files (made by the server on its first start when it has none, and by
//! `commsctl keygen`): [`keygen`]. The server is keyed unless `insecure` (see `service.rs`).

pub mod client;
pub mod config;
mod dispatch;
pub mod embed;
pub mod keygen;
mod metrics;
mod service;
pub mod single;
pub mod sniff;
mod state;
pub mod store;
pub mod web;

pub use config::ServerConfig;
pub use service::{fleet_key, Server, MAX_TASK_TIMEOUT, SHUTDOWN_GRACE};
