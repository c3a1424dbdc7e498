//! The cluster routing table: a **link-state** database (the latest announcement of every
//! node) and the shortest paths computed from it.
//!
//! Every comms daemon floods a small announcement of its own node (`NODE_STATE`, a comms
//! extension, docs/NATIVE.md): its peer links that are up, its registered services, its peer
//! address, and a sequence number. Each daemon keeps the newest announcement per node and
//! computes next hops with a breadth-first search from itself over **two-way** edges only
//! (X–Y counts when X lists Y and Y lists X, so a dead node's last announcement cannot keep
//! routes through it alive). Neighbours are visited in name order, so ties between paths of
//! equal length are broken by node name, identically on every daemon. Announcements of
//! nodes that are not reachable are kept (bounded by [`MAX_NODES`]) but ignored: they may
//! have arrived before the one that links them in.
//!
//! Why link state rather than distance vectors: every daemon gets the whole map (hence
//! `CLUSTER_MAP` anywhere), converges after one flood, and has no count-to-infinity.
//!
//! **Ordering** (docs/HARDENING.md "Peer trust"): an announcement carries an `epoch` (the
//! daemon's start time in microseconds) and a `seq` (1, 2, ... within the epoch), so a
//! restarted daemon supersedes its previous life. [`Routes::update`] refuses absurd values:
//! an epoch more than [`MAX_FUTURE_US`] ahead of this clock, a seq over [`MAX_SEQ`] or more
//! than [`MAX_JUMP`] beyond the known one, more than [`MAX_LIST`] peers or services. Who may
//! announce a node (only its own link, or a link on a consistent route) is the router's
//! check (`trust.rs`), helped by [`Routes::reachable_via`]. Entries not re-announced within
//! the caller's age limit are dropped ([`Routes::expire`]).
//!
//! **Cost**: `update` only stores; the shortest paths are recomputed by
//! [`Routes::recompute_if_dirty`], which the router calls at most every few tens of
//! milliseconds (`trust.rs`), so a flood of announcements costs one recomputation per period.
//!
//! Pure data, owned by the router: no I/O here.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Most nodes the database keeps (announcements for more are ignored).
pub(crate) const MAX_NODES: usize = 1024;
/// Most names remembered for the quorum count.
const MAX_KNOWN: usize = 4096;
/// Most peers or services one announcement may list.
pub(crate) const MAX_LIST: usize = 1024;
/// Largest `seq` accepted (a daemon bumping once a millisecond needs 8,900 years).
pub(crate) const MAX_SEQ: u64 = 1 << 48;
/// Largest step of `seq` within one epoch.
pub(crate) const MAX_JUMP: u64 = 1 << 32;
/// How far ahead of this clock an `epoch` may be (clock skew between hosts).
pub(crate) const MAX_FUTURE_US: u64 = 600_000_000;

