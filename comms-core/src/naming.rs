//! [`Names`]: how the broker backends name what they create for a deployment. Every name
//! starts with `comms.{namespace}`; a service's name is `{prefix}.svc.{service}` and an
//! instance's `{prefix}.inst.{node}.{service}` (a RabbitMQ queue, a Kafka topic and its
//! consumer group). Each backend adds its own names with [`Names::child`].

use crate::address::Address;

/// The names of one namespace (deployment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// The names of `namespace`.
    pub fn new(namespace: &str) -> Self {
        Self {
            prefix: format!("comms.{namespace}"),
        }
    }

    /// `comms.{ns}`: what every name of the namespace starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `comms.{ns}.{suffix}`: a backend's own name in the namespace.
    pub fn child(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    /// `comms.{ns}.svc.{service}`: what the instances of `service` share.
    pub fn service(&self, service: &str) -> String {
        format!("{}.svc.{service}", self.prefix)
    }

    /// `comms.{ns}.inst.{node}.{service}`: what belongs to one instance.
    pub fn instance(&self, address: &Address) -> String {
        format!(
            "{}.inst.{}.{}",
            self.prefix,
            address.node(),
            address.service()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced() {
        let n = Names::new("prod");
        let a = Address::new("web01", "agent").unwrap();
        assert_eq!(n.prefix(), "comms.prod");
        assert_eq!(n.instance(&a), "comms.prod.inst.web01.agent");
        assert_eq!(n.service("agent"), "comms.prod.svc.agent");
        assert_eq!(n.child("dlx"), "comms.prod.dlx");
    }
}
