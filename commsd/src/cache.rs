//! The cache of messages addressed to services that are not registered (docs/NATIVE.md).
//!
//! Owned by the router (no lock). Bounded by message count and total bytes: when full, a new
//! message is **refused** (the sender is told as for `cache=no`), never an older one evicted.
//! Entries expire on a timer (the router sleeps until [`Cache::next_deadline`]); cached lines
//! are stored already stamped, ready to write.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::config::CacheLimits;

/// Longest TTL a message may ask for (docs/PROTOCOL.md §2.5).
pub(crate) const MAX_TTL_SECS: u64 = 86_400;

/// The sub-options of a message's `cache` parameter: `no`, `reply`, `ttl=N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheOpts {
    pub no: bool,
    pub reply: bool,
    pub ttl: Duration,
}

impl CacheOpts {
    /// Parses `cache` (`None`: parameter absent). `ttl` is whole seconds, clamped to
    /// 1..=86400 (the C++ floor is 10 s; comms asks for as little as 1 s).
    pub(crate) fn parse(value: Option<&str>, default_ttl: Duration) -> Self {
        let mut opts = Self {
            no: false,
            reply: false,
            ttl: default_ttl,
        };
        for item in value.unwrap_or_default().split(';').map(str::trim) {
            match item {
                "no" => opts.no = true,
                "reply" => opts.reply = true,
                _ => {
                    if let Some(n) = item.strip_prefix("ttl=") {
                        if let Ok(n) = n.trim().parse::<u64>() {
                            opts.ttl = Duration::from_secs(n.clamp(1, MAX_TTL_SECS));
                        }
                    }
                }
            }
        }
        opts
    }
}

/// One cached message.
#[derive(Debug, Clone)]
pub(crate) struct CacheEntry {
    /// Destination service.
    pub service: String,
    /// The stamped line, `\n` included.
    pub line: Bytes,
    pub deadline: Instant,
    /// Registered name of the sender (for SERVICE_UNAVAILABLE), if any.
    pub sender: Option<String>,
    /// Send SERVICE_UNAVAILABLE to the sender at expiry.
    pub reply: bool,
    pub command: String,
    /// The message's `comms_id`, echoed as `comms_corr` in SERVICE_UNAVAILABLE.
    pub comms_id: Option<String>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Cache {
    limits: CacheLimits,
    entries: BTreeMap<u64, CacheEntry>,
    by_service: HashMap<String, VecDeque<u64>>,
    by_deadline: BTreeSet<(Instant, u64)>,
    next_seq: u64,
    bytes: usize,
}

impl Cache {
    pub(crate) fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            entries: BTreeMap::new(),
            by_service: HashMap::new(),
            by_deadline: BTreeSet::new(),
            next_seq: 0,
            bytes: 0,
        }
    }

    pub(crate) fn default_ttl(&self) -> Duration {
        self.limits.default_ttl
    }

    /// Stores `entry`; `false` (entry dropped) when the cache is full.
    pub(crate) fn insert(&mut self, entry: CacheEntry) -> bool {
        if self.entries.len() >= self.limits.max_messages
            || self.bytes + entry.line.len() > self.limits.max_bytes
        {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += entry.line.len();
        self.by_deadline.insert((entry.deadline, seq));
        self.by_service
            .entry(entry.service.clone())
            .or_default()
            .push_back(seq);
        self.entries.insert(seq, entry);
        true
    }

    /// Removes and returns, in arrival order, every message cached for `service`.
    pub(crate) fn take_for(&mut self, service: &str) -> Vec<CacheEntry> {
        let Some(seqs) = self.by_service.remove(service) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(e) = self.entries.remove(&seq) {
                self.by_deadline.remove(&(e.deadline, seq));
                self.bytes -= e.line.len();
                out.push(e);
            }
        }
        out
    }

    /// Services with cached messages.
    pub(crate) fn services(&self) -> Vec<String> {
        self.by_service.keys().cloned().collect()
    }

    /// The distinct destination servers named by the messages cached for `service` (from
    /// each stamped line's head; empty names are skipped).
    pub(crate) fn servers_for(&self, service: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for seq in self.by_service.get(service).into_iter().flatten() {
            if let Some(e) = self.entries.get(seq) {
                if let Ok(h) = cd_wire::peek_route(&e.line) {
                    if !h.server.is_empty() && !out.iter().any(|s| s == h.server) {
                        out.push(h.server.to_owned());
                    }
                }
            }
        }
        out
    }

    /// When the next entry expires.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(d, _)| *d)
    }

    /// Removes and returns every entry whose deadline is at or before `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<CacheEntry> {
        let mut out = Vec::new();
        while let Some(&(deadline, seq)) = self.by_deadline.first() {
            if deadline > now {
                break;
            }
            self.by_deadline.pop_first();
            if let Some(e) = self.entries.remove(&seq) {
                self.bytes -= e.line.len();
                if let Some(q) = self.by_service.get_mut(&e.service) {
                    q.retain(|s| *s != seq);
                    if q.is_empty() {
                        self.by_service.remove(&e.service);
                    }
                }
                out.push(e);
            }
        }
        out
    }

    /// Number of cached messages.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(svc: &str, line: &str, deadline: Instant) -> CacheEntry {
        CacheEntry {
            service: svc.into(),
            line: Bytes::from(line.to_owned()),
            deadline,
            sender: None,
            reply: false,
            command: "X".into(),
            comms_id: None,
        }
    }

    #[test]
    fn opts() {
        let d = Duration::from_secs(60);
        let o = CacheOpts::parse(Some("no;reply"), d);
        assert!(o.no && o.reply);
        let o = CacheOpts::parse(Some("ttl=1;reply"), d);
        assert_eq!(
            (o.no, o.reply, o.ttl),
            (false, true, Duration::from_secs(1))
        );
        assert_eq!(
            CacheOpts::parse(Some("ttl=0"), d).ttl,
            Duration::from_secs(1)
        );
        assert_eq!(
            CacheOpts::parse(Some("ttl=999999"), d).ttl,
            Duration::from_secs(MAX_TTL_SECS)
        );
        assert_eq!(CacheOpts::parse(None, d).ttl, d);
    }

    #[test]
    fn order_bounds_and_expiry() {
        let now = Instant::now();
        let limits = CacheLimits {
            max_messages: 3,
            max_bytes: 100,
            default_ttl: Duration::from_secs(60),
        };
        let mut c = Cache::new(limits);
        let later = now + Duration::from_secs(10);
        assert!(c.insert(entry("a", "1", later)));
        assert!(c.insert(entry("b", "2", now + Duration::from_secs(1))));
        assert!(c.insert(entry("a", "3", later)));
        assert!(!c.insert(entry("a", "4", later)));
        assert_eq!(c.next_deadline(), Some(now + Duration::from_secs(1)));
        let gone = c.expire(now + Duration::from_secs(1));
        assert_eq!(gone.len(), 1);
        assert_eq!(c.len(), 2);
        let lines: Vec<_> = c.take_for("a").into_iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![Bytes::from("1"), Bytes::from("3")]);
        assert_eq!(c.next_deadline(), None);
        let big = "x".repeat(101);
        assert!(!c.insert(entry("a", &big, later)));
    }
}
