//! Pipelined publishing: many publisher confirms outstanding from one transport, in order.
//!
//! Every publish of the transport (`send`, `submit`, `forward`, advertisements) goes through
//! one [`Pipeline`]:
//! - `submit` takes a permit of the **in-flight window** (`max_in_flight`, waiting up to
//!   `send_timeout`, then [`Error::Backpressure`]), publishes under the **order lock** (so
//!   messages enter the channel in call order) and hands the pending confirm to the
//!   confirmer; it does not wait for the broker. `send` is `submit` and its receipt.
//! - A message is published directly only on the session its predecessors went to (or when
//!   none is outstanding): after a reconnect, a new message must not overtake those still
//!   unconfirmed on the lost session, so it goes to the confirmer unpublished and is
//!   published after them.
//! - The **confirmer** task awaits the confirms in publish order and settles each receipt.
//!   On the first answer that is not an ack (connection or channel lost, a nack from a full
//!   queue, a return after the queue was deleted) it takes the order lock, so nothing new is
//!   published, judges every publish already made, and publishes the failed ones again on
//!   the current session, one at a time in their order, each until it is confirmed or out
//!   of time
//!   ([`publisher::Retry`]: `send_timeout` per message, growing pauses). So after a
//!   connection loss messages are published again in the order they were submitted, and the
//!   receiver's dedup window absorbs copies the broker already had.
//! - One exception to order, as with any confirming publisher: when a full queue
//!   (`x-overflow = reject-publish`) refuses a message and accepts a later one meanwhile (a
//!   consumer made room in between), the refused one arrives after it.
//! - Each message in flight holds a token of the transport's `sends` tracker: `close` waits
//!   for every receipt to settle (bounded by `send_timeout`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use comms_core::receipt::Settle;
use comms_core::{Error, Message, Receipt, Result, TransportStats};
use lapin::PublisherConfirm;
use tokio::sync::{mpsc, Mutex, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

use crate::error::BACKEND;
use crate::link::Link;
use crate::publisher::{self, Next, Outgoing, Retry};
use crate::session::Session;

/// The transport's publishing path (see the module docs).
#[derive(Debug)]
pub(crate) struct Pipeline {
    link: Link,
    window: Arc<Semaphore>,
    order: Arc<Mutex<()>>,
    /// The generation of the session the last publish went to (written under `order`).
    generation: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<InFlight>,
    sends: TaskTracker,
    stats: Arc<TransportStats>,
}

/// One published message awaiting its confirm.
struct InFlight {
    out: Outgoing,
    retry: Retry,
    /// The session it was last published on and what publishing it returned.
    session: Option<Arc<Session>>,
    published: Option<Result<Option<PublisherConfirm>>>,
    settle: Settle,
    _permit: OwnedSemaphorePermit,
    _token: TaskTrackerToken,
}

impl Pipeline {
    /// Start the confirmer (on `tasks`, stopped by `cancel`); `sends` tracks messages in flight;
    /// the window is the link's `max_in_flight`.
    pub(crate) fn start(
        link: Link,
        sends: TaskTracker,
        tasks: &TaskTracker,
        cancel: CancellationToken,
        stats: Arc<TransportStats>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let order = Arc::new(Mutex::new(()));
        let generation = Arc::new(AtomicU64::new(0));
        let confirmer = Confirmer {
            link: link.clone(),
            order: order.clone(),
            generation: generation.clone(),
            cancel,
            stats: stats.clone(),
        };
        tasks.spawn(confirmer.run(rx));
        Self {
            window: Arc::new(Semaphore::new(link.opts().max_in_flight)),
            link,
            order,
            generation,
            tx,
            sends,
            stats,
        }
    }

    /// Publish `msg` (its `from` stamped) without waiting for the confirm.
    pub(crate) async fn submit(&self, msg: &Message) -> Result<Receipt> {
        self.stats.refused(self.publish(msg).await)
    }

    /// [`Pipeline::submit`]: its pending receipt is counted in the stats, the rest by it.
    async fn publish(&self, msg: &Message) -> Result<Receipt> {
        let token = self.sends.token();
        let out = Outgoing::new(&self.link, msg)?;
        let retry = Retry::new(&self.link);
        let deadline = retry.deadline();
        let full = || {
            Error::Backpressure(format!(
                "{} messages await their publisher confirm (max_in_flight) and none was \
                 confirmed within {:?}",
                self.link.opts().max_in_flight,
                self.link.opts().send_timeout
            ))
        };
        let permit = tokio::time::timeout_at(deadline, self.window.clone().acquire_owned())
            .await
            .map_err(|_| full())?
            .map_err(|_| Error::Closed)?;
        let order = tokio::time::timeout_at(deadline, self.order.lock())
            .await
            .map_err(|_| full())?;
        let session = self.link.session_until(deadline).await?;
        // Our own permit is the only one taken: nothing else is outstanding.
        let alone = self.window.available_permits() + 1 == self.link.opts().max_in_flight;
        let published = if alone || session.generation == self.generation.load(Ordering::Acquire) {
            self.generation.store(session.generation, Ordering::Release);
            out.publish(&self.link, &session).await
        } else {
            Err(Error::transport_msg(
                BACKEND,
                "reconnected while earlier messages await their confirm: published after them",
                true,
            ))
        };
        if out.at_most_once() && published.is_ok() {
            self.stats.count(true);
            return Ok(Receipt::ready(Ok(())));
        }
        let (settle, receipt) = Receipt::pending_in(Some(self.stats.clone()));
        let entry = InFlight {
            out,
            retry,
            session: Some(session),
            published: Some(published),
            settle,
            _permit: permit,
            _token: token,
        };
        self.tx.send(entry).map_err(|_| Error::Closed)?;
        drop(order);
        Ok(receipt)
    }
}

/// The confirmer: settle receipts in publish order; recover from the first failure.
struct Confirmer {
    link: Link,
    order: Arc<Mutex<()>>,
    generation: Arc<AtomicU64>,
    cancel: CancellationToken,
    stats: Arc<TransportStats>,
}

impl Confirmer {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<InFlight>) {
        loop {
            let entry = tokio::select! {
                _ = self.cancel.cancelled() => return,
                entry = rx.recv() => match entry {
                    Some(entry) => entry,
                    None => return,
                },
            };
            let Some((entry, pause)) = self.judge(entry).await else {
                continue;
            };
            // Nothing new is published while the failed ones are: they keep their place.
            let _order = tokio::select! {
                _ = self.cancel.cancelled() => return,
                guard = self.order.lock() => guard,
            };
            let mut again = vec![entry];
            let mut pause = pause;
            while let Ok(later) = rx.try_recv() {
                if let Some((later, p)) = self.judge(later).await {
                    pause = pause.max(p);
                    again.push(later);
                }
            }
            if !self.republish(again, pause).await {
                return;
            }
        }
    }

    /// Await `entry`'s answer: settled (`None`), or to publish again after a pause.
    async fn judge(&self, mut entry: InFlight) -> Option<(InFlight, Duration)> {
        let published = entry.published.take().unwrap_or(Ok(None));
        let answer = tokio::select! {
            _ = self.cancel.cancelled() => return None,
            answer = publisher::answer(published) => answer,
        };
        let session = entry.session.take();
        match entry
            .retry
            .next(&self.link, session.as_deref(), &entry.out, answer)
        {
            Next::Done(outcome) => {
                entry.settle.settle(outcome);
                None
            }
            Next::Again(pause) => Some((entry, pause)),
        }
    }

    /// Publish `again` one at a time, in order, each until it is settled (so that a refusal
    /// of one cannot let a later one overtake it); false when cancelled.
    async fn republish(&self, again: Vec<InFlight>, mut pause: Duration) -> bool {
        let link = &self.link;
        tracing::debug!(
            count = again.len(),
            "rabbitmq: publishing unconfirmed messages again, one at a time, in order"
        );
        for mut entry in again {
            loop {
                tokio::select! {
                    _ = self.cancel.cancelled() => return false,
                    _ = tokio::time::sleep(pause) => {}
                }
                let session = tokio::select! {
                    _ = self.cancel.cancelled() => return false,
                    session = link.session_until(entry.retry.deadline()) => session,
                };
                entry.published = Some(match &session {
                    Ok(s) => {
                        self.stats.resent(1);
                        self.generation.store(s.generation, Ordering::Release);
                        entry.out.publish(link, s).await
                    }
                    Err(e) => Err(Error::transport_msg(
                        BACKEND,
                        e.to_string(),
                        e.is_retryable(),
                    )),
                });
                entry.session = session.ok();
                match self.judge(entry).await {
                    None if self.cancel.is_cancelled() => return false,
                    None => break,
                    Some((unsettled, p)) => {
                        entry = unsettled;
                        pause = p;
                    }
                }
            }
            pause = Duration::ZERO;
        }
        true
    }
}
