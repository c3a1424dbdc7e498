//! Message ↔ cd: line, as `docs/NATIVE.md` maps them.
//!
//! | comms | cd: |
//! |---|---|
//! | `Instance(node:svc)` / `Service(svc)` / `Broadcast(Node)` / `Broadcast(All)` | `node:svc/CMD` / `svc/CMD` / `./CMD` / `*/CMD` |
//! | `from` | the daemon's stamp `<node:service ` (a forward carries the origin in `comms_from`) |
//! | `id`, `correlation`, `hops` (> 0), `trace`, at-most-once | `comms_id`, `comms_corr`, `comms_hops`, `comms_trace`, `comms_amo=1` |
//! | `ttl` / `report` | `cache="ttl=N"` / `cache="ttl=N;reply"` (N whole seconds, rounded up, 1–86400) |
//!
//! End-to-end parameters of this transport (see [`super`]): `comms_seq=EPOCH.STREAM.N`,
//! `comms_base=B`, `comms_last=1`, and the `COMMS_ACK comms_ack=EPOCH.STREAM:RANGES` line.
//!
//! A line without `comms_id` comes from a stock Communicator service (or the daemon): it gets
//! a fresh id and is delivered at-most-once (nothing to acknowledge).

use std::time::Duration;

use comms_core::backend::MessageParts;
use comms_core::{Address, DeliveryMode, Destination, Message, MessageId, Params, Scope};

use std::borrow::Cow;

use cd_wire::{WireMessage, WireView};

/// `comms_id`: the message id.
pub const P_ID: &str = "comms_id";
/// `comms_corr`: the id a reply answers.
pub const P_CORR: &str = "comms_corr";
/// `comms_hops`: forward count, when > 0.
pub const P_HOPS: &str = "comms_hops";
/// `comms_from`: the origin of a forwarded message.
pub const P_FROM: &str = "comms_from";
/// `comms_trace`: W3C traceparent.
pub const P_TRACE: &str = "comms_trace";
/// `comms_amo=1`: at-most-once.
pub const P_AMO: &str = "comms_amo";
/// `comms_seq=EPOCH.STREAM.N`: position in the sender's stream to one destination.
pub const P_SEQ: &str = "comms_seq";
/// `comms_base=B`: every N below B of that stream is acknowledged (the sender forgot it).
pub const P_BASE: &str = "comms_base";
/// `comms_last=1`: the last position of its stream (acknowledge it without waiting).
pub const P_LAST: &str = "comms_last";
/// `comms_ack=EPOCH.STREAM:RANGES` on a [`ACK_COMMAND`] line.
pub const P_ACK: &str = "comms_ack";
/// The Communicator's cache parameter (TTL and failure report).
pub const P_CACHE: &str = "cache";
/// The acknowledgement command, declared by every native transport.
pub const ACK_COMMAND: &str = "COMMS_ACK";
/// Longest cache TTL the daemon accepts.
pub const MAX_CACHE_TTL_SECS: u64 = 86_400;

/// A line for `msg`. `origin` is set for forwards (kept in `comms_from`).
pub fn to_wire(msg: &Message, origin: Option<&Address>) -> WireMessage {
    let mut w = WireMessage::new(msg.command.clone());
    match &msg.to {
        Destination::Instance(a) => {
            w.server = a.node().to_owned();
            w.service = a.service().to_owned();
        }
        Destination::Service(s) => w.service = s.clone(),
        Destination::Broadcast(Scope::Node) => w.service = ".".into(),
        Destination::Broadcast(Scope::All) => w.service = "*".into(),
    }
    w.params = msg.params.clone();
    w.params.insert(P_ID.into(), msg.id().to_string());
    if let Some(c) = &msg.correlation {
        w.params.insert(P_CORR.into(), c.to_string());
    }
    if msg.hops() > 0 {
        w.params.insert(P_HOPS.into(), msg.hops().to_string());
    }
    if let Some(o) = origin {
        w.params.insert(P_FROM.into(), o.to_string());
    }
    if let Some(t) = &msg.trace {
        w.params.insert(P_TRACE.into(), t.clone());
    }
    if msg.mode == DeliveryMode::AtMostOnce {
        w.params.insert(P_AMO.into(), "1".into());
    }
    if let Some(cache) = cache_param(msg) {
        w.params.insert(P_CACHE.into(), cache);
    }
    w
}

/// The `cache` parameter for a message's TTL / failure report, if it has either: `ttl=N` or
/// `ttl=N;reply` (N whole seconds, rounded up, 1–86400; 60 when only a report is asked).
pub fn cache_param(msg: &Message) -> Option<String> {
    if msg.ttl.is_none() && !msg.report {
        return None;
    }
    let secs = msg
        .ttl
        .map(|t| t.as_secs() + u64::from(t.subsec_nanos() > 0))
        .unwrap_or(60)
        .clamp(1, MAX_CACHE_TTL_SECS);
    Some(if msg.report {
        format!("ttl={secs};reply")
    } else {
        format!("ttl={secs}")
    })
}

