//! The sender's copies: every at-least-once message accepted by `send`/`forward` until the
//! receiving transport acknowledges it.
//!
//! - One **stream** per destination key (`node:svc`, `svc`), numbered from 1 per transport;
//!   positions `N` count from 1 per stream. A line carries `comms_seq=EPOCH.STREAM.N` and
//!   `comms_base=B`, B being the lowest position still held for that stream (everything below
//!   was acknowledged, or given up after a `SERVICE_UNAVAILABLE`).
//! - Bounded: each entry holds a semaphore permit of the transport's `queue_bound`; `send`
//!   waits for a permit (then fails with `Backpressure`), an acknowledgement releases it.
//! - Resend: every entry remembers when it was last written; [`Outbox::due`] returns those
//!   unacknowledged for `ack_timeout × 2^attempts` (capped at 8×), [`Outbox::everything`]
//!   returns all of them (after a reconnect), in stream and position order.
//!
//! - Streams are numbered from a monotonic counter; once more than [`KEEP_STREAMS`] exist, a
//!   stream whose last copy is acknowledged is forgotten (its destination gets a fresh stream,
//!   which a receiver starts at its base), so sending to many destinations stays bounded.
//!
//! Lives behind a `std::sync::Mutex` shared by `send` and the resend and receiver tasks: every
//! critical section is a map update, never an await.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use comms_core::MessageId;

use super::mapping::{P_BASE, P_ID, P_SEQ};
use crate::codec::WireMessage;

