//! The sender's copies: every at-least-once message accepted by `send`/`forward` until the
//! receiving transport acknowledges it.
//!
//! - **Streams**, numbered from 1 per transport; positions `N` count from 1 per stream. A
//!   line carries `comms_seq=EPOCH.STREAM.N` and `comms_base=B`, B being the lowest position
//!   still held for that stream (everything below was acknowledged, or given up after a
//!   `SERVICE_UNAVAILABLE`).
//! - To an **instance** (`node:svc`) a destination has one stream.
//! - To a **service** (`svc`) a stream is capped at [`SERVICE_STREAM_MESSAGES`] messages
//!   (its last line says so with `comms_last=1`, so the receiver acknowledges it at once) or
//!   [`SERVICE_STREAM_AGE`]; then the next stream starts, **held** (kept, not written) until
//!   every copy of its predecessor is acknowledged — handled. The daemon gives each stream
//!   of a sender its own turn among equally near instances, so one sender's work spreads over
//!   the instances of a service while its order holds: no message of a stream is handled
//!   before every message of the stream before it (the drain point, as the Kafka backend's).
//!   Lines of a stream that opens are returned by [`Outbox::take_released`].
//! - Bounded: each entry holds a semaphore permit of the transport's `queue_bound`; `send`
//!   waits for a permit (then fails with `Backpressure`), an acknowledgement releases it.
//! - **Reply quota**: replies owed to one destination hold at most [`REPLY_QUOTA`] entries;
//!   beyond it they are written once, unkept, so a peer that never acknowledges cannot fill
//!   `queue_bound` for every destination with the replies it provokes.
//! - Resend: every written entry remembers when it was last written; [`Outbox::due`] returns
//!   those unacknowledged for `ack_timeout × 2^attempts` (capped at 8×),
//!   [`Outbox::everything`] returns all of them (after a reconnect), in stream and position
//!   order. Held streams are not written.
//!
//! - Streams are numbered from a monotonic counter; once more than [`KEEP_STREAMS`] exist, a
//!   stream whose last copy is acknowledged is forgotten (its destination gets a fresh stream,
//!   which a receiver starts at its base), so sending to many destinations stays bounded. A
//!   finished service stream (capped and drained) is forgotten at once.
//!
//! - A copy is the message serialized once ([`Encoded`]); each write splices that stream's
//!   `comms_base`/`comms_seq` (and `comms_last`) into the bytes ([`Encoded::line`]).
//!
//! Lives behind a `std::sync::Mutex` shared by `send` and the resend and receiver tasks: every
//! critical section is a map update, never an await.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use comms_core::MessageId;

use super::encode::{Encoded, Seq};

struct Entry {
    line: Encoded,
    id: MessageId,
    /// The last position of a capped service stream (`comms_last=1`).
    last: bool,
    last_sent: Instant,
    attempts: u32,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Replies (messages with a correlation) held for one destination at most. A peer that asks
/// and never acknowledges (a raw client sending fake `PING`s, a crashed asker) would otherwise
/// fill the shared `queue_bound` with the copies of its answers and wedge every other send;
/// past this quota a reply to that destination is written once and not kept (at-most-once;
/// the asker's own timeout and retry cover a loss), so it costs the others nothing.
pub const REPLY_QUOTA: usize = 256;

/// Streams kept even when idle.
pub const KEEP_STREAMS: usize = 1024;
/// Messages in one stream to a service; the next ones go to a new stream.
pub const SERVICE_STREAM_MESSAGES: u64 = 256;
/// Age of an open stream to a service after which new messages go to a new stream.
pub const SERVICE_STREAM_AGE: Duration = Duration::from_millis(500);

struct StreamOut {
    key: String,
    next: u64,
    /// Boxed: tree nodes of pointers stay small (nodes of whole entries are over 1 KiB,
    /// the allocator's slow path, once every few messages).
    entries: BTreeMap<u64, Box<Entry>>,
    /// Written to the daemon; false while a predecessor drains.
    open: bool,
    /// When it opened.
    opened: Instant,
    /// Takes no more messages (a service stream at its cap or age).
    full: bool,
    /// The held stream that opens when this one drains.
    successor: Option<u64>,
}

/// See the module docs.
pub(crate) struct Outbox {
    epoch: String,
    /// The newest stream of each destination key.
    streams: HashMap<String, u64>,
    out: BTreeMap<u64, StreamOut>,
    by_id: HashMap<MessageId, Vec<(u64, u64)>>,
    len: usize,
    last_stream: u64,
    released: Vec<Bytes>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("epoch", &self.epoch)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Whether a destination key names a service (`svc`) rather than an instance (`node:svc`).
fn is_service_key(key: &str) -> bool {
    !key.contains(':') && !matches!(key, "." | "*")
}

impl Outbox {
    pub(crate) fn new(epoch: String) -> Self {
        Self {
            epoch,
            streams: HashMap::new(),
            out: BTreeMap::new(),
            by_id: HashMap::new(),
            len: 0,
            last_stream: 0,
            released: Vec::new(),
        }
    }

