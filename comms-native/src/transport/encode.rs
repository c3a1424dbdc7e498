//! A [`Message`] straight to its cd: line, serialized once ([`Encoded`]).
//!
//! The same bytes [`super::mapping::to_wire`] + [`cd_wire::serialize`] write (parameters
//! byte-sorted, canonically escaped, so the daemon copies them verbatim), without building a
//! [`WireMessage`](cd_wire::WireMessage): the message's parameters and the `comms_*`
//! envelope parameters are merged in name order as they are written.
//!
//! The outbox keeps the [`Encoded`] form as its copy of an at-least-once message and writes
//! it with `comms_base`, `comms_last` and `comms_seq` spliced in at their sorted places
//! ([`Encoded::line`]), so a (re)send costs one copy of the bytes, not a cloned message.

use std::borrow::Cow;

use bytes::Bytes;

use comms_core::{Address, DeliveryMode, Destination, Message, Scope};

use super::mapping::{
    P_AMO, P_BASE, P_CACHE, P_CORR, P_FROM, P_HOPS, P_ID, P_LAST, P_SEQ, P_TRACE,
};
use cd_wire::is_valid_name;
use cd_wire::raw::{validate_address, validate_command, write_address, write_value};
use cd_wire::SerializeError;

/// A message serialized once: the head, then every parameter as `;name=value`, and where the
/// three sequence parameters go. See the module docs.
#[derive(Debug, Clone)]
pub struct Encoded {
    bytes: Vec<u8>,
    /// Where the parameters start (the end of `[[server:]service/]COMMAND`).
    params_at: usize,
    /// Insertion points of `comms_base`, `comms_last`, `comms_seq` (ascending).
    slots: [usize; 3],
}

/// Values of the sequence parameters for one write of an [`Encoded`] line.
#[derive(Debug, Clone, Copy)]
pub struct Seq<'a> {
    /// The sender transport's epoch.
    pub epoch: &'a str,
    /// Stream number.
    pub stream: u64,
    /// Position in the stream.
    pub n: u64,
    /// Lowest position still held.
    pub base: u64,
    /// The stream's last position (`comms_last=1`).
    pub last: bool,
}

/// The sequence parameters, in byte order (the order of [`Encoded::slots`]).
const SLOT_NAMES: [&str; 3] = [P_BASE, P_LAST, P_SEQ];

impl Encoded {
    /// Serialize `msg` (`origin`: set for forwards, kept in `comms_from`). Fails, writing
    /// nothing, on what [`WireMessage::validate`](cd_wire::WireMessage::validate) refuses.
    pub fn new(msg: &Message, origin: Option<&Address>) -> Result<Self, SerializeError> {
        let (server, service) = match &msg.to {
            Destination::Instance(a) => (a.node(), a.service()),
            Destination::Service(s) => ("", s.as_str()),
            Destination::Broadcast(Scope::Node) => ("", "."),
            Destination::Broadcast(Scope::All) => ("", "*"),
        };
        validate_command(&msg.command)?;
        validate_address("server", server)?;
        validate_address("service", service)?;
        let mut ours = envelope(msg, origin);
        ours.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut bytes = Vec::with_capacity(64 + msg.payload_size() + 8 * ours.len());
        write_address(server, service, &msg.command, &mut bytes);
        let params_at = bytes.len();
        let mut slots = [usize::MAX; 3];
        let mut ours = ours.into_iter().peekable();
        let mut theirs = msg
            .params
            .iter()
            .filter(|(k, _)| !is_envelope_name(k, msg, origin))
            .peekable();
        loop {
            let take_ours = match (ours.peek(), theirs.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((a, _)), Some((b, _))) => *a < b.as_str(),
            };
            if take_ours {
                if let Some((k, v)) = ours.next() {
                    put_param(&mut bytes, &mut slots, k, &v)?;
                }
            } else if let Some((k, v)) = theirs.next() {
                put_param(&mut bytes, &mut slots, k, v)?;
            }
        }
        let end = bytes.len();
        for s in &mut slots {
            if *s == usize::MAX {
                *s = end;
            }
        }
        Ok(Self {
            bytes,
            params_at,
            slots,
        })
    }

    /// The line (with `\n`) without sequence parameters: at-most-once, broadcasts, stock peers.
    pub fn plain(mut self) -> Bytes {
        if self.bytes.len() > self.params_at {
            self.bytes[self.params_at] = b' ';
        }
        self.bytes.push(b'\n');
        Bytes::from(self.bytes)
    }

    /// The line (with `\n`) carrying `seq`, the parameters in byte order.
    pub fn line(&self, seq: &Seq<'_>) -> Bytes {
        let mut out = Vec::with_capacity(self.bytes.len() + seq.epoch.len() + 80);
        let b = &self.bytes;
        let [base_at, last_at, seq_at] = self.slots;
        out.extend_from_slice(&b[..base_at]);
        out.extend_from_slice(b";comms_base=");
        push_u64(&mut out, seq.base);
        out.extend_from_slice(&b[base_at..last_at]);
        if seq.last {
            out.extend_from_slice(b";comms_last=1");
        }
        out.extend_from_slice(&b[last_at..seq_at]);
        out.extend_from_slice(b";comms_seq=");
        out.extend_from_slice(seq.epoch.as_bytes());
        out.push(b'.');
        push_u64(&mut out, seq.stream);
        out.push(b'.');
        push_u64(&mut out, seq.n);
        out.extend_from_slice(&b[seq_at..]);
        // There is at least one parameter (comms_base): its separator is the space.
        out[self.params_at] = b' ';
        out.push(b'\n');
        Bytes::from(out)
    }
}

