//! A deliberately broken transport, to prove the conformance suite catches broken guarantees.
//!
//! [`FaultyBackend`] wraps the memory backend and breaks one guarantee at a time
//! ([`Fault`]); `tests/tests/suite_catches_faults.rs` asserts that the cases guarding that
//! guarantee fail. A suite that passed these would be a suite that cannot fail.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use comms_conformance::Backend;
use comms_core::backend::WireFields;
use comms_core::transport::{Acker, NoAck};
use comms_core::{
    commands, Address, Advertisement, Capabilities, Delivery, DeliveryMode, Destination, Inbox,
    Message, Result, Transport,
};
use tokio::sync::mpsc;

use crate::MemoryBackend;

/// Which guarantee to break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `send` says Ok but drops every 50th message (guarantee 1).
    DropSome,
    /// Swap each pair of consecutive messages (guarantee 2).
    Reorder,
    /// Never report SERVICE_UNAVAILABLE (guarantee 3).
    NoReport,
    /// Claim a queue bound 100× smaller than the real one (guarantee 4).
    LyingBound,
    /// `forward` does not count hops (guarantee 5).
    NoHops,
    /// A delivery given back — `nack(requeue)`, or dropped unsettled when its receiver closes
    /// or goes away — is lost instead of delivered again (guarantee 1, redelivery).
    NackDrops,
    /// Receivers see a `from` the transport did not stamp.
    NoStamp,
}

/// The memory backend with one [`Fault`].
#[derive(Debug)]
pub struct FaultyBackend(pub Fault);

#[async_trait]
impl Backend for FaultyBackend {
    fn name(&self) -> String {
        format!("faulty-{:?}", self.0)
    }

    async fn connect(&self, namespace: &str, slot: usize) -> Result<Box<dyn Transport>> {
        let inner = MemoryBackend.connect(namespace, slot).await?;
        Ok(Box::new(Faulty {
            inner,
            fault: self.0,
            sent: AtomicUsize::new(0),
            held: Mutex::new(None),
        }))
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = MemoryBackend.capabilities();
        if self.0 == Fault::LyingBound {
            caps.queue_bound /= 100;
        }
        caps
    }

    fn restart_unsupported(&self) -> Option<String> {
        MemoryBackend.restart_unsupported()
    }

    async fn kill_and_restart(&self) -> Result<()> {
        MemoryBackend.kill_and_restart().await
    }
}

struct Faulty {
    inner: Box<dyn Transport>,
    fault: Fault,
    sent: AtomicUsize,
    held: Mutex<Option<Message>>,
}

fn is_user_message(msg: &Message) -> bool {
    msg.command != commands::ADVERTISE && msg.mode == DeliveryMode::AtLeastOnce && !msg.is_reply()
}

#[async_trait]
impl Transport for Faulty {
    async fn advertise(&self, ad: &Advertisement) -> Result<()> {
        self.inner.advertise(ad).await
    }

    async fn listen(&self) -> Result<Inbox> {
        let mut inner = self.inner.listen().await?;
        if !matches!(self.fault, Fault::NackDrops | Fault::NoStamp) {
            return Ok(inner);
        }
        let fault = self.fault;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(d) = inner.recv().await {
                let (mut msg, acker) = d.into_parts();
                let d = if fault == Fault::NoStamp {
                    // A transport that trusts whatever origin the sender wrote.
                    if is_user_message(&msg) {
                        msg.set_from(Address::new("elsewhere", "mallory").ok());
                    }
                    Delivery::new(msg, false, acker)
                } else {
                    Delivery::new(msg, false, Box::new(AckOnNack(Some(acker))))
                };
                if tx.send(d).await.is_err() {
                    break;
                }
            }
        });
        Ok(Inbox::new(rx))
    }

    async fn send(&self, mut msg: Message) -> Result<()> {
        let n = self.sent.fetch_add(1, Ordering::SeqCst);
        match self.fault {
            Fault::DropSome if is_user_message(&msg) && n % 50 == 49 => return Ok(()),
            Fault::Reorder if is_user_message(&msg) => {
                let previous = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
                match previous {
                    None => {
                        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
                        return Ok(());
                    }
                    Some(prev) => {
                        self.inner.send(msg).await?;
                        return self.inner.send(prev).await;
                    }
                }
            }
            Fault::NoReport => msg.report = false,
            _ => {}
        }
        self.inner.send(msg).await
    }

    async fn forward(&self, delivery: Delivery, to: Destination) -> Result<()> {
        if self.fault == Fault::NoHops {
            let (mut msg, acker) = delivery.into_parts();
            msg.to = to;
            msg.set_hops(0);
            self.inner.send(msg).await?;
            return acker.ack().await;
        }
        self.inner.forward(delivery, to).await
    }

    async fn close(&self) -> Result<()> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(msg) = held {
            self.inner.send(msg).await?;
        }
        self.inner.close().await
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn node(&self) -> String {
        self.inner.node()
    }

    fn local_address(&self) -> Option<Address> {
        self.inner.local_address()
    }
}

struct AckOnNack(Option<Box<dyn Acker>>);

impl Drop for AckOnNack {
    // Dropped unsettled (its receiver closed mid-way): acknowledged, i.e. lost.
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = a.ack().await;
                });
            }
        }
    }
}

#[async_trait]
impl Acker for AckOnNack {
    async fn ack(mut self: Box<Self>) -> Result<()> {
        match self.0.take() {
            Some(a) => a.ack().await,
            None => Ok(()),
        }
    }
    async fn nack(mut self: Box<Self>, _requeue: bool) -> Result<()> {
        match self.0.take() {
            Some(a) => a.ack().await,
            None => Box::new(NoAck).ack().await,
        }
    }
}
