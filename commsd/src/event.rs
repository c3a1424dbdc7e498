//! What the socket tasks tell the router (the router's inbox is the only way in).

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use cd_wire::WireMessage;

/// Identifies one stream connection for its whole life (never reused).
pub(crate) type ConnId = u64;

/// Which listener accepted a stream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnKind {
    /// The Unix stream socket.
    Unix,
    /// The loopback TCP service listener.
    Tcp,
    /// The secure (TLS) service listener, any address: a service connection like `Tcp`,
    /// but never trusted for admin commands without the admin token.
    Tls,
    /// A link from another daemon (accepted on the peer listener).
    PeerIn,
    /// A link to another daemon (dialed by this one).
    PeerOut,
}

impl ConnKind {
    /// Its index in [`crate::stats::CONNECTION_KINDS`].
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Unix => 0,
            Self::Tcp => 1,
            Self::Tls => 2,
            Self::PeerIn => 3,
            Self::PeerOut => 4,
        }
    }

    /// A daemon-to-daemon link.
    pub(crate) fn is_peer(self) -> bool {
        matches!(self, Self::PeerIn | Self::PeerOut)
    }
}

/// Who is at the other end of a stream connection, as the listener saw it.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub kind: ConnKind,
    /// For logs: the peer address, or `unix uid=N`.
    pub peer: String,
    /// The peer's uid (`SO_PEERCRED`), for Unix connections.
    pub uid: Option<u32>,
}

/// The router's handles on one connection's tasks.
#[derive(Debug)]
pub(crate) struct ConnHandles {
    /// The bounded outbound queue (batches of whole lines) to the writer task; send with
    /// [`ConnHandles::try_send`], which also applies the byte bounds.
    pub out: mpsc::Sender<crate::conn::Queued>,
    /// Bytes queued for the writer (this connection's and the daemon's).
    pub queued: std::sync::Arc<crate::conn::QueueBytes>,
    /// Pauses this connection's reader while a consumer it sent to catches up.
    pub gate: std::sync::Arc<crate::conn::ReadGate>,
    /// Cancelled by the router at the connection's first complete valid line (until then
    /// the `first_line_timeout` runs).
    pub proven: CancellationToken,
    /// Stops the reader (the writer then flushes what is queued and closes).
    pub stop_reader: CancellationToken,
    /// Stops the writer at once, dropping what is queued (slow consumer).
    pub abort_writer: CancellationToken,
}

/// One item of the router's inbox.
#[derive(Debug)]
pub(crate) enum Event {
    /// A stream connection was accepted (always the first event of a connection).
    Opened {
        id: ConnId,
        kind: ConnKind,
        peer: String,
        /// The peer's uid (`SO_PEERCRED`), for Unix connections.
        uid: Option<u32>,
        handles: ConnHandles,
    },
    /// One read chunk: one or more whole lines, each ending in `\n`.
    Input { id: ConnId, data: Bytes },
    /// A line longer than `max_line` was discarded; `length` excludes its `\n`.
    TooLong { id: ConnId, length: usize },
    /// The connection's reader ended (EOF, error, or stopped).
    Closed { id: ConnId },
    /// One checked UDP datagram (secret already stripped).
    Datagram { msg: WireMessage, peer: SocketAddr },
    /// The embedding process asks for the cluster map ([`crate::ClusterMapSource`]).
    ClusterMap {
        reply: tokio::sync::oneshot::Sender<crate::ClusterMap>,
    },
}
