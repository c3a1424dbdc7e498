//! `comms-server`: the fleet server as a library (the `server` binary is a thin `main`), and the
//! client side used by `commsctl`.
//!
//! The server advertises the `server` service, keeps a live [`comms::Directory`] of agents
//! (`role=agent`, up/down by TTL), dispatches tasks to one agent, a group, a label selector or
//! all ([`protocol::Selector`]), gives every target exactly one outcome (ok, failed, timeout,
//! unreachable, cancelled) by a per-task deadline, streams output and results back to the
//! requester as they arrive, and keeps the recent dispatches (bounded) for `RESULTS`.
//! Protocol: [`protocol`]. Dispatch logic: `dispatch.rs`. State: `state.rs`.

pub mod client;
pub mod config;
mod dispatch;
pub mod embed;
pub mod protocol;
mod service;
pub mod sniff;
mod state;

pub use config::ServerConfig;
pub use dispatch::outcome_of;
pub use service::{Server, MAX_TASK_TIMEOUT};
