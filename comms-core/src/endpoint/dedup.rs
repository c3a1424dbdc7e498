//! A bounded window of completed deliveries: a redelivered message runs its handler once.
//!
//! The key is the message id **and** its hop count: a redelivery keeps both, while a forwarded
//! copy that comes back to the same endpoint (hops + n) is a new step of work, not a duplicate.
//! Loops are stopped by the hop limit, not by deduplication.

use std::collections::{HashSet, VecDeque};

use crate::message::MessageId;

/// What identifies one delivery for deduplication: the message id and its hop count.
pub type DedupKey = (MessageId, u8);

/// Default number of ids remembered.
pub const DEFAULT_DEDUP_CAPACITY: usize = 100_000;

/// Remembers the last `capacity` completed ids; the oldest is forgotten first.
#[derive(Debug)]
pub struct DedupWindow {
    seen: HashSet<DedupKey>,
    order: VecDeque<DedupKey>,
    capacity: usize,
}

impl DedupWindow {
    /// A window remembering at most `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            seen: HashSet::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
        }
    }

    /// Whether `id` completed recently.
    pub fn contains(&self, id: &DedupKey) -> bool {
        self.seen.contains(id)
    }

    /// Record `id` as completed; false when it was already there.
    pub fn insert(&mut self, id: DedupKey) -> bool {
        if !self.seen.insert(id.clone()) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.order.push_back(id);
        true
    }

    /// Ids remembered now.
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
        let ids: Vec<DedupKey> = (0..3).map(|_| (MessageId::new(), 0)).collect();
        assert!(w.insert(ids[0].clone()));
        assert!(!w.insert(ids[0].clone()));
        w.insert(ids[1].clone());
        w.insert(ids[2].clone());
        assert_eq!(w.len(), 2);
        assert!(!w.contains(&ids[0]));
        assert!(w.contains(&ids[2]));
        assert!(
            !w.contains(&(ids[2].0.clone(), 1)),
            "another hop is another delivery"
        );
    }
}
