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
//! Sequence numbers start at the daemon's start time in microseconds, so a restarted daemon
//! supersedes its previous life without any coordination.
//!
//! Pure data, owned by the router: no I/O here.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Most nodes the database keeps (announcements for more are ignored).
pub(crate) const MAX_NODES: usize = 1024;
/// Most names remembered for the quorum count.
const MAX_KNOWN: usize = 4096;

/// One node's announcement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct NodeState {
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

    /// Stores `state` for `node` when it is newer than what is known; `true` if it was
    /// (the caller then floods it on). Announcements about this node are ignored.
    pub(crate) fn update(&mut self, node: &str, state: NodeState) -> bool {
        if node == self.me {
            return false;
        }
        match self.db.get(node) {
            Some(old) if old.seq >= state.seq => return false,
            None if self.db.len() >= MAX_NODES => return false,
            _ => {}
        }
        self.db.insert(node.to_owned(), state);
        self.recompute();
        true
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

#[cold]
fn unreachable_own() -> &'static NodeState {
    static EMPTY: NodeState = NodeState {
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
            seq,
            address: String::new(),
            peers: peers.iter().map(|s| s.to_string()).collect(),
            services: services.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn line_routes_through_the_middle() {
        let mut r = Routes::new("a", st(1, &["b"], &["x"]));
        assert!(r.update("b", st(1, &["a", "c"], &[])));
        assert!(r.update("c", st(1, &["b"], &["y"])));
        assert!(!r.update("c", st(1, &["b"], &["y"])), "same seq is old");
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
        r.update("b", st(1, &["a", "c"], &[]));
        r.update("d", st(1, &["a", "c"], &["s"]));
        r.update("c", st(1, &["b", "d"], &["s"]));
        assert_eq!(r.next_hop("c"), Some("b"));
        assert_eq!(r.nearest_with("s"), Some("d"), "d is one hop, c two");
        assert_eq!(r.nearest_all("s"), vec!["d"]);
        r.update("b", st(2, &["a", "c"], &["s"]));
        assert_eq!(r.nearest_all("s"), vec!["b", "d"], "equally near");
        // b dies: a drops the link; b's stale state still lists a and c.
        let mut own = r.own().clone();
        own.peers.remove("b");
        own.seq = 2;
        r.set_own(own);
        assert_eq!(r.next_hop("c"), Some("d"));
        assert_eq!(r.next_hop("b"), Some("d"), "still reachable through c");
        assert!(r.update("c", st(2, &["d"], &["s"])));
        assert_eq!(r.next_hop("b"), None, "b only reachable one way: no route");
        assert_eq!(r.reachable(), 3);
        assert_eq!(r.known(), 4);
    }
}