/// What [`Routes::update`] made of an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Newer than what was known: stored (flood it on).
    New,
    /// Not newer: ignored (a duplicate of the flood).
    Old,
    /// Absurd (see the module docs): ignored and counted.
    Refused(&'static str),
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One node's announcement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct NodeState {
    /// The announcing daemon's start time (µs since the Unix epoch).
    pub epoch: u64,
    pub seq: u64,
    /// Peer address (`ip:port`) of the node.
    pub address: String,
    /// Nodes it has a live link with.
    pub peers: BTreeSet<String>,
    /// Services registered on it.
    pub services: BTreeSet<String>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Routes {
    me: String,
    db: BTreeMap<String, NodeState>,
    /// Reachable node → (first hop, distance). Excludes `me`.
    hops: HashMap<String, (String, u32)>,
    /// Every node name ever seen (for the quorum).
    known: BTreeSet<String>,
    /// When each other node's entry was last stored.
    stored: HashMap<String, Instant>,
    /// Direct peer → the nodes reachable from it without passing through this node.
    via: HashMap<String, HashSet<String>>,
    /// Stored announcements not yet reflected in `hops`.
    dirty: bool,
}

impl Routes {
    pub(crate) fn new(me: &str, own: NodeState) -> Self {
        let mut db = BTreeMap::new();
        db.insert(me.to_owned(), own);
        let mut known = BTreeSet::new();
        known.insert(me.to_owned());
        Self {
            me: me.to_owned(),
            db,
            hops: HashMap::new(),
            known,
            stored: HashMap::new(),
            via: HashMap::new(),
            dirty: false,
        }
    }

    /// This node's current announcement.
    pub(crate) fn own(&self) -> &NodeState {
        // The own entry is inserted at construction and never removed.
        self.db.get(&self.me).unwrap_or_else(|| unreachable_own())
    }

    /// Replaces this node's announcement (seq bumped by the caller) and recomputes.
    pub(crate) fn set_own(&mut self, state: NodeState) {
        self.db.insert(self.me.clone(), state);
        self.recompute();
    }

    /// Stores `state` for `node` when it is newer than what is known and sane (module
    /// docs); routes follow at the next [`Routes::recompute_if_dirty`]. `authoritative`: it
    /// came over `node`'s own link, which may replace any older or forged entry.
    /// Announcements about this node are ignored.
    pub(crate) fn update(&mut self, node: &str, state: NodeState, authoritative: bool) -> Verdict {
        if node == self.me {
            return Verdict::Old;
        }
        if state.epoch == 0 || state.epoch > now_us().saturating_add(MAX_FUTURE_US) {
            return Verdict::Refused("epoch missing or in the future");
        }
        if state.seq == 0 || state.seq > MAX_SEQ {
            return Verdict::Refused("seq out of range");
        }
        if state.peers.len() > MAX_LIST || state.services.len() > MAX_LIST {
            return Verdict::Refused("too many peers or services");
        }
        match self.db.get(node) {
            Some(old)
                if old.epoch == state.epoch && state.seq > old.seq.saturating_add(MAX_JUMP) =>
            {
                return Verdict::Refused("seq jump")
            }
            Some(old) if (old.epoch, old.seq) == (state.epoch, state.seq) => return Verdict::Old,
            Some(old) if !authoritative && (old.epoch, old.seq) > (state.epoch, state.seq) => {
                return Verdict::Old
            }
            Some(old) if authoritative && old.epoch == state.epoch && old.seq > state.seq => {
                return Verdict::Old
            }
            None if self.db.len() >= MAX_NODES => return Verdict::Refused("too many nodes"),
            _ => {}
        }
        self.db.insert(node.to_owned(), state);
        self.stored.insert(node.to_owned(), Instant::now());
        self.dirty = true;
        Verdict::New
    }

    /// Drops other nodes' entries stored longer than `max_age` ago (not re-announced);
    /// `true` if any was (routes then follow at the next recomputation).
    pub(crate) fn expire(&mut self, now: Instant, max_age: Duration) -> bool {
        let old: Vec<String> = self
            .stored
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) > max_age)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &old {
            self.stored.remove(n);
            self.db.remove(n);
        }
        self.dirty |= !old.is_empty();
        !old.is_empty()
    }

    /// Recomputes the shortest paths if announcements changed since; `true` if it did.
    pub(crate) fn recompute_if_dirty(&mut self) -> bool {
        if !self.dirty {
            return false;
        }
        self.recompute();
        true
    }

    /// Whether announcements changed since the last recomputation.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether `node` is reachable from the direct peer `peer` without passing through
    /// this node (`peer` itself included), as of the last recomputation.
    pub(crate) fn reachable_via(&self, peer: &str, node: &str) -> bool {
        self.via.get(peer).is_some_and(|s| s.contains(node))
    }

    /// The stored (epoch, seq) of `node`, if any.
    pub(crate) fn version(&self, node: &str) -> Option<(u64, u64)> {
        self.db.get(node).map(|s| (s.epoch, s.seq))
    }

    /// Every stored announcement (to send to a new peer).
    pub(crate) fn all(&self) -> impl Iterator<Item = (&str, &NodeState)> {
        self.db.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// The first hop (a directly linked node) toward `node`, if reachable.
    pub(crate) fn next_hop(&self, node: &str) -> Option<&str> {
        self.hops.get(node).map(|(h, _)| h.as_str())
    }

    /// The nearest other node hosting `service` (ties: by name), if any is reachable.
    pub(crate) fn nearest_with(&self, service: &str) -> Option<&str> {
        self.hops
            .iter()
            .filter(|(n, _)| {
                self.db
                    .get(n.as_str())
                    .is_some_and(|s| s.services.contains(service))
            })
            .min_by(|a, b| (a.1 .1, a.0).cmp(&(b.1 .1, b.0)))
            .map(|(n, _)| n.as_str())
    }

    /// Every other node hosting `service` at the smallest distance, by name (empty: none).
    pub(crate) fn nearest_all(&self, service: &str) -> Vec<&str> {
        let mut best: Vec<(&str, u32)> = Vec::new();
        for (n, (_, d)) in &self.hops {
            if !self
                .db
                .get(n.as_str())
                .is_some_and(|s| s.services.contains(service))
            {
                continue;
            }
            match best.first() {
                Some(&(_, bd)) if *d > bd => continue,
                Some(&(_, bd)) if *d < bd => best.clear(),
                _ => {}
            }
            best.push((n.as_str(), *d));
        }
        let mut v: Vec<&str> = best.into_iter().map(|(n, _)| n).collect();
        v.sort_unstable();
        v
    }

    /// Reachable nodes, this one included.
    pub(crate) fn reachable(&self) -> usize {
        self.hops.len() + 1
    }

    /// Nodes ever seen, this one included.
    pub(crate) fn known(&self) -> usize {
        self.known.len()
    }

    /// Reachable nodes (this one included) with their announcements, by name.
    pub(crate) fn reachable_nodes(&self) -> impl Iterator<Item = (&str, &NodeState)> {
        self.db
            .iter()
            .filter(|(n, _)| **n == self.me || self.hops.contains_key(n.as_str()))
            .map(|(n, s)| (n.as_str(), s))
    }

    /// Two-way edges between reachable nodes, each once as (smaller, larger).
    pub(crate) fn edges(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (a, s) in self.reachable_nodes() {
            for b in &s.peers {
                if a < b.as_str() && self.two_way(a, b) {
                    out.push((a.to_owned(), b.clone()));
                }
            }
        }
        out
    }

    fn two_way(&self, a: &str, b: &str) -> bool {
        let lists = |x: &str, y: &str| self.db.get(x).is_some_and(|s| s.peers.contains(y));
        lists(a, b) && lists(b, a)
    }

    /// BFS from `me` over two-way edges. Unreachable nodes stay in the database (an
    /// announcement may arrive before the one that makes its node reachable); they are
    /// ignored by routing and superseded by their next announcement.
    fn recompute(&mut self) {
        self.dirty = false;
        self.recompute_via();
        self.hops.clear();
        let mut queue: VecDeque<(String, String, u32)> = VecDeque::new();
        for p in &self.own().peers {
            if self.two_way(&self.me, p) {
                queue.push_back((p.clone(), p.clone(), 1));
            }
        }
        while let Some((node, first, dist)) = queue.pop_front() {
            if node == self.me || self.hops.contains_key(&node) {
                continue;
            }
            self.hops.insert(node.clone(), (first.clone(), dist));
            if let Some(s) = self.db.get(&node) {
                for p in &s.peers {
                    if !self.hops.contains_key(p) && self.two_way(&node, p) {
                        queue.push_back((p.clone(), first.clone(), dist + 1));
                    }
                }
            }
        }
        for n in self.hops.keys() {
            if self.known.len() < MAX_KNOWN {
                self.known.insert(n.clone());
            }
        }
    }
}