    pub(crate) fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Messages held (written or waiting for their stream to open).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Messages held in the newest stream of destination `key` (for an instance, its only
    /// stream: what [`REPLY_QUOTA`] counts).
    pub(crate) fn held_for(&self, key: &str) -> usize {
        self.streams
            .get(key)
            .and_then(|id| self.out.get(id))
            .map_or(0, |s| s.entries.len())
    }

    fn new_stream(&mut self, key: &str, open: bool, now: Instant) -> u64 {
        self.last_stream += 1;
        let id = self.last_stream;
        self.streams.insert(key.to_owned(), id);
        self.out.insert(
            id,
            StreamOut {
                key: key.to_owned(),
                next: 0,
                entries: BTreeMap::new(),
                open,
                opened: now,
                full: false,
                successor: None,
            },
        );
        id
    }

    /// The stream a new message for `key` goes to: the newest one unless it is full (or, to a
    /// service, old); then a new one, held while the newest still has copies.
    fn stream_for(&mut self, key: &str, now: Instant) -> u64 {
        let Some(&cur) = self.streams.get(key) else {
            return self.new_stream(key, true, now);
        };
        let Some(s) = self.out.get_mut(&cur) else {
            return self.new_stream(key, true, now);
        };
        if s.open && is_service_key(key) && now.duration_since(s.opened) >= SERVICE_STREAM_AGE {
            s.full = true;
        }
        if !s.full {
            return cur;
        }
        if s.entries.is_empty() {
            self.out.remove(&cur);
            return self.new_stream(key, true, now);
        }
        let next = self.new_stream(key, false, now);
        if let Some(s) = self.out.get_mut(&cur) {
            s.successor = Some(next);
        }
        next
    }

    /// Keep `line` (message `id`) for destination `key`; the line to write now, if its
    /// stream is open.
    pub(crate) fn push(
        &mut self,
        key: &str,
        line: Encoded,
        id: MessageId,
        permit: Option<OwnedSemaphorePermit>,
        now: Instant,
    ) -> Option<Bytes> {
        let stream = self.stream_for(key, now);
        let s = self.out.get_mut(&stream)?;
        s.next += 1;
        let n = s.next;
        let last = is_service_key(key) && n >= SERVICE_STREAM_MESSAGES;
        if last {
            s.full = true;
        }
        let open = s.open;
        self.by_id.entry(id.clone()).or_default().push((stream, n));
        s.entries.insert(
            n,
            Box::new(Entry {
                line,
                id,
                last,
                last_sent: now,
                attempts: 0,
                _permit: permit,
            }),
        );
        self.len += 1;
        if open {
            self.line(stream, n)
        } else {
            None
        }
    }

    fn line(&self, stream: u64, n: u64) -> Option<Bytes> {
        let s = self.out.get(&stream)?;
        let base = s.entries.keys().next().copied().unwrap_or(n);
        let e = s.entries.get(&n)?;
        Some(e.line.line(&Seq {
            epoch: &self.epoch,
            stream,
            n,
            base,
            last: e.last,
        }))
    }

    fn remove(&mut self, stream: u64, n: u64) -> bool {
        let Some(s) = self.out.get_mut(&stream) else {
            return false;
        };
        let Some(e) = s.entries.remove(&n) else {
            return false;
        };
        if s.entries.is_empty() {
            self.drained(stream);
        }
        self.len -= 1;
        if let Some(v) = self.by_id.get_mut(&e.id) {
            v.retain(|p| *p != (stream, n));
            if v.is_empty() {
                self.by_id.remove(&e.id);
            }
        }
        true
    }

    /// Stream `stream` has no copies left: a full one is finished (its successor opens and
    /// its lines wait in `released`); an idle one is forgotten beyond [`KEEP_STREAMS`].
    fn drained(&mut self, stream: u64) {
        let Some(s) = self.out.get(&stream) else {
            return;
        };
        if !(s.full || self.out.len() > KEEP_STREAMS) {
            return;
        }
        let successor = s.successor;
        if let Some(done) = self.out.remove(&stream) {
            if self.streams.get(&done.key) == Some(&stream) {
                self.streams.remove(&done.key);
            }
        }
        let Some(next) = successor else { return };
        let now = Instant::now();
        let Some(s) = self.out.get_mut(&next) else {
            return;
        };
        s.open = true;
        s.opened = now;
        let mut positions = Vec::with_capacity(s.entries.len());
        for (n, e) in &mut s.entries {
            e.last_sent = now;
            e.attempts = 0;
            positions.push(*n);
        }
        for n in positions {
            if let Some(line) = self.line(next, n) {
                self.released.push(line);
            }
        }
    }

    /// Whether [`Outbox::take_released`] has lines.
    pub(crate) fn has_released(&self) -> bool {
        !self.released.is_empty()
    }

    /// Lines of streams that opened since the last call (their predecessor drained), in
    /// order: the caller writes them.
    pub(crate) fn take_released(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.released)
    }

