//! The broker envelope: how a [`Message`] travels as bytes on RabbitMQ and Kafka.
//!
//! One JSON object per message (UTF-8), chosen over the cd: text line because every language's
//! AMQP and Kafka clients can produce and read it without a custom parser:
//!
//! ```json
//! {"v":1,"id":"01J...","command":"PING","to":"web01:agent","from":"srv:server",
//!  "params":{"n":"1"},"correlation":null,"hops":0,"trace":null,
//!  "mode":"at_least_once","ttl_ms":null,"report":false}
//! ```
//!
//! `v` must be 1; `to` is `node:service`, `service`, `.` or `*`; `params` values are strings.
//! Only `v`, `id`, `command`, `to` are required on input; the rest default. The body must be a
//! JSON object (not an array holding the fields in order, which serde alone would accept).
//!
//! # Compatibility (rolling upgrades)
//! Fields this release does not know are **ignored**, so a later release may add optional
//! fields and a fleet mixing it with this one keeps working while it is upgraded host by host.
//! A change an older reader must not ignore raises `v`; a reader refuses a `v` it does not
//! know with an error saying so (the broker backends park such a body with that reason), and
//! writers keep writing the version every release of the fleet reads. This release writes
//! `v: 1` with the fields of [`V1_FIELDS`] only (what every earlier release reads: those
//! refused unknown fields).
//! Decoding checks every field with the same rules as [`Message::validate`] and refuses
//! envelopes over the size limit or nested deeper than serde_json's recursion limit, with an
//! error naming what was wrong.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::address::{Address, Destination};
use crate::error::{Error, Invalid, Result};
use crate::message::{DeliveryMode, Message, MessageId, Params};

/// Envelope format version.
pub const ENVELOPE_VERSION: u32 = 1;

/// The fields of a version-1 envelope: all this release writes.
pub const V1_FIELDS: [&str; 12] = [
    "v",
    "id",
    "command",
    "to",
    "from",
    "params",
    "correlation",
    "hops",
    "trace",
    "mode",
    "ttl_ms",
    "report",
];

/// Content type to label envelopes with (AMQP `content-type`, Kafka header).
pub const CONTENT_TYPE: &str = "application/vnd.comms.envelope+json";

/// Unknown fields are ignored (see the module docs: compatibility).
#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    id: MessageId,
    command: String,
    to: Destination,
    #[serde(default)]
    from: Option<Address>,
    #[serde(default)]
    params: Params,
    #[serde(default)]
    correlation: Option<MessageId>,
    #[serde(default)]
    hops: u8,
    #[serde(default)]
    trace: Option<String>,
    #[serde(default)]
    mode: DeliveryMode,
    #[serde(default)]
    ttl_ms: Option<u64>,
    #[serde(default)]
    report: bool,
}

/// Encode a message as an envelope.
pub fn encode(msg: &Message) -> Result<Vec<u8>> {
    let wire = Wire {
        v: ENVELOPE_VERSION,
        id: msg.id.clone(),
        command: msg.command.clone(),
        to: msg.to.clone(),
        from: msg.from.clone(),
        params: msg.params.clone(),
        correlation: msg.correlation.clone(),
        hops: msg.hops,
        trace: msg.trace.clone(),
        mode: msg.mode,
        ttl_ms: msg
            .ttl
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        report: msg.report,
    };
    Ok(serde_json::to_vec(&wire)?)
}

/// Decode an envelope of at most `max_len` bytes. Every failure is an [`Error::Invalid`] or
/// [`Error::TooLarge`] that says what was wrong; no input panics.
pub fn decode(bytes: &[u8], max_len: usize) -> Result<Message> {
    if bytes.len() > max_len {
        return Err(Error::TooLarge {
            size: bytes.len(),
            max: max_len,
        });
    }
    // An object, nothing else: serde would also read a struct from a JSON array
    // (`[1,"id","CMD","svc"]`), a second, undocumented wire form.
    if bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        != Some(&b'{')
    {
        return Err(Error::invalid(
            "envelope",
            "not a comms envelope: expected a JSON object",
        ));
    }
    let wire: Wire = serde_json::from_slice(bytes)
        .map_err(|e| Invalid::new("envelope", format!("not a comms envelope: {e}")))?;
    if wire.v != ENVELOPE_VERSION {
        let why = if wire.v > ENVELOPE_VERSION {
            format!(
                "envelope version {} is newer than this release reads ({ENVELOPE_VERSION}): upgrade the receiver, or keep the sender's release writing version {ENVELOPE_VERSION}",
                wire.v
            )
        } else {
            format!(
                "envelope version {} is not supported (expected {ENVELOPE_VERSION})",
                wire.v
            )
        };
        return Err(Error::invalid("v", why));
    }
    let msg = Message {
        command: wire.command,
        to: wire.to,
        from: wire.from,
        params: wire.params,
        id: wire.id,
        correlation: wire.correlation,
        hops: wire.hops,
        trace: wire.trace,
        mode: wire.mode,
        ttl: wire.ttl_ms.map(Duration::from_millis),
        report: wire.report,
    };
    msg.validate()?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Scope;

    #[test]
    fn round_trip() {
        let mut m = Message::new("PING", Destination::Broadcast(Scope::Node))
            .unwrap()
            .with_param("a", "x;y\n\"z\"")
            .with_ttl(Duration::from_millis(1500), true);
        m.from = Some(Address::new("n", "s").unwrap());
        m.correlation = Some(MessageId::new());
        m.hops = 3;
        m.trace = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        let bytes = encode(&m).unwrap();
        assert_eq!(decode(&bytes, 1 << 20).unwrap(), m);
    }

    #[test]
    fn minimal_input_from_other_languages() {
        let m = decode(
            br#"{"v":1,"id":"abc-1","command":"HELLO","to":"svc"}"#,
            1024,
        )
        .unwrap();
        assert_eq!(m.command, "HELLO");
        assert_eq!(m.to, Destination::Service("svc".into()));
        assert_eq!(m.mode, DeliveryMode::AtLeastOnce);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "envelope"),
            (br#"{"v":2,"id":"a","command":"X","to":"s"}"#, "v"),
            (br#"{"v":1,"id":"a","command":"lower","to":"s"}"#, "command"),
            (br#"{"v":1,"id":"a b","command":"X","to":"s"}"#, "envelope"),
            (
                br#"{"v":1,"id":"a","command":"X","to":"s","params":{"comms_x":"1"}}"#,
                "comms_x",
            ),
            (b"\xff\xfe", "envelope"),
        ];
        for (input, field) in cases {
            match decode(input, 1024) {
                Err(Error::Invalid(i)) => assert_eq!(&i.field, field, "{i}"),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
            }
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(decode(deep.as_bytes(), 1 << 20).is_err());
        assert!(matches!(
            decode(&[b' '; 2000], 1024),
            Err(Error::TooLarge { .. })
        ));
    }
}
