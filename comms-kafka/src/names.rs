//! Topic and consumer-group names: everything lives under `comms.{namespace}.`.

use comms_core::{Address, Destination};

/// The names of one deployment (namespace).
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names in `namespace`.
    pub fn new(namespace: &str) -> Self {
        Self {
            prefix: format!("comms.{namespace}"),
        }
    }

    /// `comms.{ns}`: what every topic of the namespace starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `comms.{ns}.svc.{service}`: the service topic, and the group of its instances.
    pub fn service(&self, service: &str) -> String {
        format!("{}.svc.{service}", self.prefix)
    }

    /// `comms.{ns}.inst.{node}.{service}`: the instance topic, and the instance's own group.
    pub fn instance(&self, address: &Address) -> String {
        format!(
            "{}.inst.{}.{}",
            self.prefix,
            address.node(),
            address.service()
        )
    }

    /// `comms.{ns}.broadcast`: broadcasts and advertisements (one partition).
    pub fn broadcast(&self) -> String {
        format!("{}.broadcast", self.prefix)
    }

    /// `comms.{ns}.deadletter`: records that were not valid envelopes.
    pub fn dead_letter(&self) -> String {
        format!("{}.deadletter", self.prefix)
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

#[cfg(test)]
mod tests {
    use super::*;
    use comms_core::Scope;

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
    }
}
