//! What a transport can do, so callers and the conformance suite can adapt.

/// What a transport can do and its documented bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Backend name (`memory`, `native`, `rabbitmq`, `kafka`).
    pub backend: &'static str,
    /// Largest payload ([`crate::Message::payload_size`]) accepted, in bytes.
    pub max_message_size: usize,
    /// Messages per destination queue before `send` waits (backpressure).
    pub queue_bound: usize,
    /// Whether at-most-once (fire-and-forget) delivery is offered.
    pub at_most_once: bool,
    /// Whether two deployments (namespaces) can share one broker or daemon.
    pub namespaces: bool,
    /// Whether accepted messages survive a restart of the broker or daemon.
    pub survives_restart: bool,
    /// Forwards allowed before a message is dropped as a loop.
    pub hop_limit: u8,
    /// Whether the transport's infrastructure stamps `from` itself and lets one live endpoint
    /// hold an address at a time (the native daemon): a message's origin is then its sender's
    /// true address, and a second process claiming a name is refused (by `commsd`; a stock
    /// Communicator daemon accepts a second registration). On a broker any client
    /// can write any envelope and consume from any queue: applications that need either
    /// check it themselves (the fleet signs its requests; the server asks for a rival).
    pub exclusive_names: bool,
}

impl Capabilities {
    /// Capabilities with conservative defaults, to be adjusted by the backend.
    pub fn new(backend: &'static str) -> Self {
        Self {
            backend,
            max_message_size: 1024 * 1024,
            queue_bound: 10_000,
            at_most_once: true,
            namespaces: true,
            survives_restart: false,
            hop_limit: crate::transport::DEFAULT_HOP_LIMIT,
            exclusive_names: false,
        }
    }
}