/// `v` in decimal, without a heap allocation.
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes `;name=value`, first recording the sequence slots that sort before `name`.
fn put_param(
    out: &mut Vec<u8>,
    slots: &mut [usize; 3],
    name: &str,
    value: &str,
) -> Result<(), SerializeError> {
    if !is_valid_name(name) {
        return Err(SerializeError::InvalidParamName(name.to_owned()));
    }
    if value.as_bytes().contains(&0) {
        return Err(SerializeError::NulInValue(name.to_owned()));
    }
    for (slot, slot_name) in slots.iter_mut().zip(SLOT_NAMES) {
        if *slot == usize::MAX && slot_name < name {
            *slot = out.len();
        }
    }
    out.push(b';');
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    write_value(value, out);
    Ok(())
}

/// The `comms_*` envelope parameters of `msg`, as [`super::mapping::to_wire`] sets them.
fn envelope<'a>(msg: &'a Message, origin: Option<&Address>) -> Vec<(&'static str, Cow<'a, str>)> {
    let mut v = Vec::with_capacity(4);
    v.push((P_ID, Cow::Borrowed(msg.id().as_str())));
    if let Some(c) = &msg.correlation {
        v.push((P_CORR, Cow::Borrowed(c.as_str())));
    }
    if msg.hops() > 0 {
        v.push((P_HOPS, Cow::Owned(msg.hops().to_string())));
    }
    if let Some(o) = origin {
        v.push((P_FROM, Cow::Owned(o.to_string())));
    }
    if let Some(t) = &msg.trace {
        v.push((P_TRACE, Cow::Borrowed(t.as_str())));
    }
    if msg.mode == DeliveryMode::AtMostOnce {
        v.push((P_AMO, Cow::Borrowed("1")));
    }
    if let Some(cache) = super::mapping::cache_param(msg) {
        v.push((P_CACHE, Cow::Owned(cache)));
    }
    v
}

/// Whether a parameter of the message is replaced by an envelope or sequence parameter (as
/// `to_wire` and the outbox overwrite them; `send` refuses `comms_*` names anyway).
fn is_envelope_name(name: &str, msg: &Message, origin: Option<&Address>) -> bool {
    match name {
        P_ID | P_SEQ | P_BASE | P_LAST => true,
        P_CORR => msg.correlation.is_some(),
        P_HOPS => msg.hops() > 0,
        P_FROM => origin.is_some(),
        P_TRACE => msg.trace.is_some(),
        P_AMO => msg.mode == DeliveryMode::AtMostOnce,
        P_CACHE => msg.ttl.is_some() || msg.report,
        _ => false,
    }
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
