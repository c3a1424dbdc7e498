//! The receiver task: reads the client's incoming lines, applies acknowledgements to the
//! outbox, orders at-least-once lines per sender stream ([`super::streams`]), hands deliveries
//! to the inbox, and sends batched acknowledgements back.
//!
//! Per turn the task takes up to `LINE_BATCH` waiting lines, and hands every ready delivery
//! the inbox has room for, so a burst costs one wake-up rather than one per message.
//!
//! Queues (all bounded):
//! - `ready`: deliveries waiting for inbox room. From [`READY_PAUSE`] on, the task stops
//!   taking lines: the socket and the daemon's queue for this connection hold them, so a
//!   burst waits instead of being dropped (a daemon whose queue fills disconnects the
//!   connection as a slow consumer, as it does any service that stops reading; an
//!   at-least-once sender gets at most its outbox bound, `queue_bound`, ahead). It reads on
//!   **while a send of ours waits for outbox room**, because the acknowledgements that send
//!   waits for come on the same connection. Reading on, at most [`READY_BOUND`]: beyond,
//!   arriving at-least-once lines are dropped (the sender resends them) and at-most-once lines
//!   are dropped with a warning.
//! - the inbox: `prefetch` deliveries.
//! - settle events from ackers: an unbounded channel, but at most one event per outstanding
//!   delivery (ready + inbox + in handlers), so bounded by the two bounds above.
//! - pending acknowledgements: flushed every [`ACK_FLUSH`] or at [`ACK_BATCH`] positions,
//!   at most [`MAX_PENDING_ACKS`] kept while they cannot be written.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use comms_core::transport::NoAck;
use comms_core::{commands, Acker, Address, Delivery, Message, Result};

use super::ack::{encode_ack, parse_ack};
use super::mapping::{from_view, from_wire, Inbound, SeqInfo, ACK_COMMAND, P_ACK, P_CACHE};
use super::outbox::Outbox;
use super::stock::StockPeers;
use super::streams::{StreamKey, Streams};
use crate::client::{Client, RawIncoming, DAEMON_SERVICE};
use cd_wire::{parse, parse_view, Parsed, WireMessage, WireView};

/// Incoming batches (of up to [`crate::client::task::RAW_BATCH`] lines) taken per turn.
const LINE_BATCH: usize = 4;
/// Deliveries kept waiting for inbox room, at most.
pub const READY_BOUND: usize = 8192;
/// From this many waiting deliveries on, lines are read only while a send of ours waits for
/// outbox room (see the module docs).
pub const READY_PAUSE: usize = 2048;
/// Acknowledgements are flushed at least this often.
pub const ACK_FLUSH: Duration = Duration::from_millis(5);
/// ...or as soon as this many positions wait.
pub const ACK_BATCH: usize = 512;
/// Positions kept for acknowledgement while they cannot be written (not connected); beyond
/// this they are dropped with a warning (the senders resend, and the duplicates are acked).
pub const MAX_PENDING_ACKS: usize = 65_536;

/// A delivery's stream (shared by all its deliveries) and position.
type Place = (Arc<StreamKey>, u64);

#[derive(Debug)]
pub(crate) struct Pending {
    msg: Arc<Message>,
    place: Option<Place>,
    redelivered: bool,
}

#[derive(Debug)]
pub(crate) enum Settle {
    Ack(Place),
    Requeue(Box<Pending>),
}

struct NativeAcker {
    pending: Option<Pending>,
    tx: mpsc::UnboundedSender<Settle>,
}

#[async_trait]
impl Acker for NativeAcker {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        if let Some(place) = self.pending.take().and_then(|p| p.place) {
            let _ = self.tx.send(Settle::Ack(place));
        }
        Ok(())
    }

    async fn nack(mut self: Box<Self>, requeue: bool) -> Result<()> {
        if let Some(p) = self.pending.take() {
            let _ = self.tx.send(if requeue {
                Settle::Requeue(Box::new(p))
            } else {
                match p.place {
                    Some(place) => Settle::Ack(place),
                    None => return Ok(()),
                }
            });
        }
        Ok(())
    }
}