    /// Apply an acknowledgement; the number of messages released.
    pub(crate) fn ack(&mut self, stream: u64, ranges: &[(u64, u64)]) -> usize {
        let mut released = 0;
        for &(a, b) in ranges {
            let held: Vec<u64> = match self.out.get(&stream) {
                Some(s) if s.open => s.entries.range(a..=b).map(|(n, _)| *n).collect(),
                _ => return released,
            };
            for n in held {
                released += usize::from(self.remove(stream, n));
            }
        }
        released
    }

    /// Forget every copy of message `id` (the daemon reported it undeliverable).
    pub(crate) fn forget_id(&mut self, id: &MessageId) -> usize {
        let places = self.by_id.get(id).cloned().unwrap_or_default();
        places
            .into_iter()
            .filter(|(s, n)| self.remove(*s, *n))
            .count()
    }

    /// Written lines unacknowledged for longer than their resend delay; marks them sent now.
    pub(crate) fn due(&mut self, now: Instant, ack_timeout: Duration) -> Vec<Bytes> {
        let mut picked = Vec::new();
        for (stream, s) in self.out.iter_mut().filter(|(_, s)| s.open) {
            for (n, e) in &mut s.entries {
                let wait = ack_timeout * (1u32 << e.attempts.min(3));
                if now.duration_since(e.last_sent) >= wait {
                    e.last_sent = now;
                    e.attempts += 1;
                    picked.push((*stream, *n));
                }
            }
        }
        picked
            .into_iter()
            .filter_map(|(s, n)| self.line(s, n))
            .collect()
    }

