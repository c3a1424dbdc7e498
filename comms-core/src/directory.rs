//! [`Directory`]: the live endpoints, built from advertisements.
//!
//! Fed by an [`crate::Endpoint`] that has the directory attached (it declares `ADVERTISE` and
//! passes every advertisement it receives, keyed by the transport-stamped origin, never by the
//! address the sender wrote). An entry is **up** while advertisements keep arriving within its
//! TTL, **down** after that or after a withdrawal (TTL 0). Each change emits a
//! [`DirectoryEvent`]. Down entries are kept (listed as down) up to a bound, oldest dropped first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::address::Address;
use crate::advertisement::Advertisement;

/// Default number of entries kept (up and down together).
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// One endpoint as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its last advertisement (`address` is the stamped origin).
    pub advertisement: Advertisement,
    /// Whether it is live.
    pub up: bool,
    /// When it last changed between up and down.
    pub since: SystemTime,
    /// When it was last heard from.
    pub last_seen: SystemTime,
    expires: Instant,
}

impl Entry {
    /// Its address.
    pub fn address(&self) -> &Address {
        &self.advertisement.address
    }
}

/// A change in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryEvent {
    /// An endpoint appeared or came back.
    Up(Entry),
    /// An endpoint expired or withdrew.
    Down(Entry),
}

/// What to look up; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Query {
    service: Option<String>,
    group: Option<String>,
    labels: Vec<(String, String)>,
    facts: Vec<(String, String)>,
    include_down: bool,
}

impl Query {
    /// Match everything that is up.
    pub fn new() -> Self {
        Self::default()
    }
    /// Only this service.
    pub fn service(mut self, s: impl Into<String>) -> Self {
        self.service = Some(s.into());
        self
    }
    /// Only members of this group.
    pub fn group(mut self, g: impl Into<String>) -> Self {
        self.group = Some(g.into());
        self
    }
    /// Only endpoints with this label value.
    pub fn label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.labels.push((k.into(), v.into()));
        self
    }
    /// Only endpoints with this fact value.
    pub fn fact(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.facts.push((k.into(), v.into()));
        self
    }
    /// Include endpoints that are down.
    pub fn include_down(mut self) -> Self {
        self.include_down = true;
        self
    }

    fn matches(&self, e: &Entry) -> bool {
        let ad = &e.advertisement;
        (self.include_down || e.up)
            && self
                .service
                .as_deref()
                .is_none_or(|s| ad.address.service() == s)
            && self.group.as_ref().is_none_or(|g| ad.groups.contains(g))
            && self.labels.iter().all(|(k, v)| ad.labels.get(k) == Some(v))
            && self.facts.iter().all(|(k, v)| ad.facts.get(k) == Some(v))
    }
}

#[derive(Debug)]
struct Shared {
    entries: Mutex<HashMap<Address, Entry>>,
    events: broadcast::Sender<DirectoryEvent>,
    max_entries: usize,
}