/// The key of a destination for per-destination streams (`node:svc`, `svc`, `.`, `*`).
pub fn destination_key(to: &Destination) -> &str {
    match to {
        Destination::Instance(a) => a.as_str(),
        Destination::Service(s) => s,
        Destination::Broadcast(Scope::Node) => ".",
        Destination::Broadcast(Scope::All) => "*",
    }
}

/// Where a `comms_seq` puts a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqInfo {
    /// The sending transport's epoch.
    pub epoch: String,
    /// The sender's stream number (one per destination).
    pub stream: u64,
    /// Position in the stream, from 1.
    pub n: u64,
    /// Every position below this one is acknowledged.
    pub base: u64,
    /// The stream's last position (`comms_last=1`).
    pub last: bool,
}

/// Parse `EPOCH.STREAM.N`.
pub fn parse_seq(seq: &str, base: Option<&str>) -> Option<SeqInfo> {
    let mut it = seq.rsplitn(3, '.');
    let n = it.next()?.parse().ok()?;
    let stream = it.next()?.parse().ok()?;
    let epoch = it.next()?.to_owned();
    let base = base.and_then(|b| b.parse().ok()).unwrap_or(n);
    Some(SeqInfo {
        epoch,
        stream,
        n,
        base: base.min(n),
        last: false,
    })
}

/// The envelope parameters [`from_wire`] reads, in the order it destructures them.
const ENVELOPE: [&str; 9] = [
    P_ID, P_CORR, P_HOPS, P_FROM, P_TRACE, P_AMO, P_SEQ, P_BASE, P_LAST,
];

/// A received line, decoded.
#[derive(Debug)]
pub struct Inbound {
    /// The message as handlers see it.
    pub message: Message,
    /// The transport-level sender (the daemon's stamp), which acknowledgements go to.
    pub stamp: Option<Address>,
    /// Present on at-least-once messages from a native transport.
    pub seq: Option<SeqInfo>,
    /// True when the line had no `comms_id` (a stock service or the daemon).
    pub stock: bool,
}

/// Decode a received line. `local` is our own address (destination of lines without one).
pub fn from_wire(w: WireMessage, local: &Address) -> Inbound {
    let WireMessage {
        sent_from_server,
        sent_from_service,
        server,
        service,
        command,
        params,
    } = w;
    let head = Head {
        sent_from_server: &sent_from_server,
        sent_from_service: &sent_from_service,
        server: &server,
        service: &service,
    };
    let params = params
        .into_iter()
        .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)));
    decode(&head, Cow::Owned(command), params, local, &mut None)
}

/// Decode a line parsed in place ([`cd_wire::parse_view`]): only what the message keeps
/// is copied. `last_stamp` keeps the previous line's sender (reused when the next line has the same one).
pub fn from_view(v: &WireView<'_>, local: &Address, last_stamp: &mut Option<Address>) -> Inbound {
    let head = Head {
        sent_from_server: v.sent_from_server,
        sent_from_service: v.sent_from_service,
        server: v.server,
        service: v.service,
    };
    let params = v.params().map(|(k, v)| (Cow::Borrowed(k), v));
    decode(&head, Cow::Borrowed(v.command), params, local, last_stamp)
}

/// `node:service`, sharing `last` when it is the same address (consecutive lines mostly come
/// from one sender): no allocation then. `last` becomes this address.
fn stamp_address(node: &str, service: &str, last: &mut Option<Address>) -> Option<Address> {
    if let Some(a) = last {
        if a.node() == node && a.service() == service {
            return Some(a.clone());
        }
    }
    let a = Address::new(node, service).ok()?;
    *last = Some(a.clone());
    Some(a)
}

/// The head of a received line.
struct Head<'h> {
    sent_from_server: &'h str,
    sent_from_service: &'h str,
    server: &'h str,
    service: &'h str,
}

