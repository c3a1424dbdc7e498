//! The receiver's view of each sender stream: what was passed up, what waits for a gap, what
//! is being handled. Owned by the receiver task alone (no lock).
//!
//! Per stream `(sender stamp, epoch, stream)`:
//! - `next`: the next position to pass up. A new stream starts at the line's `comms_base`
//!   (so a receiver that restarted does not wait for positions acknowledged by its previous
//!   incarnation); a larger `comms_base` later moves it forward (the sender gave those up).
//! - `N == next`: passed up, followed by any buffered `next+1, next+2...`.
//! - `N > next`: kept in a reorder buffer (resends after a reconnect race with new sends), at
//!   most [`REORDER_WINDOW`] positions ahead and [`MAX_BUFFERED`] messages in total; beyond
//!   that the line is dropped, and the sender's resend brings it back.
//! - `N < next`: a duplicate. Being handled → ignored (its ack will come); otherwise it was
//!   acknowledged before and the ack was lost → acknowledged again.
//!
//! Memory: at most [`MAX_STREAMS`] streams; a stream whose last position (`comms_last=1`)
//! is settled is forgotten at once; idle ones (nothing buffered or in flight) are evicted
//! least recently used first. An evicted stream that comes back restarts at its
//! `comms_base`; duplicates from before are caught by the endpoint's dedup window.

use std::collections::{BTreeMap, HashMap, HashSet};

use comms_core::Message;

use super::mapping::SeqInfo;

/// Positions a message may be ahead of `next` and still be buffered.
pub const REORDER_WINDOW: u64 = 65_536;
/// Messages buffered across all streams.
pub const MAX_BUFFERED: usize = 16_384;
/// Streams remembered.
pub const MAX_STREAMS: usize = 4096;

/// One sender stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// The sender's stamped address (`node:service`), where acks go.
    pub from: String,
    /// The sender transport's epoch.
    pub epoch: String,
    /// The sender's stream number.
    pub stream: u64,
}

#[derive(Debug, Default)]
struct StreamIn {
    next: u64,
    buffer: BTreeMap<u64, Message>,
    inflight: HashSet<u64>,
    used: u64,
    /// The stream's last position, once seen (`comms_last=1`).
    last: Option<u64>,
}

/// What to do with an arriving line.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Pass these up, in this order.
    pub deliver: Vec<(u64, Message)>,
    /// Acknowledge this position again (a duplicate of something already handled).
    pub reack: Option<u64>,
}

/// Every stream's state.
#[derive(Debug, Default)]
pub struct Streams {
    map: HashMap<StreamKey, StreamIn>,
    buffered: usize,
    clock: u64,
}

impl Streams {
    /// Messages in reorder buffers.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// A line arrived. `room`: whether the caller can take deliveries now (else N == next is
    /// dropped and will be resent).
    pub fn arrive(&mut self, key: &StreamKey, seq: &SeqInfo, msg: Message, room: bool) -> Outcome {
        self.clock += 1;
        if !self.map.contains_key(key) {
            self.evict();
            self.map.insert(
                key.clone(),
                StreamIn {
                    next: seq.base.max(1),
                    ..StreamIn::default()
                },
            );
        }
        let Some(st) = self.map.get_mut(key) else {
            return Outcome::default();
        };
        st.used = self.clock;
        if seq.last {
            st.last = Some(seq.n);
        }
        let mut out = Outcome::default();
        if seq.base > st.next {
            let kept = st.buffer.split_off(&seq.base);
            self.buffered -= st.buffer.len();
            st.buffer = kept;
            st.next = seq.base;
        }
        let n = seq.n;
        if n < st.next {
            if !st.inflight.contains(&n) {
                out.reack = Some(n);
            }
            return out;
        }
        if n > st.next {
            if n - st.next <= REORDER_WINDOW
                && self.buffered < MAX_BUFFERED
                && !st.buffer.contains_key(&n)
            {
                st.buffer.insert(n, msg);
                self.buffered += 1;
            }
        } else if room {
            out.deliver.push((n, msg));
            st.inflight.insert(n);
            st.next += 1;
        }
        if room {
            while let Some(m) = st.buffer.remove(&st.next) {
                self.buffered -= 1;
                out.deliver.push((st.next, m));
                st.inflight.insert(st.next);
                st.next += 1;
            }
        }
        out
    }

