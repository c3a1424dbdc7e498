//! Mapping lapin failures into the contract's [`Error`].

use comms_core::Error;

/// Backend name used in errors and capabilities.
pub const BACKEND: &str = "rabbitmq";

/// A lapin failure while doing `what`. Connection and channel failures are retryable (the
/// transport reconnects); protocol refusals other than a lost connection are not.
pub(crate) fn amqp(what: impl Into<String>, e: lapin::Error) -> Error {
    let retryable = e.is_io_error() || !e.is_amqp_error() || e.is_amqp_hard_error();
    Error::transport(BACKEND, what, retryable, e)
}

/// The broker is not reachable right now (reconnecting).
pub(crate) fn disconnected(what: &str) -> Error {
    Error::transport_msg(
        BACKEND,
        format!("{what}: not connected to the broker (reconnecting); retry later"),
        true,
    )
}