impl Drop for NativeAcker {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            let _ = self.tx.send(Settle::Requeue(Box::new(p)));
        }
    }
}

/// What the receiver task shares with the transport.
pub(crate) struct ReceiverParts {
    pub(crate) local: Address,
    pub(crate) client: Client,
    pub(crate) outbox: Arc<Mutex<Outbox>>,
    /// The outbox permits: none left means a send may wait for acknowledgements.
    pub(crate) permits: Arc<Semaphore>,
    /// Woken when a send starts waiting for a permit (a paused receiver reads on).
    pub(crate) wanted: Arc<Notify>,
    pub(crate) stock: Arc<Mutex<StockPeers>>,
    pub(crate) incoming: RawIncoming,
    pub(crate) inbox: oneshot::Receiver<mpsc::Sender<Delivery>>,
    /// Woken when an acknowledgement opened a held stream (the resend task writes it).
    pub(crate) released: Arc<Notify>,
    pub(crate) cancel: CancellationToken,
}

struct State {
    parts: ReceiverParts,
    epoch: String,
    streams: Streams,
    ready: VecDeque<Pending>,
    acks: HashMap<Arc<StreamKey>, Vec<u64>>,
    ack_count: usize,
    /// The stream of the last line: consecutive lines of one stream share its key.
    last_key: Option<Arc<StreamKey>>,
    /// The sender of the last line (most lines share it: no allocation).
    last_stamp: Option<Address>,
    settle_tx: mpsc::UnboundedSender<Settle>,
}

async fn reserve(inbox: Option<mpsc::Sender<Delivery>>) -> Option<mpsc::OwnedPermit<Delivery>> {
    match inbox {
        Some(tx) => tx.reserve_owned().await.ok(),
        None => std::future::pending().await,
    }
}

/// A request to write every pending acknowledgement now (answered once written).
pub(crate) type FlushRequest = oneshot::Sender<()>;

pub(crate) async fn run(parts: ReceiverParts, mut flush_rx: mpsc::Receiver<FlushRequest>) {
    let epoch = super::lock(&parts.outbox).epoch().to_owned();
    let (settle_tx, mut settle_rx) = mpsc::unbounded_channel();
    let cancel = parts.cancel.clone();
    let mut st = State {
        parts,
        epoch,
        streams: Streams::default(),
        ready: VecDeque::new(),
        acks: HashMap::new(),
        ack_count: 0,
        last_key: None,
        last_stamp: None,
        settle_tx,
    };
    let mut inbox: Option<mpsc::Sender<Delivery>> = None;
    let mut inbox_gone = false;
    let mut tick = tokio::time::interval(ACK_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(ev) = settle_rx.recv() => st.settle(ev),
            tx = &mut st.parts.inbox, if inbox.is_none() && !inbox_gone => match tx {
                Ok(tx) => inbox = Some(tx),
                Err(_) => inbox_gone = true,
            },
            permit = reserve(inbox.clone()), if !st.ready.is_empty() => match permit {
                Some(permit) => {
                    if let Some(p) = st.ready.pop_front() {
                        permit.send(st.delivery(p));
                    }
                    // Hand over what else is ready while the inbox has room (one wake-up).
                    if let Some(tx) = &inbox {
                        while !st.ready.is_empty() {
                            let Ok(permit) = tx.try_reserve() else { break };
                            if let Some(p) = st.ready.pop_front() {
                                permit.send(st.delivery(p));
                            }
                        }
                    }
                }
                None => {
                    // The endpoint stopped reading: what is ready will be resent by its senders.
                    inbox = None;
                    inbox_gone = true;
                    st.ready.clear();
                }
            },
            _ = st.parts.wanted.notified(), if !st.reading() => {}
            lines = st.parts.incoming.recv(), if st.reading() => match lines {
                Some(lines) => {
                    st.lines(&lines);
                    // Take what else arrived in the same turn.
                    for _ in 1..LINE_BATCH {
                        match st.parts.incoming.try_recv() {
                            Ok(lines) => st.lines(&lines),
                            Err(_) => break,
                        }
                    }
                    if st.ack_count >= ACK_BATCH {
                        st.flush_acks();
                    }
                }
                None => break,
            },
            _ = tick.tick(), if st.ack_count > 0 => st.flush_acks(),
            Some(done) = flush_rx.recv() => {
                // Closing: settle what the handlers finished, write the acks, then answer, so
                // that the UNREGISTER that follows cannot overtake them.
                while let Ok(ev) = settle_rx.try_recv() {
                    st.settle(ev);
                }
                st.flush_acks();
                let _ = done.send(());
            }
        }
    }
}

