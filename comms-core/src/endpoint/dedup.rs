//! A bounded window of completed deliveries: a redelivered message runs its handler once.
//!
//! The key is the message id **and** its hop count: a redelivery keeps both, while a forwarded
//! copy that comes back to the same endpoint (hops + n) is a new step of work, not a duplicate.
//! Loops are stopped by the hop limit, not by deduplication.
//!
//! The window keeps a 128-bit **keyed digest** of each key, not the key: two SipHash-1-3
//! hashes with random keys chosen per window. Remembering a delivery allocates nothing, and a
//! sender cannot craft an id whose digest collides with another message's (it does not know
//! the keys); by chance, two of 100,000 remembered keys collide with probability ~10⁻²⁹.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use crate::message::MessageId;

/// One delivery (message id and hop count) as the window remembers it ([`DedupWindow::digest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(u128);

/// Default number of ids remembered.
pub const DEFAULT_DEDUP_CAPACITY: usize = 100_000;

/// Digests are keyed hashes already: the set uses their low bits as they are.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 ^= v as u64;
    }
}

/// Remembers the last `capacity` completed deliveries; the oldest is forgotten first.
#[derive(Debug)]
pub struct DedupWindow {
    seen: HashSet<Digest, BuildHasherDefault<PassThrough>>,
    order: VecDeque<Digest>,
    capacity: usize,
    keys: [RandomState; 2],
}

impl DedupWindow {
    /// A window remembering at most `capacity` deliveries (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            seen: HashSet::with_capacity_and_hasher(capacity.min(1 << 16), Default::default()),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
            keys: [RandomState::new(), RandomState::new()],
        }
    }

    /// The digest of one delivery's key (`id`, `hops`) in this window.
    pub fn digest(&self, id: &MessageId, hops: u8) -> Digest {
        let [a, b] = self.keys.each_ref().map(|k| {
            let mut h = k.build_hasher();
            id.as_str().hash(&mut h);
            hops.hash(&mut h);
            h.finish()
        });
        Digest(u128::from(a) << 64 | u128::from(b))
    }

    /// Whether the delivery completed recently.
    pub fn contains(&self, d: Digest) -> bool {
        self.seen.contains(&d)
    }

    /// Record the delivery as completed; false when it was already there.
    pub fn insert(&mut self, d: Digest) -> bool {
        if !self.seen.insert(d) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(d);
        true
    }

    /// Deliveries remembered now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_forgets_oldest() {
        let mut w = DedupWindow::new(2);
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::new()).collect();
        let d: Vec<Digest> = ids.iter().map(|id| w.digest(id, 0)).collect();
        assert!(w.insert(d[0]));
        assert!(!w.insert(d[0]));
        assert!(
            !w.insert(w.digest(&ids[0].clone(), 0)),
            "same key, same digest"
        );
        w.insert(d[1]);
        w.insert(d[2]);
        assert_eq!(w.len(), 2);
        assert!(!w.contains(d[0]));
        assert!(w.contains(d[2]));
        assert!(
            !w.contains(w.digest(&ids[2], 1)),
            "another hop is another delivery"
        );
    }

    #[test]
    fn windows_key_their_digests_apart() {
        let id = MessageId::new();
        let (a, b) = (DedupWindow::new(1), DedupWindow::new(1));
        assert_ne!(a.digest(&id, 0), b.digest(&id, 0));
        let distinct: HashSet<Digest> = (0..10_000)
            .map(|_| a.digest(&MessageId::new(), 0))
            .collect();
        assert_eq!(distinct.len(), 10_000);
    }
}
