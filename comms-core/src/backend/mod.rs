//! For backend authors: what every [`Transport`](crate::Transport) implementation shares, so
//! that a backend keeps only what is its own (its connection, queues and mapping).
//!
//! - [`Binding`]: the closed flag, the identity bound by the first `advertise` (and its
//!   [`Error::IdentityConflict`] checks), the single `listen`, the checks and `from` stamping
//!   of `send`, and the whole of `forward` but the sending. Every backend embeds one.
//! - [`prepare_forward`]: a received message made ready for its next hop.
//! - [`service_unavailable_report`]: the `SERVICE_UNAVAILABLE` report a backend sends back to
//!   the sender of a message that found no consumer within its TTL (guarantee 3).
//! - [`Acker`], [`NoAck`], [`DEFAULT_HOP_LIMIT`]: the settling side of a
//!   [`Delivery`](crate::Delivery) and the default hop limit (also in [`crate::transport`]).

mod binding;

pub use crate::transport::{Acker, NoAck, DEFAULT_HOP_LIMIT};
pub use binding::Binding;

use crate::address::{Address, Destination};
use crate::error::{Error, Result};
use crate::message::{commands, Message};

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