/// The one decoder behind [`from_wire`] and [`from_view`]: every `comms_*` parameter is taken
/// out in the same pass (ours, never shown to a handler); a repeated name counts once, the
/// last one, as in a parsed [`WireMessage`].
fn decode<'a>(
    head: &Head<'_>,
    command: Cow<'a, str>,
    params: impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
    local: &Address,
    last_stamp: &mut Option<Address>,
) -> Inbound {
    let stamp = stamp_address(head.sent_from_server, head.sent_from_service, last_stamp);
    let mut env: [Option<Cow<'a, str>>; ENVELOPE.len()] = Default::default();
    let mut cache = None;
    let mut user = Params::new();
    for (k, v) in params {
        if k.starts_with(comms_core::message::RESERVED_PARAM_PREFIX) {
            if let Some(i) = ENVELOPE.iter().position(|e| *e == k) {
                env[i] = Some(v);
            }
        } else if k == P_CACHE {
            cache = Some(v);
        } else {
            user.insert(k.into_owned(), v.into_owned());
        }
    }
    let [id, correlation, hops, origin, trace, amo, seq, base, last] = env;
    let stock = id.is_none();
    let id = id.and_then(|i| i.parse().ok()).unwrap_or_default();
    let correlation = correlation.and_then(|c| c.parse::<MessageId>().ok());
    let hops = hops.and_then(|h| h.parse().ok()).unwrap_or(0);
    let origin = origin.and_then(|f| f.parse::<Address>().ok());
    let amo = amo.is_some();
    let last = last.is_some_and(|v| v == "1");
    let seq = seq
        .and_then(|s| parse_seq(&s, base.as_deref()))
        .map(|s| SeqInfo { last, ..s });
    let (mut ttl, mut report) = (None, false);
    // A stock service's `cache` is its own parameter: only ours is read and removed.
    match cache {
        Some(cache) if !stock => {
            for part in cache.split(';') {
                if part == "reply" {
                    report = true;
                } else if let Some(n) = part.strip_prefix("ttl=").and_then(|n| n.parse().ok()) {
                    ttl = Some(Duration::from_secs(n));
                }
            }
        }
        Some(cache) => {
            user.insert(P_CACHE.to_owned(), cache.into_owned());
        }
        None => {}
    }
    let (server, service) = (head.server, head.service);
    let to = match service {
        "." => Destination::Broadcast(Scope::Node),
        "*" | "?" => Destination::Broadcast(Scope::All),
        "" => Destination::Instance(local.clone()),
        _ if server.is_empty() => Destination::Service(service.to_owned()),
        _ if server == local.node() && service == local.service() => {
            Destination::Instance(local.clone())
        }
        _ => match Address::new(server, service) {
            Ok(a) => Destination::Instance(a),
            Err(_) => Destination::Service(service.to_owned()),
        },
    };
    let mode = if amo || stock || seq.is_none() {
        DeliveryMode::AtMostOnce
    } else {
        DeliveryMode::AtLeastOnce
    };
    let message = MessageParts {
        command: command.into_owned(),
        to,
        from: origin.or_else(|| stamp.clone()),
        params: user,
        id,
        correlation,
        hops,
        trace: trace.map(Cow::into_owned),
        mode,
        ttl,
        report,
    }
    .into_message();
    Inbound {
        message,
        stamp,
        seq: if mode == DeliveryMode::AtLeastOnce {
            seq
        } else {
            None
        },
        stock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comms_core::backend::WireFields;

    #[test]
    fn round_trip() {
        let a = Address::new("vm", "a").unwrap();
        let b = Address::new("vm", "b").unwrap();
        let mut m = Message::new("DATA", b.clone())
            .unwrap()
            .with_param("x", "a;b")
            .with_ttl(Duration::from_millis(1500), true);
        m.set_hops(2);
        m.correlation = Some(MessageId::new());
        m.trace = Some("00-abc-def-01".into());
        let origin = Address::new("vm", "origin").unwrap();
        let mut w = to_wire(&m, Some(&origin));
        assert_eq!(w.param(P_CACHE), Some("ttl=2;reply"));
        assert_eq!((w.server.as_str(), w.service.as_str()), ("vm", "b"));
        w.params.insert(P_SEQ.into(), "ep1.3.7".into());
        w.params.insert(P_BASE.into(), "5".into());
        let line = w.to_line().unwrap();
        let mut back: WireMessage = format!("<vm:fwd {line}").parse().unwrap();
        back.sent_from_server = "vm".into();
        let got = from_wire(back, &b);
        assert_eq!(got.message.from(), Some(&origin));
        assert_eq!(got.stamp, Some(Address::new("vm", "fwd").unwrap()));
        assert_eq!(got.message.id(), m.id());
        assert_eq!(got.message.correlation, m.correlation);
        assert_eq!(got.message.hops(), 2);
        assert_eq!(got.message.params, m.params);
        assert_eq!(got.message.to, Destination::Instance(b));
        assert_eq!(got.message.mode, DeliveryMode::AtLeastOnce);
        assert_eq!(got.message.ttl, Some(Duration::from_secs(2)));
        assert!(got.message.report);
        assert_eq!(
            got.seq,
            Some(SeqInfo {
                epoch: "ep1".into(),
                stream: 3,
                n: 7,
                base: 5,
                last: false,
            })
        );
        let _ = a;
    }

    #[test]
    fn stock_lines_are_at_most_once_with_an_id() {
        let me = Address::new("vm", "me").unwrap();
        let w: WireMessage = "<vm:stock me/PING n=1;cache=no".parse().unwrap();
        let got = from_wire(w, &me);
        assert!(got.stock);
        assert_eq!(got.message.mode, DeliveryMode::AtMostOnce);
        assert_eq!(got.message.param("cache"), Some("no"));
        assert_eq!(
            got.message.from(),
            Some(&Address::new("vm", "stock").unwrap())
        );
        assert_eq!(got.message.to, Destination::Service("me".into()));
        assert!(got.seq.is_none());
    }
}
