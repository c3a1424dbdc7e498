//! [`Receipt`]: the outcome of a pipelined send ([`crate::Transport::submit`]), learned later.
//!
//! `submit` returns once the transport has **accepted** a message into its bounded in-flight
//! window, in call order; the receipt resolves with what `send` would have returned (on a
//! broker: the confirm). So one task keeps many messages in flight:
//!
//! ```
//! use std::collections::VecDeque;
//! use comms_core::{Connect, Endpoint, Message};
//! use comms_memory::MemoryTransport;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> comms_core::Result<()> {
//! let sink = Endpoint::builder(MemoryTransport::connect_url("memory://receipt?node=n1").await?, "sink")
//!     .handle("EVENT", |_req| async move { Ok(comms_core::Outcome::Done) })
//!     .start()
//!     .await?;
//! let producer = Endpoint::builder(MemoryTransport::connect_url("memory://receipt?node=n1").await?, "producer")
//!     .start()
//!     .await?;
//! // Keep up to 256 confirmations outstanding; settle the oldest first.
//! let mut receipts = VecDeque::new();
//! for i in 0..1_000 {
//!     let msg = Message::new("EVENT", sink.address().clone())?.with_param("i", i.to_string());
//!     receipts.push_back(producer.submit(msg).await?);
//!     if receipts.len() == 256 {
//!         receipts.pop_front().unwrap().await?;
//!     }
//! }
//! for receipt in receipts {
//!     receipt.await?; // every message confirmed: as if each had been `send`
//! }
//! # producer.close().await?; sink.close().await?;
//! # Ok(()) }
//! ```
//!
//! Dropping a receipt does not cancel anything: the transport still delivers the message
//! (and, on `close`, still waits for its confirmation); only its outcome goes unread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::stats::TransportStats;

/// The confirmation of one submitted message: a future resolving with what `send` would have
/// returned. `Ok` means what a `send` returning `Ok` means (see the crate's delivery
/// guarantees).
#[derive(Debug)]
#[must_use = "a receipt says whether the message was confirmed; await it (dropping it does not cancel the send)"]
pub struct Receipt(State);

#[derive(Debug)]
enum State {
    Ready(Option<Result<()>>),
    Waiting(oneshot::Receiver<Result<()>>),
}

impl Receipt {
    /// A receipt already settled (a transport whose `send` confirms before returning).
    pub fn ready(outcome: Result<()>) -> Self {
        Self(State::Ready(Some(outcome)))
    }

    /// A receipt settled later through its [`Settle`] (for backend authors).
    pub fn pending() -> (Settle, Self) {
        Self::pending_in(None)
    }

    /// [`Receipt::pending`], counted in `stats`: sent now, acknowledged or failed when settled
    /// (an unsettled [`Settle`] dropped counts as failed). Backends call it through
    /// [`Binding::receipt`](crate::backend::Binding::receipt).
    pub fn pending_in(stats: Option<Arc<TransportStats>>) -> (Settle, Self) {
        let (tx, rx) = oneshot::channel();
        if let Some(s) = &stats {
            s.sent();
        }
        (
            Settle {
                tx: Some(tx),
                stats,
            },
            Self(State::Waiting(rx)),
        )
    }
}

impl Future for Receipt {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match &mut self.0 {
            State::Ready(outcome) => Poll::Ready(outcome.take().unwrap_or(Ok(()))),
            // The transport went away without settling: the outcome is unknown.
            State::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(Error::Closed))),
        }
    }
}

/// The transport's half of a pending [`Receipt`]. Dropping it unsettled resolves the receipt
/// with [`Error::Closed`].
#[derive(Debug)]
pub struct Settle {
    tx: Option<oneshot::Sender<Result<()>>>,
    stats: Option<Arc<TransportStats>>,
}

impl Settle {
    /// Resolve the receipt (a receipt nobody awaits any more is fine).
    pub fn settle(mut self, outcome: Result<()>) {
        if let Some(s) = &self.stats {
            s.settled(outcome.is_ok());
        }
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(outcome);
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if self.tx.is_some() {
            if let Some(s) = &self.stats {
                s.settled(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_receipt_resolves_with_what_its_transport_settles() {
        assert!(Receipt::ready(Ok(())).await.is_ok());
        let (settle, receipt) = Receipt::pending();
        settle.settle(Err(Error::Backpressure("full".into())));
        assert!(matches!(receipt.await, Err(Error::Backpressure(_))));
    }

    #[tokio::test]
    async fn an_unsettled_receipt_whose_transport_went_away_is_closed_not_ok() {
        let (settle, receipt) = Receipt::pending();
        drop(settle);
        assert!(matches!(receipt.await, Err(Error::Closed)));
    }

    #[tokio::test]
    async fn a_counted_receipt_counts_when_settled_even_if_nobody_awaits_it() {
        let stats = Arc::new(TransportStats::default());
        let (ok, r1) = Receipt::pending_in(Some(stats.clone()));
        let (lost, r2) = Receipt::pending_in(Some(stats.clone()));
        let (_open, _r3) = Receipt::pending_in(Some(stats.clone()));
        drop((r1, r2));
        ok.settle(Ok(()));
        drop(lost);
        let c = stats.snapshot();
        assert_eq!(
            (c.sent, c.acknowledged, c.failed, c.in_flight()),
            (3, 1, 1, 1)
        );
    }
}
