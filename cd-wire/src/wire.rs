//! [`WireMessage`]: the six fields of a Communicator message (docs/PROTOCOL.md §1.1) and the
//! name rules the C++ setters enforce (`verify_message_name`).
//!
//! Fields are public and setters do not validate: like the C++ parser, we accept what
//! arrives, and validate once, when a message is serialized (see [`WireMessage::validate`]).

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::error::{ParseError, SerializeError};

/// One Communicator message.
///
/// `params` is a `BTreeMap`, so parameters are written in byte-sorted order, and a duplicate
/// name on input keeps the last value, as the C++ `std::map` does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct WireMessage {
    /// Server the message came from (`<sfs:` prefix); empty if unknown.
    pub sent_from_server: String,
    /// Service the message came from (`:sfv ` in the prefix); empty if unknown.
    pub sent_from_service: String,
    /// Destination server (`server:`); only written when `service` is non-empty.
    pub server: String,
    /// Destination service (`service/`).
    pub service: String,
    /// The command, `[A-Z_][A-Z0-9_]*` on send; not validated on receive.
    pub command: String,
    /// Parameters, byte-sorted by name.
    pub params: BTreeMap<String, String>,
}

impl WireMessage {
    /// A message with only a command.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            ..Self::default()
        }
    }

    /// Sets the destination server.
    #[must_use]
    pub fn with_server(mut self, server: impl Into<String>) -> Self {
        self.server = server.into();
        self
    }

    /// Sets the destination service.
    #[must_use]
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Sets the sent-from pair (the `<server:service ` prefix).
    #[must_use]
    pub fn with_sent_from(mut self, server: impl Into<String>, service: impl Into<String>) -> Self {
        self.sent_from_server = server.into();
        self.sent_from_service = service.into();
        self
    }

    /// Adds (or replaces) a parameter.
    #[must_use]
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_param(name, value);
        self
    }

    /// Adds or replaces a parameter; returns the previous value.
    pub fn set_param(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Option<String> {
        self.params.insert(name.into(), value.into())
    }

    /// The value of a parameter, if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Whether a parameter is present (possibly with an empty value).
    pub fn has_param(&self, name: &str) -> bool {
        self.params.contains_key(name)
    }

    /// Addresses this message as a reply to `request`: `server`/`service` become the
    /// request's sent-from pair (C++ `message::reply_to`). Nothing else changes.
    pub fn reply_to(&mut self, request: &WireMessage) {
        self.server.clone_from(&request.sent_from_server);
        self.service.clone_from(&request.sent_from_service);
    }

    /// Checks every field against the send-side rules; [`serialize`](crate::serialize)
    /// calls this first, so it never writes a partial line.
    pub fn validate(&self) -> Result<(), SerializeError> {
        validate_command(&self.command)?;
        validate_address("server", &self.server)?;
        validate_address("service", &self.service)?;
        validate_sent_from("sent_from_server", &self.sent_from_server)?;
        validate_sent_from("sent_from_service", &self.sent_from_service)?;
        for (name, value) in &self.params {
            if !is_valid_name(name) {
                return Err(SerializeError::InvalidParamName(name.clone()));
            }
            if value.as_bytes().contains(&0) {
                return Err(SerializeError::NulInValue(name.clone()));
            }
        }
        Ok(())
    }

    /// Serializes to one line, without the `\n` terminator.
    pub fn to_line(&self) -> Result<String, SerializeError> {
        super::serialize::to_line(self)
    }
}

impl FromStr for WireMessage {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        super::parse(s.as_bytes())
    }
}