    /// Every written line, in stream and position order (after a reconnect); resets backoff.
    pub(crate) fn everything(&mut self, now: Instant) -> Vec<Bytes> {
        let mut picked = Vec::new();
        for (stream, s) in self.out.iter_mut().filter(|(_, s)| s.open) {
            for (n, e) in &mut s.entries {
                e.last_sent = now;
                e.attempts = 0;
                picked.push((*stream, *n));
            }
        }
        picked
            .into_iter()
            .filter_map(|(s, n)| self.line(s, n))
            .collect()
    }
}

#[cfg(test)]
mod test_support {
    pub(super) use crate::transport::mapping::{P_BASE, P_LAST, P_SEQ};
    use bytes::Bytes;
    pub(super) use cd_wire::WireMessage;
    use comms_core::backend::WireFields;
    pub(super) use comms_core::MessageId;
    use comms_core::{Destination, Message};

    use super::Encoded;

    /// A message to `service` with id `id`, encoded as the transport keeps it.
    pub(super) fn kept(service: &str, id: &str) -> (Encoded, MessageId) {
        let mut m = Message::new("X", Destination::Service(service.into())).unwrap();
        m.set_id(id.parse().unwrap());
        (Encoded::new(&m, None).unwrap(), m.id().clone())
    }

    /// Push the kept message `m`.
    pub(super) fn push(
        o: &mut super::Outbox,
        key: &str,
        m: (Encoded, MessageId),
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
        now: tokio::time::Instant,
    ) -> Option<Bytes> {
        o.push(key, m.0, m.1, permit, now)
    }

