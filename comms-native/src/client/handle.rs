//! [`Client`]: the cheap, cloneable handle over the connection task's bounded channel.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::ClientConfig;
use super::error::ClientError;
use super::state::ConnectionState;
use super::task;
use cd_wire::WireMessage;

/// What a handle asks of the connection task (one bounded channel, processed in order).
#[derive(Debug)]
pub(crate) enum Command {
    /// Write this line on the current connection (dropped when there is none).
    Line(WireMessage),
    /// Write these bytes, one or more lines already serialized (each ending in `\n`),
    /// likewise.
    Raw(Bytes),
    /// Replace the declared commands and re-send `COMMANDS`.
    SetCommands(BTreeSet<String>),
    /// UNREGISTER, close the socket, stop the task; answered when done.
    Close(oneshot::Sender<()>),
}

/// Waiting for room in the outgoing channel ([`Client::send_raw`]'s slow path).
type RawWait<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ClientError>> + Send + 'a>>;

/// Messages from the daemon, in arrival order (bounded: the task stops reading the socket
/// while it is full).
pub type Incoming = mpsc::Receiver<WireMessage>;

/// Batches of raw lines from the daemon (without `\n`), in arrival order
/// ([`Client::spawn_raw`]).
pub(crate) type RawIncoming = mpsc::Receiver<Vec<Bytes>>;

/// A permanent connection to a Communicator daemon. Clones share one connection task; the
/// task stops when [`Client::close`] is called, when its cancellation token fires, or when the
/// last handle is dropped (then abruptly, without UNREGISTER, as a crash would).
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    state: watch::Receiver<ConnectionState>,
    service: std::sync::Arc<str>,
}

impl Client {
    /// Start the connection task (tracked by a tracker of its own).
    pub fn connect(config: ClientConfig) -> (Client, Incoming) {
        Self::spawn(config, &TaskTracker::new(), CancellationToken::new())
    }

    /// Start the connection task on `tracker`; it stops when `cancel` fires.
    pub fn spawn(
        config: ClientConfig,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> (Client, Incoming) {
        let (in_tx, in_rx) = mpsc::channel(config.incoming_capacity.max(1));
        let client = Self::start(config, task::InSink::Parsed(in_tx), tracker, cancel);
        (client, in_rx)
    }

    /// [`Client::spawn`] handing incoming lines over unparsed, in batches of up to
    /// [`task::RAW_BATCH`] (the native transport parses them in place). The channel holds
    /// `incoming_capacity / RAW_BATCH` batches (at least 2).
    pub(crate) fn spawn_raw(
        config: ClientConfig,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> (Client, RawIncoming) {
        let batches = (config.incoming_capacity / task::RAW_BATCH).max(2);
        let (in_tx, in_rx) = mpsc::channel(batches);
        let client = Self::start(config, task::InSink::Raw(in_tx), tracker, cancel);
        (client, in_rx)
    }

    fn start(
        config: ClientConfig,
        sink: task::InSink,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Client {
        let (tx, rx) = mpsc::channel(config.outgoing_capacity.max(1));
        let (state_tx, state) = watch::channel(ConnectionState::Disconnected);
        let service = std::sync::Arc::from(config.service.as_str());
        tracker.spawn(task::run(config, rx, sink, state_tx, cancel));
        Client { tx, state, service }
    }

    /// The registered service name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    /// A watch of the state (Connected / Disconnected / Refused / Closed).
    pub fn watch(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// Wait until registered, up to `timeout`; the state at that moment.
    pub async fn wait_connected(&self, timeout: Duration) -> ConnectionState {
        let mut rx = self.state.clone();
        let wait = async {
            let _ = rx
                .wait_for(|s| s.is_connected() || matches!(s, ConnectionState::Closed))
                .await;
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.state()
    }

    /// Queue a line for the daemon. Fails fast with [`ClientError::NotConnected`] while not
    /// registered (the Communicator client returns false likewise); waits while the outgoing
    /// channel is full. A line queued just before a connection drops is lost: callers that
    /// need delivery keep their own copy (the native transport does).
    pub async fn send(&self, msg: WireMessage) -> Result<(), ClientError> {
        msg.validate()?;
        match &*self.state.borrow() {
            ConnectionState::Connected { .. } => {}
            ConnectionState::Closed => return Err(ClientError::Closed),
            _ => return Err(ClientError::NotConnected),
        }
        self.tx
            .send(Command::Line(msg))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Queue lines already serialized by the crate (each valid and ending in `\n`: the
    /// native transport's [`Encoded`](crate::transport::encode::Encoded)); otherwise as
    /// [`Client::send`].
    pub(crate) async fn send_raw(&self, lines: Bytes) -> Result<(), ClientError> {
        match self.try_send_raw(lines)? {
            None => Ok(()),
            Some(wait) => wait.await,
        }
    }

    /// [`Client::send_raw`] without waiting when the channel has room (`None`); when it is
    /// full, the (boxed, so rarely allocated) wait for room. Keeps the caller's future small.
    fn try_send_raw(&self, lines: Bytes) -> Result<Option<RawWait<'_>>, ClientError> {
        match &*self.state.borrow() {
            ConnectionState::Connected { .. } => {}
            ConnectionState::Closed => return Err(ClientError::Closed),
            _ => return Err(ClientError::NotConnected),
        }
        match self.tx.try_send(Command::Raw(lines)) {
            Ok(()) => Ok(None),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ClientError::Closed),
            Err(mpsc::error::TrySendError::Full(cmd)) => Ok(Some(Box::pin(async move {
                self.tx.send(cmd).await.map_err(|_| ClientError::Closed)
            }))),
        }
    }

    /// Queue a line without waiting; false when the channel is full or not connected.
    pub fn try_send(&self, msg: WireMessage) -> bool {
        if !self.state.borrow().is_connected() || msg.validate().is_err() {
            return false;
        }
        self.tx.try_send(Command::Line(msg)).is_ok()
    }

    /// Replace the declared commands (sent now when connected, and after every reconnect).
    pub async fn set_commands(&self, commands: BTreeSet<String>) -> Result<(), ClientError> {
        self.tx
            .send(Command::SetCommands(commands))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Send UNREGISTER (when connected), close the socket and stop the task. Waits at most
    /// `timeout` for lines queued before it to be written.
    pub async fn close(&self, timeout: Duration) -> Result<(), ClientError> {
        let (done_tx, done_rx) = oneshot::channel();
        let ask = async {
            self.tx
                .send(Command::Close(done_tx))
                .await
                .map_err(|_| ClientError::Closed)?;
            done_rx.await.map_err(|_| ClientError::Closed)
        };
        match tokio::time::timeout(timeout, ask).await {
            Ok(Ok(())) | Ok(Err(ClientError::Closed)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::NotConnected),
        }
    }
}