/// The daemon's own lines: `<NODE:communicatord ...` notifications, and replies addressed to
/// us without any sent-from prefix (e.g. SERVICE_UNAVAILABLE). A UDP datagram is stamped
/// `<NODE: ` (node, no service): a message, not the daemon's.
fn is_daemon(sent_from_server: &str, sent_from_service: &str) -> bool {
    sent_from_service == DAEMON_SERVICE
        || (sent_from_service.is_empty() && sent_from_server.is_empty())
}

impl State {
    /// Whether to take more lines now (see the module docs).
    fn reading(&self) -> bool {
        self.ready.len() < READY_PAUSE || self.parts.permits.available_permits() == 0
    }

    fn delivery(&self, p: Pending) -> Delivery {
        let redelivered = p.redelivered;
        if p.place.is_some() {
            // The acker shares the message: a nack or a drop puts it back in the ready queue.
            Delivery::shared(
                p.msg.clone(),
                redelivered,
                Box::new(NativeAcker {
                    pending: Some(p),
                    tx: self.settle_tx.clone(),
                }),
            )
        } else {
            Delivery::shared(p.msg, redelivered, Box::new(NoAck))
        }
    }

    fn settle(&mut self, ev: Settle) {
        match ev {
            Settle::Ack((key, n)) => {
                let last = self.streams.settled(&key, n);
                self.add_ack(key, n);
                if last {
                    // The sender holds its next stream until this one is acknowledged.
                    self.flush_acks();
                }
            }
            Settle::Requeue(p) => {
                let mut p = *p;
                p.redelivered = true;
                self.ready.push_front(p);
            }
        }
    }

    /// Applies `f` to the outbox; wakes the resend task when that opened a held stream (its
    /// lines wait in the outbox for writing).
    fn update_outbox(&self, f: impl FnOnce(&mut Outbox)) {
        let mut outbox = super::lock(&self.parts.outbox);
        f(&mut outbox);
        if outbox.has_released() {
            self.parts.released.notify_one();
        }
    }

    fn add_ack(&mut self, key: Arc<StreamKey>, n: u64) {
        if self.ack_count >= MAX_PENDING_ACKS {
            tracing::warn!(
                dropped = self.ack_count,
                "native: acknowledgements could not be written; dropped (senders will resend)"
            );
            self.acks.clear();
            self.ack_count = 0;
        }
        self.acks.entry(key).or_default().push(n);
        self.ack_count += 1;
    }

    /// Write one acknowledgement line per stream with settled positions. A stream's vector
    /// is kept (emptied, at most [`ACK_BATCH`] positions of capacity reused) until a flush
    /// finds it still empty.
    fn flush_acks(&mut self) {
        let client = &self.parts.client;
        let mut left = 0;
        self.acks.retain(|key, ns| {
            if ns.is_empty() {
                return false;
            }
            let Ok(to) = key.from.parse::<Address>() else {
                return false;
            };
            let line = WireMessage::new(ACK_COMMAND)
                .with_server(to.node())
                .with_service(to.service())
                .with_param(P_ACK, encode_ack(&key.epoch, key.stream, ns))
                .with_param(P_CACHE, "no");
            if client.try_send(line) {
                ns.clear();
                ns.shrink_to(ACK_BATCH);
            } else {
                left += ns.len();
            }
            true
        });
        self.ack_count = left;
    }

