//! The message: a command, a destination, parameters and the envelope fields.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::address::{Address, Destination};
use crate::error::{Error, Invalid, Result};
use crate::name::{clip, validate_command, validate_name};

/// Parameters: name → text value, byte-sorted by name (as on the cd: wire).
pub type Params = BTreeMap<String, String>;

/// Parameter names starting with this prefix are reserved for backends, which carry envelope
/// fields (id, correlation, hops...) as extra parameters on wires that only know parameters.
pub const RESERVED_PARAM_PREFIX: &str = "comms_";

/// The parameter that carries typed data as JSON ([`Message::with_data`], [`Message::data`]).
pub const DATA_PARAM: &str = "data";

/// Longest message id accepted.
pub const MAX_ID_LEN: usize = 64;

/// Longest trace context accepted (a W3C traceparent is 55 bytes).
pub const MAX_TRACE_LEN: usize = 256;

/// Reserved commands that the contract itself sends.
pub mod commands {
    /// A directory advertisement (heartbeat); its `data` is an `Advertisement`.
    pub const ADVERTISE: &str = "ADVERTISE";
    /// Reply: the command has no handler. Parameter `command`.
    pub const UNKNOWN: &str = "UNKNOWN";
    /// Reply: the message failed validation. Parameters `command`, `field`, `reason`.
    pub const INVALID: &str = "INVALID";
    /// Reply: the handler failed. Parameters `command`, `reason`.
    pub const ERROR: &str = "ERROR";
    /// Report: no live instance of the service within the message's TTL.
    /// Parameters `destination_service`, `unsent_command` (as the Communicator sends it).
    pub const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";

    /// True for the error replies, which are never answered (no reply loops).
    pub fn is_error_reply(command: &str) -> bool {
        matches!(command, UNKNOWN | INVALID | ERROR | SERVICE_UNAVAILABLE)
    }
}

/// A unique message id: a ULID (26 characters, time-ordered) for ids made here; ids arriving from
/// a wire may be any 1–64 characters of `[A-Za-z0-9_.-]`.
///
/// Shared text: a clone (the outbox, the pending requests and the replies keep one) copies a
/// pointer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(std::sync::Arc<str>);

impl MessageId {
    /// A fresh, unique id.
    pub fn new() -> Self {
        let mut buf = [0u8; ulid::ULID_LEN];
        MessageId((&*ulid::Ulid::generate().array_to_str(&mut buf)).into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks an id's text: 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9_.-]`.
fn check_id(s: &str) -> Result<(), Invalid> {
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(Invalid::new(
            "id",
            format!("must be 1 to {MAX_ID_LEN} characters"),
        ));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if !s.bytes().all(|b| ok(char::from(b))) {
        let c = s.chars().find(|&c| !ok(c)).unwrap_or('?');
        return Err(Invalid::new(
            "id",
            format!("`{}` contains {c:?}; ids use A-Z a-z 0-9 _ - .", clip(s)),
        ));
    }
    Ok(())
}

impl TryFrom<String> for MessageId {
    type Error = Invalid;

    fn try_from(s: String) -> Result<Self, Invalid> {
        s.parse()
    }
}

impl std::str::FromStr for MessageId {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        check_id(s)?;
        Ok(MessageId(s.into()))
    }
}

impl From<MessageId> for String {
    fn from(id: MessageId) -> String {
        id.0.as_ref().to_owned()
    }
}

// `msg.id() == id` and `id == msg.id()` (as `&str == String` in std).
impl PartialEq<MessageId> for &MessageId {
    fn eq(&self, other: &MessageId) -> bool {
        **self == *other
    }
}

impl PartialEq<&MessageId> for MessageId {
    fn eq(&self, other: &&MessageId) -> bool {
        *self == **other
    }
}

/// Whether the transport must guarantee delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Kept until the receiving endpoint acknowledges it; redelivered after failures (default).
    #[default]
    AtLeastOnce,
    /// Fire-and-forget: delivered on the normal path, lost if a connection or broker fails.
    AtMostOnce,
}

/// One message.
///
/// The fields a sender sets are public; [`Message::validate`] checks them, and every transport
/// calls it on `send`. The fields the transport owns are read through methods: [`Message::from`]
/// (the origin, stamped on `send`), [`Message::id`] (made here, kept across redeliveries and
/// forwards) and [`Message::hops`] (counted by `forward`). A backend that decodes a message off
/// its wire sets them through [`backend::WireFields`](crate::backend::WireFields).
///
/// ```compile_fail
/// # use comms_core::{Destination, Message};
/// let mut m = Message::new("PING", Destination::Service("db".into())).unwrap();
/// m.hops = 0; // the transport owns `hops`: read it with `m.hops()`
/// ```
///
/// ```
/// # use comms_core::{Destination, Message};
/// let m = Message::new("PING", Destination::Service("db".into())).unwrap();
/// assert_eq!((m.from(), m.hops(), m.id().as_str().len()), (None, 0, 26));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `[A-Z0-9_]+`.
    pub command: String,
    /// Where it goes.
    pub to: Destination,
    /// The origin, stamped by the transport (kept across `forward`).
    pub(crate) from: Option<Address>,
    /// Parameters; names follow the name rule and must not start with `comms_`.
    pub params: Params,
    /// Unique id; redeliveries keep it, which is what deduplication keys on.
    pub(crate) id: MessageId,
    /// For a reply: the id of the message it answers.
    pub correlation: Option<MessageId>,
    /// How many times it was forwarded.
    pub(crate) hops: u8,
    /// Optional W3C trace context (`traceparent`).
    pub trace: Option<String>,
    /// At-least-once (default) or at-most-once.
    pub mode: DeliveryMode,
    /// How long it may wait for a service with no live instance; `None` = the transport default.
    pub ttl: Option<Duration>,
    /// When set, the sender is told `SERVICE_UNAVAILABLE` if the message cannot be delivered
    /// within its TTL (the Communicator's `cache=no;reply` / `transmission_report`).
    pub report: bool,
}