impl Routes {
    /// For each direct two-way peer, the nodes reachable from it without this node.
    fn recompute_via(&mut self) {
        let mut via = HashMap::new();
        for p in &self.own().peers {
            if !self.two_way(&self.me, p) {
                continue;
            }
            let mut seen: HashSet<String> = HashSet::new();
            let mut queue = VecDeque::from([p.clone()]);
            while let Some(n) = queue.pop_front() {
                if n == self.me || !seen.insert(n.clone()) {
                    continue;
                }
                if let Some(s) = self.db.get(&n) {
                    for q in &s.peers {
                        if !seen.contains(q) && self.two_way(&n, q) {
                            queue.push_back(q.clone());
                        }
                    }
                }
            }
            via.insert(p.clone(), seen);
        }
        self.via = via;
    }
}

#[cold]
fn unreachable_own() -> &'static NodeState {
    static EMPTY: NodeState = NodeState {
        epoch: 0,
        seq: 0,
        address: String::new(),
        peers: BTreeSet::new(),
        services: BTreeSet::new(),
    };
    &EMPTY
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(seq: u64, peers: &[&str], services: &[&str]) -> NodeState {
        NodeState {
            epoch: 1,
            seq,
            address: String::new(),
            peers: peers.iter().map(|s| s.to_string()).collect(),
            services: services.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Relayed update, then recompute (as the router does after its pause).
    fn up(r: &mut Routes, node: &str, s: NodeState) -> bool {
        let v = r.update(node, s, false) == Verdict::New;
        r.recompute_if_dirty();
        v
    }

    #[test]
    fn recompute_if_dirty_says_whether_it_recomputed() {
        // The router replays its cache and re-announces the cluster status only when this
        // says `true`: a remote announcement must be reported as a change, once.
        let mut r = Routes::new("a", st(1, &["b"], &[]));
        assert!(!r.recompute_if_dirty(), "nothing announced yet");
        assert_eq!(r.update("b", st(1, &["a"], &["x"]), false), Verdict::New);
        assert!(r.recompute_if_dirty(), "a new announcement is a change");
        assert_eq!(r.nearest_with("x"), Some("b"));
        assert!(!r.recompute_if_dirty(), "reported once");
    }

    #[test]
    fn absurd_announcements_are_refused_and_a_new_epoch_wins() {
        let mut r = Routes::new("a", st(1, &["b"], &[]));
        assert!(up(&mut r, "b", st(5, &["a"], &[])));
        assert_eq!(r.next_hop("b"), Some("b"));
        let forged = NodeState {
            seq: u64::MAX,
            ..st(1, &[], &[])
        };
        assert!(matches!(r.update("b", forged, false), Verdict::Refused(_)));
        assert!(matches!(
            r.update("b", st(5 + MAX_JUMP + 1, &[], &[]), false),
            Verdict::Refused(_)
        ));
        let future = NodeState {
            epoch: now_us() + 2 * MAX_FUTURE_US,
            ..st(1, &[], &[])
        };
        assert!(matches!(r.update("b", future, false), Verdict::Refused(_)));
        r.recompute_if_dirty();
        assert_eq!(r.next_hop("b"), Some("b"), "nothing changed");
        let restarted = NodeState {
            epoch: 2,
            ..st(1, &["a"], &["x"])
        };
        assert!(
            up(&mut r, "b", restarted),
            "a restart (new epoch) supersedes"
        );
        assert_eq!(r.nearest_with("x"), Some("b"));
        assert!(r.expire(
            Instant::now() + Duration::from_secs(10),
            Duration::from_secs(5)
        ));
        r.recompute_if_dirty();
        assert_eq!(r.next_hop("b"), None, "aged out");
    }

    #[test]
    fn line_routes_through_the_middle() {
        let mut r = Routes::new("a", st(1, &["b"], &["x"]));
        assert!(up(&mut r, "b", st(1, &["a", "c"], &[])));
        assert!(up(&mut r, "c", st(1, &["b"], &["y"])));
        assert!(!up(&mut r, "c", st(1, &["b"], &["y"])), "same seq is old");
        assert_eq!(r.next_hop("c"), Some("b"));
        assert_eq!(r.nearest_with("y"), Some("c"));
        assert_eq!(r.nearest_with("x"), None, "own services are not remote");
        assert_eq!(r.reachable(), 3);
        assert_eq!(
            r.edges(),
            vec![("a".into(), "b".into()), ("b".into(), "c".into())]
        );
    }

    #[test]
    fn ring_ties_by_name_and_one_way_edges_do_not_count() {
        // a-b-c-d-a; c is two hops away through b or d: b wins by name.
        let mut r = Routes::new("a", st(1, &["b", "d"], &[]));
        up(&mut r, "b", st(1, &["a", "c"], &[]));
        up(&mut r, "d", st(1, &["a", "c"], &["s"]));
        up(&mut r, "c", st(1, &["b", "d"], &["s"]));
        assert_eq!(r.next_hop("c"), Some("b"));
        assert_eq!(r.nearest_with("s"), Some("d"), "d is one hop, c two");
        assert_eq!(r.nearest_all("s"), vec!["d"]);
        up(&mut r, "b", st(2, &["a", "c"], &["s"]));
        assert_eq!(r.nearest_all("s"), vec!["b", "d"], "equally near");
        // b dies: a drops the link; b's stale state still lists a and c.
        let mut own = r.own().clone();
        own.peers.remove("b");
        own.seq = 2;
        r.set_own(own);
        assert_eq!(r.next_hop("c"), Some("d"));
        assert_eq!(r.next_hop("b"), Some("d"), "still reachable through c");
        assert!(up(&mut r, "c", st(2, &["d"], &["s"])));
        assert_eq!(r.next_hop("b"), None, "b only reachable one way: no route");
        assert_eq!(r.reachable(), 3);
        assert_eq!(r.known(), 4);
    }
}
