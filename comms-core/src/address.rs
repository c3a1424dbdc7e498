//! Addresses (`node:service`) and destinations (instance, service, broadcast).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Invalid;
use crate::name::{clip, validate_name};

/// One endpoint: `node:service`. `node` is the host or daemon name (the Communicator's "server").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    node: String,
    service: String,
}

impl Address {
    /// A validated address.
    pub fn new(node: impl Into<String>, service: impl Into<String>) -> Result<Self, Invalid> {
        let (node, service) = (node.into(), service.into());
        validate_name("node", &node)?;
        validate_name("service", &service)?;
        Ok(Self { node, service })
    }

    /// The node (host or daemon) part.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The service part.
    pub fn service(&self) -> &str {
        &self.service
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.service)
    }
}

impl FromStr for Address {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((node, service)) => Address::new(node, service),
            None => Err(Invalid::new(
                "address",
                format!("`{}` is not of the form node:service", clip(s)),
            )),
        }
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How far a broadcast goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `.`: the endpoints on the sender's node.
    Node,
    /// `*`: every endpoint.
    All,
}

/// Where a message goes: exactly one of an instance, a service, or a broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// That one endpoint.
    Instance(Address),
    /// One live instance of the service (a local one preferred): competing consumers.
    Service(String),
    /// Every endpoint in scope that declared the message's command.
    Broadcast(Scope),
}

impl Destination {
    /// A validated service destination.
    pub fn service(name: impl Into<String>) -> Result<Self, Invalid> {
        let name = name.into();
        validate_name("service", &name)?;
        Ok(Destination::Service(name))
    }

    /// The service this destination names, if it names one.
    pub fn service_name(&self) -> Option<&str> {
        match self {
            Destination::Instance(a) => Some(a.service()),
            Destination::Service(s) => Some(s),
            Destination::Broadcast(_) => None,
        }
    }

    /// Re-check the names inside (a `Service` built by hand may hold anything).
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            Destination::Service(s) => validate_name("to", s),
            Destination::Instance(_) | Destination::Broadcast(_) => Ok(()),
        }
    }
}

impl From<Address> for Destination {
    fn from(a: Address) -> Self {
        Destination::Instance(a)
    }
}

/// Text form: `node:service`, `service`, `.` or `*` — the cd: wire's addressing.
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Instance(a) => a.fmt(f),
            Destination::Service(s) => f.write_str(s),
            Destination::Broadcast(Scope::Node) => f.write_str("."),
            Destination::Broadcast(Scope::All) => f.write_str("*"),
        }
    }
}

impl FromStr for Destination {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "." => Ok(Destination::Broadcast(Scope::Node)),
            "*" => Ok(Destination::Broadcast(Scope::All)),
            _ if s.contains(':') => s
                .parse()
                .map(Destination::Instance)
                .map_err(|e| Invalid::new("to", format!("{}: {}", e.field, e.reason))),
            _ => {
                validate_name("to", s)?;
                Ok(Destination::Service(s.to_owned()))
            }
        }
    }
}

impl Serialize for Destination {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Destination {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_round_trip() {
        let a: Address = "web01:agent".parse().unwrap();
        assert_eq!((a.node(), a.service()), ("web01", "agent"));
        assert_eq!(a.to_string(), "web01:agent");
        for bad in ["agent", ":agent", "web01:", "a:b:c", "we b:x", "1n:s"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }

    #[test]
    fn destination_text_forms() {
        for s in ["n:s", "svc", ".", "*"] {
            let d: Destination = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
        assert!("a/b".parse::<Destination>().is_err());
        assert!("".parse::<Destination>().is_err());
        let d: Destination = serde_json::from_str("\"n:s\"").unwrap();
        assert_eq!(d, Destination::Instance(Address::new("n", "s").unwrap()));
    }
}