    /// The key of `seq`'s stream from `stamp`: the last line's when it is the same stream.
    fn key_of(&mut self, stamp: &Address, seq: &SeqInfo) -> Arc<StreamKey> {
        if let Some(k) = &self.last_key {
            let from = k.from.as_bytes();
            let (node, service) = (stamp.node().as_bytes(), stamp.service().as_bytes());
            if k.stream == seq.stream
                && k.epoch == seq.epoch
                && from.len() == node.len() + 1 + service.len()
                && from.starts_with(node)
                && from[node.len()] == b':'
                && from.ends_with(service)
            {
                return k.clone();
            }
        }
        let key = Arc::new(StreamKey {
            from: stamp.to_string(),
            epoch: seq.epoch.clone(),
            stream: seq.stream,
        });
        self.last_key = Some(key.clone());
        key
    }

    /// A batch of raw lines: each parsed in place (a JSON line is parsed whole).
    fn lines(&mut self, lines: &[bytes::Bytes]) {
        for line in lines {
            match parse_view(line) {
                Ok(Parsed::View(v)) => self.view(&v),
                Ok(Parsed::Json(_)) => match parse(line) {
                    Ok(w) => self.wire(w),
                    Err(e) => tracing::warn!(error = %e, "native: unreadable line skipped"),
                },
                Err(e) => tracing::warn!(error = %e, "native: unreadable line skipped"),
            }
        }
    }

    fn view(&mut self, v: &WireView<'_>) {
        if v.command == ACK_COMMAND {
            if let Some(ack) = v.param(P_ACK) {
                self.ack(&ack);
            }
            return;
        }
        let from_daemon = is_daemon(v.sent_from_server, v.sent_from_service);
        let inbound = from_view(v, &self.parts.local, &mut self.last_stamp);
        self.inbound(inbound, from_daemon);
    }

    fn wire(&mut self, w: WireMessage) {
        if w.command == ACK_COMMAND {
            if let Some(ack) = w.param(P_ACK) {
                self.ack(ack);
            }
            return;
        }
        let from_daemon = is_daemon(&w.sent_from_server, &w.sent_from_service);
        let inbound = from_wire(w, &self.parts.local);
        self.inbound(inbound, from_daemon);
    }

    /// A `COMMS_ACK` for our outbox.
    fn ack(&mut self, value: &str) {
        if let Some((epoch, stream, ranges)) = parse_ack(value, 1 << 20) {
            if epoch == self.epoch {
                self.update_outbox(|o| {
                    o.ack(stream, &ranges);
                });
            }
        }
    }

    fn inbound(&mut self, inbound: Inbound, from_daemon: bool) {
        let msg = inbound.message;
        if from_daemon {
            if msg.command != commands::SERVICE_UNAVAILABLE {
                tracing::debug!(command = %msg.command, params = ?msg.params, "daemon message ignored");
                return;
            }
            if let Some(corr) = &msg.correlation {
                self.update_outbox(|o| {
                    o.forget_id(corr);
                });
            }
        } else if let Some(stamp) = &inbound.stamp {
            let mut stock = super::lock(&self.parts.stock);
            if inbound.stock {
                stock.insert(stamp.service());
            } else if !stock.is_empty() {
                stock.remove(stamp.service());
            }
        }
        let room = self.ready.len() < READY_BOUND;
        match (inbound.seq, inbound.stamp) {
            (Some(seq), Some(stamp)) => {
                let key = self.key_of(&stamp, &seq);
                let out = self.streams.arrive(&key, &seq, msg, room);
                if let Some(n) = out.reack {
                    self.add_ack(key.clone(), n);
                }
                for (n, m) in out.deliver {
                    self.ready.push_back(Pending {
                        msg: Arc::new(m),
                        place: Some((key.clone(), n)),
                        redelivered: false,
                    });
                }
            }
            _ if room => self.ready.push_back(Pending {
                msg: Arc::new(msg),
                place: None,
                redelivered: false,
            }),
            _ => {
                tracing::warn!(command = %msg.command, from = %comms_core::address::or_dash(msg.from()), "native: inbox full, at-most-once message dropped")
            }
        }
    }
}