/// The live endpoints; cheap to clone (clones share state).
#[derive(Debug, Clone)]
pub struct Directory {
    shared: Arc<Shared>,
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

impl Directory {
    /// An empty directory keeping at most [`DEFAULT_MAX_ENTRIES`].
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_MAX_ENTRIES)
    }

    /// An empty directory keeping at most `max_entries`.
    pub fn with_capacity(max_entries: usize) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            shared: Arc::new(Shared {
                entries: Mutex::default(),
                events,
                max_entries: max_entries.max(1),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Address, Entry>> {
        self.shared
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Events from now on (a slow subscriber misses old events: `RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<DirectoryEvent> {
        self.shared.events.subscribe()
    }

    /// Record an advertisement received from `origin` (the stamped address).
    pub fn observe(&self, origin: &Address, mut ad: Advertisement) {
        ad.address = origin.clone();
        let now = Instant::now();
        let wall = SystemTime::now();
        let up = !ad.ttl.is_zero();
        let mut entries = self.lock();
        let previous_up = entries.get(origin).map(|e| e.up);
        let since = match (previous_up, entries.get(origin)) {
            (Some(was), Some(e)) if was == up => e.since,
            _ => wall,
        };
        let entry = Entry {
            expires: now + ad.ttl,
            advertisement: ad,
            up,
            since,
            last_seen: wall,
        };
        let event = match (previous_up, up) {
            (Some(true), true) | (None | Some(false), false) => None,
            (None | Some(false), true) => Some(DirectoryEvent::Up(entry.clone())),
            (Some(true), false) => Some(DirectoryEvent::Down(entry.clone())),
        };
        if previous_up.is_none() && entries.len() >= self.shared.max_entries {
            evict_oldest(&mut entries);
        }
        entries.insert(origin.clone(), entry);
        drop(entries);
        if let Some(ev) = event {
            let _ = self.shared.events.send(ev);
        }
    }

    /// Mark expired entries down (an endpoint calls this periodically).
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut events = Vec::new();
        {
            let mut entries = self.lock();
            for e in entries.values_mut() {
                if e.up && e.expires <= now {
                    e.up = false;
                    e.since = SystemTime::now();
                    events.push(DirectoryEvent::Down(e.clone()));
                }
            }
        }
        for ev in events {
            let _ = self.shared.events.send(ev);
        }
    }

    /// One endpoint.
    pub fn get(&self, address: &Address) -> Option<Entry> {
        self.lock().get(address).cloned()
    }

    /// Everything matching `query`, sorted by address.
    pub fn lookup(&self, query: &Query) -> Vec<Entry> {
        let mut found: Vec<Entry> = self
            .lock()
            .values()
            .filter(|e| query.matches(e))
            .cloned()
            .collect();
        found.sort_by(|a, b| a.address().cmp(b.address()));
        found
    }

    /// Wait until `address` is up (or `timeout` passes); true when it is.
    pub async fn wait_up(&self, address: &Address, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut events = self.subscribe();
        loop {
            if self.get(address).is_some_and(|e| e.up) {
                return true;
            }
            let wait = tokio::time::timeout_at(deadline, events.recv());
            match wait.await {
                Err(_) => return self.get(address).is_some_and(|e| e.up),
                Ok(Err(broadcast::error::RecvError::Closed)) => return false,
                Ok(_) => {}
            }
        }
    }
}

fn evict_oldest(entries: &mut HashMap<Address, Entry>) {
    let victim = entries
        .values()
        .filter(|e| !e.up)
        .min_by_key(|e| e.last_seen)
        .or_else(|| entries.values().min_by_key(|e| e.last_seen))
        .map(|e| e.address().clone());
    if let Some(v) = victim {
        entries.remove(&v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad(service: &str, ttl_ms: u64) -> Advertisement {
        let mut ad = Advertisement::new(Address::new("n", service).unwrap(), ["PING"]);
        ad.ttl = Duration::from_millis(ttl_ms);
        ad
    }

    #[tokio::test(start_paused = true)]
    async fn up_expire_down_and_back() {
        let d = Directory::new();
        let mut ev = d.subscribe();
        let a = Address::new("n", "a").unwrap();
        d.observe(&a, ad("a", 1000));
        assert!(matches!(ev.recv().await.unwrap(), DirectoryEvent::Up(_)));
        tokio::time::advance(Duration::from_millis(900)).await;
        d.sweep();
        assert!(d.get(&a).unwrap().up);
        tokio::time::advance(Duration::from_millis(200)).await;
        d.sweep();
        assert!(!d.get(&a).unwrap().up);
        assert!(matches!(ev.recv().await.unwrap(), DirectoryEvent::Down(_)));
        d.observe(&a, ad("a", 1000));
        assert!(matches!(ev.recv().await.unwrap(), DirectoryEvent::Up(_)));
        d.observe(&a, ad("a", 0));
        assert!(matches!(ev.recv().await.unwrap(), DirectoryEvent::Down(_)));
    }

    #[test]
    fn origin_wins_and_lookup_filters() {
        let d = Directory::new();
        let real = Address::new("n", "real").unwrap();
        let mut spoof = ad("spoofed", 1000);
        spoof.groups.insert("web".into());
        spoof.labels.insert("zone".into(), "eu".into());
        spoof.facts.insert("os".into(), "linux".into());
        d.observe(&real, spoof);
        assert_eq!(d.lookup(&Query::new().service("real")).len(), 1);
        assert!(d.lookup(&Query::new().service("spoofed")).is_empty());
        assert_eq!(
            d.lookup(
                &Query::new()
                    .group("web")
                    .label("zone", "eu")
                    .fact("os", "linux")
            )
            .len(),
            1
        );
        assert!(d.lookup(&Query::new().fact("os", "bsd")).is_empty());
    }

    #[test]
    fn bounded() {
        let d = Directory::with_capacity(3);
        for i in 0..10 {
            let a = Address::new("n", format!("s{i}")).unwrap();
            d.observe(&a, ad("x", 1000));
        }
        assert_eq!(d.lookup(&Query::new().include_down()).len(), 3);
    }
}