    /// Position `n` of `key` is settled (acknowledged): no longer in flight. True when it
    /// was the stream's last position (its sender waits for that acknowledgement to go on).
    /// A finished stream (its last position passed up, nothing buffered or in flight) is
    /// forgotten at once: its sender has moved to a new stream.
    pub fn settled(&mut self, key: &StreamKey, n: u64) -> bool {
        let Some(st) = self.map.get_mut(key) else {
            return false;
        };
        st.inflight.remove(&n);
        let finished = st
            .last
            .is_some_and(|l| st.next > l && st.inflight.is_empty() && st.buffer.is_empty());
        let was_last = st.last == Some(n);
        if finished {
            self.map.remove(key);
        }
        was_last
    }

    /// Streams remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no stream is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn evict(&mut self) {
        if self.map.len() < MAX_STREAMS {
            return;
        }
        let victim = self
            .map
            .iter()
            .filter(|(_, s)| s.buffer.is_empty() && s.inflight.is_empty())
            .min_by_key(|(_, s)| s.used)
            .map(|(k, _)| k.clone());
        if let Some(k) = victim {
            self.map.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comms_core::Destination;

    fn key() -> StreamKey {
        StreamKey {
            from: "vm:a".into(),
            epoch: "e".into(),
            stream: 1,
        }
    }
    fn seq(n: u64, base: u64) -> SeqInfo {
        SeqInfo {
            epoch: "e".into(),
            stream: 1,
            n,
            base,
            last: false,
        }
    }
    fn m(n: u64) -> Message {
        Message::new("X", Destination::Service("b".into()))
            .unwrap()
            .with_param("n", n.to_string())
    }
    fn ns(o: &Outcome) -> Vec<u64> {
        o.deliver.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn reorders_dedups_and_reacks() {
        let mut s = Streams::default();
        assert_eq!(ns(&s.arrive(&key(), &seq(1, 1), m(1), true)), [1]);
        assert!(ns(&s.arrive(&key(), &seq(3, 1), m(3), true)).is_empty());
        assert_eq!(s.buffered(), 1);
        assert_eq!(ns(&s.arrive(&key(), &seq(2, 1), m(2), true)), [2, 3]);
        assert_eq!(s.buffered(), 0);
        // 1 is in flight: a resend of it is ignored; once settled, re-acknowledged.
        let dup = s.arrive(&key(), &seq(1, 1), m(1), true);
        assert!(dup.deliver.is_empty() && dup.reack.is_none());
        s.settled(&key(), 1);
        assert_eq!(s.arrive(&key(), &seq(1, 1), m(1), true).reack, Some(1));
        // No room: the next one is dropped, and taken when resent.
        assert!(ns(&s.arrive(&key(), &seq(4, 1), m(4), false)).is_empty());
        assert_eq!(ns(&s.arrive(&key(), &seq(4, 1), m(4), true)), [4]);
    }

    #[test]
    fn a_new_receiver_starts_at_the_base_and_base_skips_gaps() {
        let mut s = Streams::default();
        // Restarted receiver: first sees 520 while 501.. are still unacknowledged.
        assert!(ns(&s.arrive(&key(), &seq(520, 501), m(520), true)).is_empty());
        assert_eq!(ns(&s.arrive(&key(), &seq(501, 501), m(501), true)), [501]);
        // The sender gave up 502..519: a line with base 520 releases the buffered 520.
        assert_eq!(
            ns(&s.arrive(&key(), &seq(521, 520), m(521), true)),
            [520, 521]
        );
    }

    #[test]
    fn a_finished_stream_is_forgotten_once_settled() {
        let mut s = Streams::default();
        let last = SeqInfo {
            last: true,
            ..seq(2, 1)
        };
        assert_eq!(ns(&s.arrive(&key(), &seq(1, 1), m(1), true)), [1]);
        assert_eq!(ns(&s.arrive(&key(), &last, m(2), true)), [2]);
        assert!(s.settled(&key(), 2), "the last position");
        assert_eq!(s.len(), 1, "1 still in flight");
        assert!(!s.settled(&key(), 1));
        assert!(s.is_empty());
    }
}
