//! For backend authors: what every [`Transport`](crate::Transport) implementation shares, so
//! that a backend keeps only what is its own (its connection, queues and mapping).
//!
//! - [`Binding`]: the closed flag, the identity bound by the first `advertise` (and its
//!   [`Error::IdentityConflict`] checks), the single `listen`, the checks and `from` stamping
//!   of `send`, and the whole of `forward` but the sending. Every backend embeds one.
//! - [`prepare_forward`]: a received message made ready for its next hop.
//! - [`service_unavailable_report`]: the `SERVICE_UNAVAILABLE` report a backend sends back to
//!   the sender of a message that found no consumer within its TTL (guarantee 3).
//! - [`MessageParts`]: a message built field by field off a wire; [`WireFields`]: setting the fields a transport owns (origin, id, hops), which a service
//!   only reads.
//! - [`Acker`], [`NoAck`], [`DEFAULT_HOP_LIMIT`]: the settling side of a
//!   [`Delivery`](crate::Delivery) and the default hop limit (also in [`crate::transport`]).

mod binding;

pub use crate::transport::{Acker, NoAck, DEFAULT_HOP_LIMIT};
pub use binding::Binding;

use crate::address::{Address, Destination};
use crate::error::{Error, Result};
use crate::message::{commands, DeliveryMode, Message, MessageId, Params};
use std::time::Duration;

/// Every field of a [`Message`], public: what a backend decoding its wire builds the message
/// from ([`MessageParts::into_message`]), without the checks of [`Message::new`] (the receiving
/// endpoint validates what it is handed).
#[derive(Debug, Clone)]
#[allow(missing_docs)] // the fields are those of `Message`
pub struct MessageParts {
    pub command: String,
    pub to: Destination,
    pub from: Option<Address>,
    pub params: Params,
    pub id: MessageId,
    pub correlation: Option<MessageId>,
    pub hops: u8,
    pub trace: Option<String>,
    pub mode: DeliveryMode,
    pub ttl: Option<Duration>,
    pub report: bool,
}

impl MessageParts {
    /// The message. (Not a `From` impl: `Message::from` is the origin's getter.)
    pub fn into_message(self) -> Message {
        let p = self;
        Message {
            command: p.command,
            to: p.to,
            from: p.from,
            params: p.params,
            id: p.id,
            correlation: p.correlation,
            hops: p.hops,
            trace: p.trace,
            mode: p.mode,
            ttl: p.ttl,
            report: p.report,
        }
    }
}

/// Setting the fields of a [`Message`] that the transport owns and a service only reads
/// ([`Message::from`], [`Message::id`], [`Message::hops`]): for a backend that decodes a message
/// off its wire or stamps one it sends.
pub trait WireFields {
    /// Set the origin.
    fn set_from(&mut self, from: Option<Address>);
    /// Set the id (a message decoded off a wire keeps the id it was sent with).
    fn set_id(&mut self, id: MessageId);
    /// Set the hop count.
    fn set_hops(&mut self, hops: u8);
}

impl WireFields for Message {
    fn set_from(&mut self, from: Option<Address>) {
        self.from = from;
    }

    fn set_id(&mut self, id: MessageId) {
        self.id = id;
    }

    fn set_hops(&mut self, hops: u8) {
        self.hops = hops;
    }
}

/// Prepare a message for [`Transport::forward`](crate::Transport::forward): new destination,
/// `hops + 1`, `from` and `id` kept. Fails with [`Error::HopLimit`] when the hop limit would be
/// passed.
pub fn prepare_forward(mut msg: Message, to: Destination, hop_limit: u8) -> Result<Message> {
    if msg.hops >= hop_limit {
        return Err(Error::HopLimit {
            limit: hop_limit,
            id: msg.id.to_string(),
        });
    }
    to.validate()?;
    msg.hops += 1;
    msg.to = to;
    Ok(msg)
}

/// The `SERVICE_UNAVAILABLE` report for `expired` (a message that asked for a report and found
/// no consumer within its TTL), to its sender `origin`: correlated to the message, with the
/// parameters `destination_service` (where it was going) and `unsent_command`; `from` is the
/// backend's `reporter` (a broker or hub address, none when it cannot be named).
pub fn service_unavailable_report(
    expired: &Message,
    origin: Address,
    reporter: Option<Address>,
) -> Result<Message> {
    let mut report = Message::new(commands::SERVICE_UNAVAILABLE, origin)?;
    report.correlation = Some(expired.id.clone());
    report.from = reporter;
    report
        .params
        .insert("destination_service".into(), expired.to.to_string());
    report
        .params
        .insert("unsent_command".into(), expired.command.clone());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Scope;

    #[test]
    fn forward_keeps_origin_and_counts_hops() {
        let mut m = Message::new("X", Destination::Service("a".into())).unwrap();
        m.from = Some(Address::new("n", "s").unwrap());
        let id = m.id.clone();
        let f = prepare_forward(m, Destination::Broadcast(Scope::All), 2).unwrap();
        assert_eq!((f.hops, &f.id), (1, &id));
        assert_eq!(
            f.from.as_ref().map(|a| a.to_string()),
            Some("n:s".to_owned())
        );
        let f = prepare_forward(f, Destination::Service("b".into()), 2).unwrap();
        let e = prepare_forward(f, Destination::Service("c".into()), 2).unwrap_err();
        assert!(matches!(e, Error::HopLimit { limit: 2, .. }));
    }

    #[test]
    fn the_report_names_what_was_not_sent() {
        let origin = Address::new("n", "sender").unwrap();
        let mut m = Message::new("WORK", Destination::Service("gone".into())).unwrap();
        m.from = Some(origin.clone());
        let hub = Address::new("memory", "hub").ok();
        let r = service_unavailable_report(&m, origin.clone(), hub.clone()).unwrap();
        assert_eq!(r.command, commands::SERVICE_UNAVAILABLE);
        assert_eq!(r.to, Destination::Instance(origin));
        assert_eq!((r.correlation.as_ref(), &r.from), (Some(&m.id), &hub));
        assert_eq!(r.param("destination_service"), Some("gone"));
        assert_eq!(r.param("unsent_command"), Some("WORK"));
    }
}
