//! Advertisements: who an endpoint is, what it accepts, and facts about it.
//!
//! An advertisement travels as an at-most-once broadcast of the reserved command `ADVERTISE`
//! whose `data` parameter is this struct as JSON. Endpoints repeat it as a heartbeat every
//! TTL/3; a [`crate::Directory`] marks an endpoint down when no advertisement arrived within
//! its TTL. An advertisement with a TTL of zero withdraws the endpoint (graceful leave).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::address::{Address, Destination, Scope};
use crate::error::{Invalid, Result};
use crate::message::{commands, Message};
use crate::name::{validate_command, validate_name};

/// Default advertisement TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// Longest text accepted for one fact or label value.
pub const MAX_FACT_LEN: usize = 4096;

/// Who an endpoint is and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advertisement {
    /// Its address; receivers trust the transport-stamped origin over this field.
    pub address: Address,
    /// The commands it accepts (broadcasts are delivered only for these).
    pub commands: BTreeSet<String>,
    /// Groups it belongs to (`web`, `db`...).
    #[serde(default)]
    pub groups: BTreeSet<String>,
    /// Labels (`zone=eu1`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Facts (`os=linux`, `cpus=2`).
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
    /// How long the advertisement stays valid without a heartbeat; zero withdraws it.
    #[serde(with = "millis")]
    pub ttl: Duration,
}

impl Advertisement {
    /// An advertisement for `address` accepting `commands`, with the default TTL.
    pub fn new<I, S>(address: Address, commands: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            address,
            commands: commands.into_iter().map(Into::into).collect(),
            groups: BTreeSet::new(),
            labels: BTreeMap::new(),
            facts: BTreeMap::new(),
            ttl: DEFAULT_TTL,
        }
    }

    /// Check every field.
    pub fn validate(&self) -> Result<(), Invalid> {
        for c in &self.commands {
            validate_command(c)?;
        }
        for g in &self.groups {
            validate_name("group", g)?;
        }
        for (k, v) in self.labels.iter().chain(&self.facts) {
            validate_name("label or fact name", k)?;
            if v.len() > MAX_FACT_LEN {
                return Err(Invalid::new(
                    k.as_str(),
                    format!("value is {} bytes; at most {MAX_FACT_LEN}", v.len()),
                ));
            }
        }
        Ok(())
    }

    /// The at-most-once `ADVERTISE` broadcast that carries this advertisement.
    pub fn to_message(&self) -> Result<Message> {
        self.validate()?;
        Ok(
            Message::new(commands::ADVERTISE, Destination::Broadcast(Scope::All))?
                .with_data(self)?
                .at_most_once(),
        )
    }

    /// Decode an `ADVERTISE` message.
    pub fn from_message(msg: &Message) -> Result<Self> {
        let ad: Advertisement = msg.data()?;
        ad.validate()?;
        Ok(ad)
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        let mut ad = Advertisement::new(Address::new("n1", "agent").unwrap(), ["RUN", "PING"]);
        ad.groups.insert("web".into());
        ad.facts.insert("os".into(), "linux".into());
        ad.ttl = Duration::from_millis(1500);
        let m = ad.to_message().unwrap();
        assert_eq!(m.command, commands::ADVERTISE);
        assert_eq!(m.mode, crate::DeliveryMode::AtMostOnce);
        assert_eq!(Advertisement::from_message(&m).unwrap(), ad);
    }

    #[test]
    fn invalid_group() {
        let mut ad = Advertisement::new(Address::new("n1", "agent").unwrap(), ["RUN"]);
        ad.groups.insert("no spaces".into());
        assert_eq!(ad.validate().unwrap_err().field, "group");
    }
}
