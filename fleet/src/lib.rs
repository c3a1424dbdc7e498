//! `comms-fleet`: the fleet protocol shared by the `agent` and `server` crates (and any tool
//! that talks to the server), and the fleet-key authentication both ends check.
//!
//! - [`task`]: server ↔ agent. `RUN` ([`task::RunTask`]) → `OUTPUT` chunks and one `RESULT`;
//!   `CANCEL`; `PING`/`PONG`; `FACTS`/`FACTS_REPORT`.
//! - [`control`]: tool → server. `AGENTS`, `DISPATCH` ([`control::DispatchRequest`]) with its
//!   streamed `TARGET_OUTPUT`/`TARGET_RESULT`/`DISPATCH_DONE`, `RESULTS`, `CANCEL_DISPATCH`,
//!   `SERVER_STATUS`; lists paged ([`control::page`]).
//! - [`Job`]: what to run (argv, env, cwd, timeout, output cap), declared once and carried
//!   flattened by both `RunTask` and `DispatchRequest`, so their encodings are unchanged.
//! - [`auth`]: the fleet key ([`auth::FleetKey`], several lines during a rotation): HMAC
//!   signatures bound to the destination, id and issue time, and a bounded replay guard that
//!   can persist across restarts; [`auth::FleetAuth`] is one endpoint's signer and gate;
//!   [`auth::find_key_file`] is where every binary looks for the key (the server creates it).
//! - [`DEFAULT_URL`] and [`shutdown_signal`]: what the `agent`, `server` and `commsctl`
//!   binaries share.
//!
//! No transport here: the crate depends on `comms-core`'s message model only.

pub mod auth;
pub mod control;
mod job;
pub mod replay;
mod seal;
pub mod task;

pub use job::Job;

/// The transport URL the fleet binaries use when nothing else is configured: the server's
/// embedded daemon.
pub const DEFAULT_URL: &str = "cd://127.0.0.1:4040";

/// Waits for Ctrl-C or SIGTERM (Ctrl-C alone if SIGTERM cannot be watched).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
