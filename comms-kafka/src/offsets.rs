//! Consumer-side offset bookkeeping: which offsets may be committed.
//!
//! Several deliveries of one partition are in flight at once (up to the prefetch) and are
//! settled in any order. The commit point of a partition is the lowest offset still in flight
//! or, when nothing is, one past the last offset received: only the contiguous acknowledged
//! prefix is ever committed, so a crash redelivers every message not yet acknowledged.
//!
//! Each assignment of a partition gets a new epoch; a settlement carrying an older epoch (a
//! delivery handed out before a rebalance took the partition away) changes nothing.

use std::collections::{BTreeSet, HashMap};

/// A partition of a topic.
pub type Tp = (String, i32);

/// Identifies one delivery for settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKey {
    /// Topic and partition.
    pub tp: Tp,
    /// Offset of the record.
    pub offset: i64,
    /// Assignment epoch of the partition when the record was handed out.
    pub epoch: u64,
}

#[derive(Debug, Default)]
struct Partition {
    epoch: u64,
    inflight: BTreeSet<i64>,
    next: Option<i64>,
    committed: Option<i64>,
}

impl Partition {
    fn commit_point(&self) -> Option<i64> {
        self.inflight.first().copied().or(self.next)
    }
}

/// Offsets of every partition a consumer owns.
#[derive(Debug, Default)]
pub struct Offsets {
    parts: HashMap<Tp, Partition>,
    epochs: u64,
}

impl Offsets {
    /// Start tracking `tp` (a new assignment); returns its epoch.
    pub fn assign(&mut self, tp: Tp) -> u64 {
        self.epochs += 1;
        let epoch = self.epochs;
        self.parts.insert(
            tp,
            Partition {
                epoch,
                ..Partition::default()
            },
        );
        epoch
    }

    /// Stop tracking `tp` (revoked): later settlements for it are ignored.
    pub fn revoke(&mut self, tp: &Tp) {
        self.parts.remove(tp);
    }

    /// A record arrived. `hold`: it stays in flight until settled; otherwise it counts as
    /// done at once (filtered, at-most-once, dead-lettered). Returns the delivery's key.
    pub fn received(&mut self, tp: &Tp, offset: i64, hold: bool) -> DeliveryKey {
        if !self.parts.contains_key(tp) {
            // A record of a partition we were not told about (manual assignment): track it.
            self.assign(tp.clone());
        }
        let part = self.parts.entry(tp.clone()).or_default();
        if hold {
            part.inflight.insert(offset);
        }
        part.next = Some(part.next.map_or(offset + 1, |n| n.max(offset + 1)));
        DeliveryKey {
            tp: tp.clone(),
            offset,
            epoch: part.epoch,
        }
    }

    /// A delivery was acknowledged (or dropped for good). False when it belongs to an older
    /// assignment and changed nothing.
    pub fn settled(&mut self, key: &DeliveryKey) -> bool {
        match self.parts.get_mut(&key.tp) {
            Some(p) if p.epoch == key.epoch => p.inflight.remove(&key.offset),
            _ => false,
        }
    }

    /// Whether `key` still belongs to the current assignment of its partition.
    pub fn is_current(&self, key: &DeliveryKey) -> bool {
        self.parts
            .get(&key.tp)
            .is_some_and(|p| p.epoch == key.epoch)
    }

    /// Deliveries of `tp` still in flight.
    pub fn inflight(&self, tp: &Tp) -> usize {
        self.parts.get(tp).map_or(0, |p| p.inflight.len())
    }

    /// Partitions whose commit point moved past what was committed, with that point.
    /// `only`: restrict to these partitions.
    pub fn to_commit(&self, only: Option<&[Tp]>) -> Vec<(Tp, i64)> {
        self.parts
            .iter()
            .filter(|(tp, _)| only.is_none_or(|o| o.contains(tp)))
            .filter_map(|(tp, p)| {
                let point = p.commit_point()?;
                (p.committed.is_none_or(|c| point > c)).then(|| (tp.clone(), point))
            })
            .collect()
    }

    /// Record that `point` was committed for `tp`.
    pub fn committed(&mut self, tp: &Tp, point: i64) {
        if let Some(p) = self.parts.get_mut(tp) {
            p.committed = Some(p.committed.map_or(point, |c| c.max(point)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> Tp {
        ("t".into(), 0)
    }

    #[test]
    fn commits_only_the_contiguous_acknowledged_prefix() {
        let mut o = Offsets::default();
        o.assign(tp());
        let keys: Vec<_> = (10..15).map(|i| o.received(&tp(), i, true)).collect();
        assert_eq!(o.to_commit(None), vec![(tp(), 10)]);
        o.settled(&keys[1]);
        o.settled(&keys[2]);
        assert_eq!(o.to_commit(None), vec![(tp(), 10)], "10 is still in flight");
        o.settled(&keys[0]);
        assert_eq!(o.to_commit(None), vec![(tp(), 13)]);
        o.committed(&tp(), 13);
        o.settled(&keys[3]);
        o.settled(&keys[4]);
        assert_eq!(o.to_commit(None), vec![(tp(), 15)]);
        o.committed(&tp(), 15);
        assert!(o.to_commit(None).is_empty());
        o.received(&tp(), 15, false);
        assert_eq!(
            o.to_commit(None),
            vec![(tp(), 16)],
            "not held: done at once"
        );
    }

    #[test]
    fn settlements_from_an_older_assignment_are_ignored() {
        let mut o = Offsets::default();
        o.assign(tp());
        let old = o.received(&tp(), 1, true);
        o.revoke(&tp());
        o.assign(tp());
        let new = o.received(&tp(), 1, true);
        assert!(!o.settled(&old));
        assert_eq!(o.inflight(&tp()), 1);
        assert!(o.settled(&new));
        assert!(!o.is_current(&old));
    }
}
