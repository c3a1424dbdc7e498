//! Addresses (`node:service`) and destinations (instance, service, broadcast).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Invalid;
use crate::name::{clip, validate_name};

/// One endpoint: `node:service`. `node` is the host or daemon name (the Communicator's "server").
///
/// Kept as one shared `node:service` text: cloning an address (every message carries one or
/// two) copies a pointer, not the names. Ordered by node, then service.
#[derive(Clone)]
pub struct Address {
    text: Arc<str>,
    /// Where the `:` is (names never contain one).
    colon: usize,
}

impl Address {
    /// A validated address.
    pub fn new(node: impl AsRef<str>, service: impl AsRef<str>) -> Result<Self, Invalid> {
        let (node, service) = (node.as_ref(), service.as_ref());
        validate_name("node", node)?;
        validate_name("service", service)?;
        let mut text = String::with_capacity(node.len() + 1 + service.len());
        text.push_str(node);
        text.push(':');
        text.push_str(service);
        Ok(Self {
            text: text.into(),
            colon: node.len(),
        })
    }

    /// The node (host or daemon) part.
    pub fn node(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The service part.
    pub fn service(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// `node:service` (as [`Display`](fmt::Display) writes it), without allocating.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Address {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.text, &other.text) || self.text == other.text
    }
}

impl Eq for Address {}

impl Hash for Address {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl Ord for Address {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.node(), self.service()).cmp(&(other.node(), other.service()))
    }
}

impl PartialOrd for Address {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Address")
            .field("node", &self.node())
            .field("service", &self.service())
            .finish()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
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

/// An optional address in display form for logs: the address, or `-` when absent.
pub fn or_dash(address: Option<&Address>) -> String {
    address.map_or_else(|| "-".to_owned(), Address::to_string)
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