    /// A written line, parsed back.
    pub(super) fn wire(line: &Bytes) -> WireMessage {
        cd_wire::parse(line).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::*;

    fn msg(i: u32) -> (Encoded, MessageId) {
        kept("b", &format!("id{i}"))
    }

    #[tokio::test]
    async fn sequence_base_ack_and_resend() {
        let t0 = Instant::now();
        let mut o = Outbox::new("ep".into());
        let l1 = push(&mut o, "b", msg(1), None, t0).unwrap();
        let l2 = push(&mut o, "b", msg(2), None, t0).unwrap();
        let c1 = push(&mut o, "c", msg(3), None, t0).unwrap();
        assert_eq!(wire(&l1).param(P_SEQ), Some("ep.1.1"));
        assert_eq!(wire(&l2).param(P_SEQ), Some("ep.1.2"));
        assert_eq!(wire(&l2).param(P_BASE), Some("1"));
        assert_eq!(wire(&c1).param(P_SEQ), Some("ep.2.1"));
        assert_eq!(o.len(), 3);
        assert_eq!(o.ack(1, &[(1, 1)]), 1);
        assert_eq!(o.ack(1, &[(1, 1)]), 0, "a second ack releases nothing");
        let l3 = push(&mut o, "b", msg(4), None, t0).unwrap();
        assert_eq!(
            wire(&l3).param(P_BASE),
            Some("2"),
            "base moves past acknowledged"
        );
        let ack = Duration::from_secs(1);
        assert!(o.due(t0 + Duration::from_millis(500), ack).is_empty());
        let due = o.due(t0 + ack, ack);
        let seqs: Vec<_> = due
            .iter()
            .map(|w| wire(w).param(P_SEQ).unwrap().to_owned())
            .collect();
        assert_eq!(seqs, ["ep.1.2", "ep.1.3", "ep.2.1"], "in stream order");
        assert!(
            o.due(t0 + ack + ack, ack).is_empty(),
            "backoff doubles the wait"
        );
        assert_eq!(o.forget_id(&"id3".parse().unwrap()), 1);
        assert_eq!(o.everything(t0).len(), 2);
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;
    use test_support::*;

    #[tokio::test]
    async fn idle_streams_are_forgotten_beyond_the_keep_bound() {
        let t0 = Instant::now();
        let mut o = Outbox::new("ep".into());
        for d in 0..(KEEP_STREAMS + 10) {
            push(
                &mut o,
                &format!("dest{d}"),
                kept("b", &format!("i{d}")),
                None,
                t0,
            );
        }
        for s in 1..=(KEEP_STREAMS as u64 + 10) {
            o.ack(s, &[(1, 1)]);
        }
        assert_eq!(o.len(), 0);
        assert!(o.out.len() <= KEEP_STREAMS && o.streams.len() <= KEEP_STREAMS);
        // A forgotten destination gets a fresh stream number, never a reused one.
        let again = push(&mut o, "dest0", kept("b", "again"), None, t0).unwrap();
        assert_eq!(
            wire(&again).param(P_SEQ),
            Some(format!("ep.{}.1", KEEP_STREAMS + 11).as_str())
        );
    }
}

#[cfg(test)]
mod service_stream_tests {
    use super::*;
    use test_support::*;

    fn msg(i: u64) -> (Encoded, MessageId) {
        kept("work", &format!("id{i}"))
    }

    fn seq(w: &Bytes) -> String {
        wire(w).param(P_SEQ).unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn a_service_stream_is_capped_and_its_successor_waits_for_the_drain() {
        let t0 = Instant::now();
        let mut o = Outbox::new("ep".into());
        let cap = SERVICE_STREAM_MESSAGES;
        let mut written = Vec::new();
        for i in 1..=cap + 3 {
            if let Some(w) = push(&mut o, "work", msg(i), None, t0) {
                written.push(w);
            }
        }
        assert_eq!(written.len() as u64, cap, "the successor is held");
        assert_eq!(o.len() as u64, cap + 3);
        let last = written.last().unwrap();
        assert_eq!(wire(last).param(P_LAST), Some("1"));
        assert!(wire(&written[0]).param(P_LAST).is_none());
        // Held lines are neither resent nor written after a reconnect.
        assert_eq!(o.everything(t0).len() as u64, cap);
        // Acknowledging all but the last opens nothing; the last one does, in order.
        o.ack(1, &[(1, cap - 1)]);
        assert!(!o.has_released());
        o.ack(1, &[(cap, cap)]);
        let opened: Vec<_> = o.take_released().iter().map(seq).collect();
        assert_eq!(opened, ["ep.2.1", "ep.2.2", "ep.2.3"]);
        assert_eq!(o.len(), 3);
        // The open stream takes new messages directly.
        assert_eq!(
            seq(&push(&mut o, "work", msg(999), None, t0).unwrap()),
            "ep.2.4"
        );
    }

    #[tokio::test]
    async fn an_old_service_stream_moves_on_and_instances_keep_one_stream() {
        let t0 = Instant::now();
        let mut o = Outbox::new("ep".into());
        assert_eq!(
            seq(&push(&mut o, "work", msg(1), None, t0).unwrap()),
            "ep.1.1"
        );
        let later = t0 + SERVICE_STREAM_AGE;
        assert!(
            push(&mut o, "work", msg(2), None, later).is_none(),
            "held behind 1"
        );
        o.ack(1, &[(1, 1)]);
        assert_eq!(
            o.take_released().iter().map(seq).collect::<Vec<_>>(),
            ["ep.2.1"]
        );
        // Drained when old: the next stream opens at once.
        o.ack(2, &[(1, 1)]);
        let much_later = later + SERVICE_STREAM_AGE;
        assert_eq!(
            seq(&push(&mut o, "work", msg(3), None, much_later).unwrap()),
            "ep.3.1"
        );
        // To an instance: one stream, whatever the count and age.
        for i in 0..cap_plus() {
            let w = push(
                &mut o,
                "vm:b",
                msg(100 + i),
                None,
                much_later + SERVICE_STREAM_AGE,
            );
            assert_eq!(seq(&w.unwrap()), format!("ep.4.{}", i + 1));
        }
    }

    fn cap_plus() -> u64 {
        SERVICE_STREAM_MESSAGES + 2
    }

    #[tokio::test]
    async fn an_undeliverable_report_also_drains() {
        let t0 = Instant::now();
        let mut o = Outbox::new("ep".into());
        for i in 1..=SERVICE_STREAM_MESSAGES + 1 {
            push(&mut o, "work", msg(i), None, t0);
        }
        for i in 1..=SERVICE_STREAM_MESSAGES {
            o.forget_id(&format!("id{i}").parse().unwrap());
        }
        assert_eq!(o.take_released().len(), 1);
    }
}