impl Message {
    /// A message with a fresh id. Fails when the command breaks the command rule.
    pub fn new(command: impl Into<String>, to: impl Into<Destination>) -> Result<Self> {
        let command = command.into();
        validate_command(&command)?;
        let to = to.into();
        to.validate()?;
        Ok(Self {
            command,
            to,
            from: None,
            params: Params::new(),
            id: MessageId::new(),
            correlation: None,
            hops: 0,
            trace: None,
            mode: DeliveryMode::AtLeastOnce,
            ttl: None,
            report: false,
        })
    }

    /// The origin: the sending endpoint's address, stamped by its transport (`None` before
    /// `send`, and for a message from a wire that names no origin). Kept across `forward`.
    pub fn from(&self) -> Option<&Address> {
        self.from.as_ref()
    }

    /// The message's unique id; redeliveries and forwards keep it (deduplication keys on it).
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// How many times the message was forwarded.
    pub fn hops(&self) -> u8 {
        self.hops
    }

    /// Add a parameter (checked by [`Message::validate`] on send).
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(name.into(), value.into());
        self
    }

    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Put `data` (any serde type) into the `data` parameter as JSON.
    pub fn with_data<T: Serialize + ?Sized>(mut self, data: &T) -> Result<Self> {
        self.params
            .insert(DATA_PARAM.to_owned(), serde_json::to_string(data)?);
        Ok(self)
    }

    /// Decode the `data` parameter. Errors name the field and say what is wrong.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T> {
        let raw = self
            .param(DATA_PARAM)
            .ok_or_else(|| Error::invalid(DATA_PARAM, "missing"))?;
        serde_json::from_str(raw).map_err(|e| Error::invalid(DATA_PARAM, e.to_string()))
    }

    /// Fire-and-forget instead of at-least-once.
    pub fn at_most_once(mut self) -> Self {
        self.mode = DeliveryMode::AtMostOnce;
        self
    }

    /// How long the message may wait for a service instance, and whether to report failure.
    pub fn with_ttl(mut self, ttl: Duration, report: bool) -> Self {
        self.ttl = Some(ttl);
        self.report = report;
        self
    }

    /// A reply to this message: addressed to its origin, correlated with its id.
    pub fn reply(&self, command: impl Into<String>) -> Result<Message> {
        let from = self
            .from
            .clone()
            .ok_or_else(|| Error::invalid("from", "the message has no origin to reply to"))?;
        let mut reply = Message::new(command, from)?;
        reply.correlation = Some(self.id.clone());
        reply.trace = self.trace.clone();
        Ok(reply)
    }

    /// True when this answers another message.
    pub fn is_reply(&self) -> bool {
        self.correlation.is_some()
    }

    /// Check every field; the error names the field and the reason.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_command(&self.command)?;
        self.to.validate()?;
        for name in self.params.keys() {
            validate_name("parameter name", name)?;
            if name.starts_with(RESERVED_PARAM_PREFIX) {
                return Err(Invalid::new(
                    name.as_str(),
                    format!("parameter names starting with `{RESERVED_PARAM_PREFIX}` are reserved"),
                ));
            }
        }
        if let Some(t) = &self.trace {
            if t.len() > MAX_TRACE_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Invalid::new(
                    "trace",
                    format!("must be at most {MAX_TRACE_LEN} printable ASCII characters"),
                ));
            }
        }
        Ok(())
    }

    /// Bytes of command, destination and parameters: what counts against a transport's maximum.
    pub fn payload_size(&self) -> usize {
        self.command.len()
            + self
                .params
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>()
    }

    /// Fail with [`Error::TooLarge`] when the payload is over `max` bytes.
    pub fn check_size(&self, max: usize) -> Result<()> {
        let size = self.payload_size();
        if size > max {
            return Err(Error::TooLarge { size, max });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Job {
        name: String,
        retries: u32,
    }

    #[test]
    fn typed_data_round_trip() {
        let job = Job {
            name: "x;y=\"z\"\n".into(),
            retries: 3,
        };
        let m = Message::new("RUN", Destination::Service("agent".into()))
            .unwrap()
            .with_data(&job)
            .unwrap();
        assert_eq!(m.data::<Job>().unwrap(), job);
        let e = Message::new("RUN", Destination::Service("a".into()))
            .unwrap()
            .data::<Job>()
            .unwrap_err();
        assert!(e.to_string().contains("data"), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        assert!(Message::new("run", Destination::Service("a".into())).is_err());
        assert!(Message::new("RUN", Destination::Service("a b".into())).is_err());
        let m = Message::new("RUN", Destination::Service("a".into()))
            .unwrap()
            .with_param("bad-name", "v");
        assert_eq!(m.validate().unwrap_err().field, "parameter name");
        let m = Message::new("RUN", Destination::Service("a".into()))
            .unwrap()
            .with_param("comms_id", "v");
        assert_eq!(m.validate().unwrap_err().field, "comms_id");
    }

    #[test]
    fn ids() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 26);
        assert!("".parse::<MessageId>().is_err());
        assert!("a b".parse::<MessageId>().is_err());
        assert!("x".repeat(65).parse::<MessageId>().is_err());
    }

    #[test]
    fn size_check() {
        let m = Message::new("X", Destination::Service("a".into()))
            .unwrap()
            .with_param("p", "v".repeat(100));
        assert!(m.check_size(1000).is_ok());
        assert!(matches!(
            m.check_size(50),
            Err(Error::TooLarge { max: 50, .. })
        ));
    }
}