/// The name rule: ASCII `[A-Za-z_][A-Za-z0-9_]*`, non-empty.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The command rule on send: `[A-Z0-9_]+` (uppercase letters, digits, `_`).
pub fn is_valid_command(command: &str) -> bool {
    // `[A-Z0-9_]+`, as the C++ `verify_message_name` and comms-core's command rule.
    !command.is_empty()
        && command
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Server/service rule: empty, one of the specials `.`, `*`, `?`, or a valid name.
pub fn is_valid_address(name: &str) -> bool {
    name.is_empty() || matches!(name, "." | "*" | "?") || is_valid_name(name)
}

/// `Ok` for a valid command (`[A-Z_][A-Z0-9_]*`), else why not.
pub fn validate_command(command: &str) -> Result<(), SerializeError> {
    if command.is_empty() {
        Err(SerializeError::EmptyCommand)
    } else if is_valid_command(command) {
        Ok(())
    } else {
        Err(SerializeError::InvalidCommand(command.to_owned()))
    }
}

/// `Ok` for a valid server or service (`field` names it in the error), else why not.
pub fn validate_address(field: &'static str, value: &str) -> Result<(), SerializeError> {
    if is_valid_address(value) {
        Ok(())
    } else {
        Err(SerializeError::InvalidName {
            field,
            value: value.to_owned(),
            specials: ", `.`, `*` or `?`",
        })
    }
}

pub(crate) fn validate_sent_from(field: &'static str, value: &str) -> Result<(), SerializeError> {
    if value.is_empty() || is_valid_name(value) {
        Ok(())
    } else {
        Err(SerializeError::InvalidName {
            field,
            value: value.to_owned(),
            specials: "",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        assert!(is_valid_name("a_1") && is_valid_name("_x") && is_valid_name("Url"));
        assert!(!is_valid_name("") && !is_valid_name("1p") && !is_valid_name("p-q"));
        assert!(!is_valid_name(" p") && !is_valid_name("é"));
        assert!(is_valid_command("PING") && is_valid_command("A_1") && is_valid_command("_X"));
        assert!(
            is_valid_command("1A"),
            "commands are [A-Z0-9_]+, as in the C++"
        );
        assert!(!is_valid_command("Ping") && !is_valid_command("A-B") && !is_valid_command(""));
        for s in ["", ".", "*", "?", "images"] {
            assert!(is_valid_address(s), "{s}");
        }
        assert!(!is_valid_address("a.b") && !is_valid_address(".."));
    }

    #[test]
    fn builders_and_accessors() {
        let m = WireMessage::new("PING")
            .with_server("vm")
            .with_service("images")
            .with_sent_from("vm", "probe_a")
            .with_param("a", "1")
            .with_param("a", "2");
        assert_eq!(m.param("a"), Some("2"));
        assert_eq!(m.param("b"), None);
        assert!(m.has_param("a"));
        assert!(m.validate().is_ok());
    }

    #[test]
    fn reply_to_uses_the_sent_from_pair() {
        let req = WireMessage::new("ALIVE")
            .with_sent_from("vm", "probe_a")
            .with_server("x")
            .with_service("communicatord");
        let mut reply = WireMessage::new("ABSOLUTELY").with_param("serial", "42");
        reply.reply_to(&req);
        assert_eq!(
            (reply.server.as_str(), reply.service.as_str()),
            ("vm", "probe_a")
        );
        assert_eq!(
            reply.to_line().ok().as_deref(),
            Some("vm:probe_a/ABSOLUTELY serial=42")
        );
    }

    #[test]
    fn validate_reports_the_culprit() {
        assert_eq!(
            WireMessage::new("").validate(),
            Err(SerializeError::EmptyCommand)
        );
        assert!(matches!(
            WireMessage::new("hello").validate(),
            Err(SerializeError::InvalidCommand(c)) if c == "hello"
        ));
        assert!(matches!(
            WireMessage::new("X").with_service("a/b").validate(),
            Err(SerializeError::InvalidName {
                field: "service",
                ..
            })
        ));
        assert!(matches!(
            WireMessage::new("X").with_sent_from("*", "").validate(),
            Err(SerializeError::InvalidName {
                field: "sent_from_server",
                ..
            })
        ));
        assert!(matches!(
            WireMessage::new("X").with_param("p-q", "v").validate(),
            Err(SerializeError::InvalidParamName(n)) if n == "p-q"
        ));
        assert!(matches!(
            WireMessage::new("X").with_param("p", "a\0b").validate(),
            Err(SerializeError::NulInValue(n)) if n == "p"
        ));
    }
}
