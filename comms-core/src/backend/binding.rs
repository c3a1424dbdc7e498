//! [`Binding`]: the bookkeeping every transport does the same way — the closed flag, the
//! identity bound by the first `advertise`, the single `listen`, and the checks and stamping
//! of `send` and `forward`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::address::{Address, Destination};
use crate::advertisement::Advertisement;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::receipt::{Receipt, Settle};
use crate::stats::TransportStats;
use crate::transport::Delivery;

use super::prepare_forward;

/// The identity and lifecycle state of one transport. A backend embeds one and calls it at
/// the top of each [`Transport`](crate::Transport) method, so that every backend answers the
/// same misuse with the same error:
///
/// | call | checks, in order |
/// |---|---|
/// | [`Binding::bind`] (`advertise`) | open; the advertisement is valid; its node is this transport's; the address is the bound one (or binds it) |
/// | [`Binding::start_listening`] (`listen`) | open; advertised; first `listen` |
/// | [`Binding::prepare_send`] (`send`) | open; the message is valid and within the size limit; stamps `from` |
/// | [`Binding::forward`] (`forward`) | open; hop limit ([`prepare_forward`]); acknowledges the original |
#[derive(Debug)]
pub struct Binding {
    node: String,
    bound: Mutex<Option<Address>>,
    listening: AtomicBool,
    closed: AtomicBool,
    stats: Arc<TransportStats>,
}

