//! Stock Communicator services seen on this transport: they never acknowledge, so messages to
//! them go at-most-once (a bounded, least-recently-added set of service names).

use std::collections::{HashSet, VecDeque};

/// Service names remembered.
pub const MAX_STOCK_PEERS: usize = 1024;

/// See the module docs.
#[derive(Debug, Default)]
pub struct StockPeers {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl StockPeers {
    /// Remember `service` as a stock peer.
    pub fn insert(&mut self, service: &str) {
        if self.set.contains(service) {
            return;
        }
        if self.order.len() >= MAX_STOCK_PEERS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(service.to_owned());
        self.order.push_back(service.to_owned());
    }

    /// Forget `service` (it spoke with a comms id: it is a comms endpoint now).
    pub fn remove(&mut self, service: &str) {
        if self.set.remove(service) {
            self.order.retain(|s| s != service);
        }
    }

    /// True when no stock peer is known.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Whether `service` is a known stock peer.
    pub fn contains(&self, service: &str) -> bool {
        self.set.contains(service)
    }
}