struct Entry {
    wire: WireMessage,
    last_sent: Instant,
    attempts: u32,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Streams kept even when idle.
pub const KEEP_STREAMS: usize = 1024;

#[derive(Default)]
struct StreamOut {
    key: String,
    next: u64,
    entries: BTreeMap<u64, Entry>,
}

/// See the module docs.
pub(crate) struct Outbox {
    epoch: String,
    streams: HashMap<String, u64>,
    out: BTreeMap<u64, StreamOut>,
    by_id: HashMap<MessageId, Vec<(u64, u64)>>,
    len: usize,
    last_stream: u64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("epoch", &self.epoch)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
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
        }
    }

    pub(crate) fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Messages held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Keep `wire` for destination `key`; the line to write now.
    pub(crate) fn push(
        &mut self,
        key: &str,
        wire: WireMessage,
        permit: Option<OwnedSemaphorePermit>,
        now: Instant,
    ) -> WireMessage {
        let stream = match self.streams.get(key) {
            Some(s) => *s,
            None => {
                self.last_stream += 1;
                self.streams.insert(key.to_owned(), self.last_stream);
                self.last_stream
            }
        };
        let s = self.out.entry(stream).or_insert_with(|| StreamOut {
            key: key.to_owned(),
            ..StreamOut::default()
        });
        s.next += 1;
        let n = s.next;
        if let Some(id) = wire.param(P_ID).and_then(|i| i.parse::<MessageId>().ok()) {
            self.by_id.entry(id).or_default().push((stream, n));
        }
        s.entries.insert(
            n,
            Entry {
                wire,
                last_sent: now,
                attempts: 0,
                _permit: permit,
            },
        );
        self.len += 1;
        self.line(stream, n).unwrap_or_default()
    }

    fn line(&self, stream: u64, n: u64) -> Option<WireMessage> {
        let s = self.out.get(&stream)?;
        let base = s.entries.keys().next().copied().unwrap_or(n);
        let mut w = s.entries.get(&n)?.wire.clone();
        w.params
            .insert(P_SEQ.into(), format!("{}.{stream}.{n}", self.epoch));
        w.params.insert(P_BASE.into(), base.to_string());
        Some(w)
    }

    fn remove(&mut self, stream: u64, n: u64) -> bool {
        let Some(s) = self.out.get_mut(&stream) else {
            return false;
        };
        let Some(e) = s.entries.remove(&n) else {
            return false;
        };
        if s.entries.is_empty() && self.out.len() > KEEP_STREAMS {
            if let Some(idle) = self.out.remove(&stream) {
                self.streams.remove(&idle.key);
            }
        }
        self.len -= 1;
        if let Some(id) = e.wire.param(P_ID).and_then(|i| i.parse::<MessageId>().ok()) {
            if let Some(v) = self.by_id.get_mut(&id) {
                v.retain(|p| *p != (stream, n));
                if v.is_empty() {
                    self.by_id.remove(&id);
                }
            }
        }
        true
    }

    /// Apply an acknowledgement; the number of messages released.
    pub(crate) fn ack(&mut self, stream: u64, ranges: &[(u64, u64)]) -> usize {
        let mut released = 0;
        for &(a, b) in ranges {
            let held: Vec<u64> = match self.out.get(&stream) {
                Some(s) => s.entries.range(a..=b).map(|(n, _)| *n).collect(),
                None => return released,
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

    /// Lines unacknowledged for longer than their resend delay; marks them sent now.
    pub(crate) fn due(&mut self, now: Instant, ack_timeout: Duration) -> Vec<WireMessage> {
        let mut picked = Vec::new();
        for (stream, s) in &mut self.out {
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

    /// Every held line, in stream and position order (after a reconnect); resets backoff.
    pub(crate) fn everything(&mut self, now: Instant) -> Vec<WireMessage> {
        let mut picked = Vec::new();
        for (stream, s) in &mut self.out {
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
mod tests {
    use super::*;

    fn msg(i: u32) -> WireMessage {
        WireMessage::new("X")
            .with_service("b")
            .with_param(P_ID, format!("id{i}"))
    }

    #[tokio::test]
    async fn sequence_base_ack_and_resend() {
        let t0 = Instant::now();
        let mut o = Outbox::new("ep".into());
        let l1 = o.push("b", msg(1), None, t0);
        let l2 = o.push("b", msg(2), None, t0);
        let c1 = o.push("c", msg(3), None, t0);
        assert_eq!(l1.param(P_SEQ), Some("ep.1.1"));
        assert_eq!(l2.param(P_SEQ), Some("ep.1.2"));
        assert_eq!(l2.param(P_BASE), Some("1"));
        assert_eq!(c1.param(P_SEQ), Some("ep.2.1"));
        assert_eq!(o.len(), 3);
        assert_eq!(o.ack(1, &[(1, 1)]), 1);
        assert_eq!(o.ack(1, &[(1, 1)]), 0, "a second ack releases nothing");
        let l3 = o.push("b", msg(4), None, t0);
        assert_eq!(l3.param(P_BASE), Some("2"), "base moves past acknowledged");
        let ack = Duration::from_secs(1);
        assert!(o.due(t0 + Duration::from_millis(500), ack).is_empty());
        let due = o.due(t0 + ack, ack);
        let seqs: Vec<_> = due.iter().map(|w| w.param(P_SEQ).unwrap()).collect();
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

    #[tokio::test]
    async fn idle_streams_are_forgotten_beyond_the_keep_bound() {
        let t0 = Instant::now();
        let mut o = Outbox::new("ep".into());
        for d in 0..(KEEP_STREAMS + 10) {
            let w = WireMessage::new("X").with_param(P_ID, format!("i{d}"));
            o.push(&format!("dest{d}"), w, None, t0);
        }
        for s in 1..=(KEEP_STREAMS as u64 + 10) {
            o.ack(s, &[(1, 1)]);
        }
        assert_eq!(o.len(), 0);
        assert!(o.out.len() <= KEEP_STREAMS && o.streams.len() <= KEEP_STREAMS);
        // A forgotten destination gets a fresh stream number, never a reused one.
        let again = o.push("dest0", WireMessage::new("X"), None, t0);
        assert_eq!(
            again.param(P_SEQ),
            Some(format!("ep.{}.1", KEEP_STREAMS + 11).as_str())
        );
    }
}