impl Binding {
    /// An open, unbound transport whose endpoints live on `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            bound: Mutex::new(None),
            listening: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stats: Arc::default(),
        }
    }

    /// The node name endpoints of this transport must advertise.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// This transport's counters ([`Transport::stats`](crate::Transport::stats) returns them).
    pub fn stats(&self) -> &Arc<TransportStats> {
        &self.stats
    }

    /// Counts one message whose outcome `send` returns: sent, then acknowledged or failed.
    pub fn counted(&self, outcome: Result<()>) -> Result<()> {
        self.stats.count(outcome.is_ok());
        outcome
    }

    /// A pending receipt counted in this transport's stats ([`Receipt::pending_in`]).
    pub fn receipt(&self) -> (Settle, Receipt) {
        Receipt::pending_in(Some(self.stats.clone()))
    }

    /// [`Error::Closed`] once [`Binding::close`] was called.
    pub fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Mark the transport closed; true for the call that closed it (later ones: false).
    pub fn close(&self) -> bool {
        !self.closed.swap(true, Ordering::SeqCst)
    }

    /// The bound address, once advertised.
    pub fn address(&self) -> Option<Address> {
        self.lock().clone()
    }

    /// The bound address, or [`Error::NotAdvertised`].
    pub fn require_address(&self) -> Result<Address> {
        self.address().ok_or(Error::NotAdvertised)
    }

    /// The checks of `advertise`, and the binding: true when this call bound the address (the
    /// first advertisement), false for a heartbeat of the bound one.
    /// [`Error::IdentityConflict`] for another node than this transport's, or another address
    /// than the bound one.
    pub fn bind(&self, ad: &Advertisement) -> Result<bool> {
        self.check_open()?;
        ad.validate()?;
        if ad.address.node() != self.node {
            return Err(Error::IdentityConflict {
                bound: format!("node {}", self.node),
                requested: ad.address.to_string(),
            });
        }
        let mut bound = self.lock();
        match &*bound {
            Some(b) if b != &ad.address => Err(Error::IdentityConflict {
                bound: b.to_string(),
                requested: ad.address.to_string(),
            }),
            Some(_) => Ok(false),
            None => {
                *bound = Some(ad.address.clone());
                Ok(true)
            }
        }
    }

    /// Forget the bound address (a first `advertise` that failed after [`Binding::bind`]):
    /// the next `advertise` binds again.
    pub fn unbind(&self) {
        *self.lock() = None;
    }

    /// The checks of `listen`: open, advertised ([`Error::NotAdvertised`]) and the first call
    /// ([`Error::AlreadyListening`]). The address to listen as.
    pub fn start_listening(&self) -> Result<Address> {
        self.check_open()?;
        let address = self.require_address()?;
        if self.listening.swap(true, Ordering::SeqCst) {
            return Err(Error::AlreadyListening);
        }
        Ok(address)
    }

    /// The checks of `send` for a backend that does not stamp `from` itself: open, valid,
    /// payload within `max_size` ([`Error::TooLarge`]).
    pub fn check_message(&self, msg: &Message, max_size: usize) -> Result<()> {
        self.check_open()?;
        msg.validate()?;
        msg.check_size(max_size)
    }

    /// The checks of `send` ([`Binding::check_message`]), then `from` stamped with the bound
    /// address ([`Error::NotAdvertised`] before the first `advertise`).
    pub fn prepare_send(&self, mut msg: Message, max_size: usize) -> Result<Message> {
        self.check_message(&msg, max_size)?;
        msg.from = Some(self.require_address()?);
        Ok(msg)
    }

    /// The whole of `forward` but the sending: check open, prepare the message
    /// ([`prepare_forward`]: `from` and `id` kept, `hops + 1`), hand it to `send`, and
    /// acknowledge the original once `send` accepted it. Past the hop limit the original is
    /// acknowledged (dropped) and [`Error::HopLimit`] returned; when `send` fails the original
    /// is left unsettled (its acker's drop puts it back).
    pub async fn forward<F, Fut>(
        &self,
        delivery: Delivery,
        to: Destination,
        hop_limit: u8,
        send: F,
    ) -> Result<()>
    where
        F: FnOnce(Message) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        self.check_open()?;
        let (msg, acker) = delivery.into_parts();
        match prepare_forward(msg, to, hop_limit) {
            Ok(fwd) => {
                send(fwd).await?;
                acker.ack().await
            }
            Err(e) => {
                acker.ack().await?;
                Err(e)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Address>> {
        self.bound.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::NoAck;

    fn ad(node: &str, service: &str) -> Advertisement {
        Advertisement::new(Address::new(node, service).unwrap(), ["PING"])
    }

    #[test]
    fn the_first_advertisement_binds() {
        let b = Binding::new("n1");
        assert!(matches!(b.start_listening(), Err(Error::NotAdvertised)));
        assert!(b.bind(&ad("n1", "a")).unwrap());
        assert!(!b.bind(&ad("n1", "a")).unwrap());
        let other = b.bind(&ad("n1", "b")).unwrap_err();
        assert!(matches!(other, Error::IdentityConflict { ref bound, .. } if bound == "n1:a"));
        let node = b.bind(&ad("n2", "a")).unwrap_err();
        assert!(matches!(node, Error::IdentityConflict { ref bound, .. } if bound == "node n1"));
        assert_eq!(b.start_listening().unwrap().to_string(), "n1:a");
        assert!(matches!(b.start_listening(), Err(Error::AlreadyListening)));
        b.unbind();
        assert!(b.bind(&ad("n1", "b")).unwrap());
    }

    #[test]
    fn send_checks_and_stamps() {
        let b = Binding::new("n1");
        let msg = || Message::new("PING", Destination::Service("s".into())).unwrap();
        assert!(matches!(
            b.prepare_send(msg(), 1024),
            Err(Error::NotAdvertised)
        ));
        b.bind(&ad("n1", "a")).unwrap();
        let sent = b.prepare_send(msg(), 1024).unwrap();
        assert_eq!(sent.from, Some(Address::new("n1", "a").unwrap()));
        let big = msg().with_param("x", "y".repeat(64));
        assert!(matches!(
            b.prepare_send(big, 16),
            Err(Error::TooLarge { .. })
        ));
        assert!(b.close());
        assert!(!b.close());
        assert!(matches!(b.prepare_send(msg(), 1024), Err(Error::Closed)));
        assert!(matches!(b.bind(&ad("n1", "a")), Err(Error::Closed)));
    }

    #[tokio::test]
    async fn forward_acks_the_original_past_the_hop_limit() {
        let b = Binding::new("n1");
        let mut m = Message::new("PING", Destination::Service("s".into())).unwrap();
        m.hops = 2;
        let delivery = Delivery::new(m, false, Box::new(NoAck));
        let to = Destination::Service("t".into());
        let r = b.forward(delivery, to, 2, |_| async { Ok(()) }).await;
        assert!(matches!(r, Err(Error::HopLimit { limit: 2, .. })));
        let delivery = Delivery::new(
            Message::new("PING", Destination::Service("s".into())).unwrap(),
            false,
            Box::new(NoAck),
        );
        let mut seen = None;
        b.forward(delivery, Destination::Service("t".into()), 2, |fwd| {
            seen = Some(fwd.hops);
            async { Ok(()) }
        })
        .await
        .unwrap();
        assert_eq!(seen, Some(1));
    }
}
