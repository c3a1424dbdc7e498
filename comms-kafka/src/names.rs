//! Topic and consumer-group names: everything lives under `comms.{namespace}.`; the service
//! and instance names are the shared ones ([`comms_core::naming::Names`], reached through
//! `Deref`), this module adds Kafka's own.

use std::ops::Deref;

use comms_core::{naming, Destination};

/// The names of one deployment (namespace).
///
/// - `comms.{ns}.svc.{service}` ([`naming::Names::service`]): the service topic, and the
///   group of its instances;
/// - `comms.{ns}.inst.{node}.{service}` ([`naming::Names::instance`]): the instance topic,
///   and the instance's own group;
/// - [`Names::broadcast`], [`Names::replies`], [`Names::dead_letter`]: Kafka's own topics.
#[derive(Debug, Clone)]
pub struct Names {
    shared: naming::Names,
}

impl Names {
    /// Names in `namespace`.
    pub fn new(namespace: &str) -> Self {
        Self {
            shared: naming::Names::new(namespace),
        }
    }

    /// `comms.{ns}.broadcast`: broadcasts and advertisements (one partition).
    pub fn broadcast(&self) -> String {
        self.child("broadcast")
    }

    /// `comms.{ns}.deadletter`: records that were not valid envelopes.
    pub fn dead_letter(&self) -> String {
        self.child("deadletter")
    }

    /// `comms.{ns}.replies`: messages to ephemeral endpoints (one partition; see
    /// [`crate::replies`]).
    pub fn replies(&self) -> String {
        self.child("replies")
    }

    /// The topic a destination maps to; the consumer group that drains it is the same name
    /// (none for broadcasts).
    pub fn topic(&self, to: &Destination) -> String {
        match to {
            Destination::Instance(a) => self.instance(a),
            Destination::Service(s) => self.service(s),
            Destination::Broadcast(_) => self.broadcast(),
        }
    }
}

impl Deref for Names {
    type Target = naming::Names;

    fn deref(&self) -> &naming::Names {
        &self.shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comms_core::{Address, Scope};

    #[test]
    fn namespaced() {
        let n = Names::new("prod");
        let a = Address::new("web01", "agent").unwrap();
        assert_eq!(n.topic(&a.clone().into()), "comms.prod.inst.web01.agent");
        assert_eq!(
            n.topic(&Destination::Service("agent".into())),
            "comms.prod.svc.agent"
        );
        assert_eq!(
            n.topic(&Destination::Broadcast(Scope::Node)),
            "comms.prod.broadcast"
        );
        assert_eq!(n.dead_letter(), "comms.prod.deadletter");
        assert_eq!(n.replies(), "comms.prod.replies");
        assert_eq!(n.prefix(), "comms.prod");
    }
}
