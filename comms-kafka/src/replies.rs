//! Messages to ephemeral endpoints (`commsctl`) travel on one shared topic per namespace,
//! `comms.{ns}.replies` (1 partition), instead of an instance topic of their own: a
//! short-lived client leaves no topic and no consumer group on the broker.
//!
//! It is Kafka's usual request/reply pattern (a reply-topic header, one shared reply topic,
//! each requester keeping what is addressed to it):
//!
//! - an ephemeral endpoint reads the replies topic from its end at `listen` time, without a
//!   group, keeping only records addressed to its own address ([`crate::consumer`]);
//! - every record it sends carries the header [`REPLY_TO_HEADER`] naming the replies topic;
//! - every endpoint that receives such a record remembers that its sender is reached through
//!   the replies topic ([`ReplyRoutes::learn`]); a message to that address then goes there
//!   (partition 0, like a broadcast: nobody commits on it, so there is no consumer lag to
//!   wait for and no `SERVICE_UNAVAILABLE` report to watch).
//!
//! The routes are kept in memory, bounded ([`MAX_ROUTES`], the least recently used dropped
//! first). An endpoint that never received from an ephemeral endpoint (or forgot it, or
//! restarted) sends to the instance topic as for any address — which an ephemeral endpoint
//! does not read: messages to a short-lived client are meant as replies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use comms_core::{Address, Destination};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};

/// The header an ephemeral endpoint's records carry: the topic its replies go to.
pub const REPLY_TO_HEADER: &str = "comms-reply-to";

/// How many ephemeral senders an endpoint remembers.
pub const MAX_ROUTES: usize = 16_384;

/// Which addresses are reached through the replies topic.
#[derive(Debug)]
pub struct ReplyRoutes {
    topic: String,
    /// Address → when it was last seen or used.
    known: Mutex<HashMap<Address, Instant>>,
}

impl ReplyRoutes {
    /// Routes to `topic` (the namespace's replies topic).
    pub fn new(topic: String) -> Self {
        Self {
            topic,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The replies topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Remember `from` when `record` names this namespace's replies topic in
    /// [`REPLY_TO_HEADER`] (any other value is ignored: a record cannot make this endpoint
    /// write to a topic of its choosing); forget it when a record from `from` comes without
    /// the header (the latest word wins, so a forged claim lasts until the real endpoint at
    /// that address sends again).
    pub fn learn(&self, record: &BorrowedMessage<'_>, from: &Address) {
        let names_ours = record.headers().is_some_and(|h| {
            h.iter()
                .any(|h| h.key == REPLY_TO_HEADER && h.value == Some(self.topic.as_bytes()))
        });
        if names_ours {
            self.insert(from.clone());
        } else {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if !known.is_empty() {
                known.remove(from);
            }
        }
    }

    /// Remember that `address` is reached through the replies topic.
    pub fn insert(&self, address: Address) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_ROUTES && !known.contains_key(&address) {
            forget_older_half(&mut known);
        }
        known.insert(address, Instant::now());
    }

    /// True when messages to `to` go to the replies topic (and marks the route used).
    pub fn routes(&self, to: &Destination) -> bool {
        let Destination::Instance(a) = to else {
            return false;
        };
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        match known.get_mut(a) {
            Some(seen) => {
                *seen = Instant::now();
                true
            }
            None => false,
        }
    }
}

/// Drop the least recently used half of `known`.
fn forget_older_half(known: &mut HashMap<Address, Instant>) {
    let mut seen: Vec<Instant> = known.values().copied().collect();
    let middle = seen.len() / 2;
    let (_, cut, _) = seen.select_nth_unstable(middle);
    let cut = *cut;
    known.retain(|_, t| *t > cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: usize) -> Address {
        Address::new("host", format!("commsctl_{i}")).unwrap()
    }

    #[test]
    fn only_learned_instances_are_routed() {
        let r = ReplyRoutes::new("comms.t.replies".into());
        r.insert(addr(1));
        assert!(r.routes(&addr(1).into()));
        assert!(!r.routes(&addr(2).into()));
        assert!(!r.routes(&Destination::Service("commsctl_1".into())));
    }

    #[test]
    fn bounded_and_keeps_the_recently_used() {
        let r = ReplyRoutes::new("comms.t.replies".into());
        for i in 0..MAX_ROUTES {
            r.insert(addr(i));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(r.routes(&addr(0).into()), "used just now");
        r.insert(addr(MAX_ROUTES));
        let len = r.known.lock().unwrap().len();
        assert!(len <= MAX_ROUTES / 2 + 2, "{len} routes kept");
        assert!(r.routes(&addr(0).into()), "the recently used one stays");
        assert!(r.routes(&addr(MAX_ROUTES).into()), "the new one is kept");
    }
}
