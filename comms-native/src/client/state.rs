//! [`ConnectionState`]: what the client's state watch reports.

/// The state of the permanent connection, published on a `watch` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// No registered connection (connecting, waiting before a retry, or closed).
    Disconnected,
    /// The daemon refused our REGISTER (`INVALID command=REGISTER`, e.g. the name is live on
    /// another connection); the client retries on its schedule.
    Refused {
        /// The daemon's reason.
        reason: String,
    },
    /// Registered: `READY` received. `node` is the daemon's name (from its
    /// `<NODE:communicatord` prefix); `session` counts successful registrations from 1.
    Connected {
        /// The daemon's name.
        node: String,
        /// 1 for the first registration, then +1 per reconnect.
        session: u64,
    },
    /// The TLS handshake of a `cds:` connection failed (server certificate not trusted or not
    /// for that name, our client certificate refused...); the client retries on its schedule.
    TlsFailed {
        /// What rustls reported.
        reason: String,
    },
    /// [`crate::client::Client::close`] ran or every handle was dropped; final.
    Closed,
}

impl ConnectionState {
    /// True when registered.
    pub fn is_connected(&self) -> bool {
        matches!(self, ConnectionState::Connected { .. })
    }
}
