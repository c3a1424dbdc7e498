//! A bounded queue with competing consumers, acknowledgements and requeue.
//!
//! The bound counts ready **and** unacknowledged messages, like a broker queue with a
//! max-length: a sender waits for room (backpressure) rather than growing memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use comms_core::error::{Error, Result};
use comms_core::message::{Message, MessageId};

#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// Shared with the delivery while it is out (the acker keeps the item for a `nack`).
    pub(crate) msg: std::sync::Arc<Message>,
    pub(crate) redelivered: bool,
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Item>,
    unacked: usize,
}

#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    cap: usize,
    consumers: AtomicUsize,
    ready_signal: Notify,
    space_signal: Notify,
}

impl Queue {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            cap: cap.max(1),
            consumers: AtomicUsize::new(0),
            ready_signal: Notify::new(),
            space_signal: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the queue's data is still consistent
        // because every critical section is a single push/pop.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enqueue, waiting up to `wait` for room.
    pub(crate) async fn push(&self, item: Item, wait: Duration) -> Result<()> {
        // The common case: room at once (no clock read, no waiter registered).
        let Err(item) = self.try_push_item(item) else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let space = self.space_signal.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut st = self.lock();
                if st.ready.len() + st.unacked < self.cap {
                    st.ready.push_back(item);
                    drop(st);
                    self.ready_signal.notify_one();
                    return Ok(());
                }
            }
            // Re-check periodically as well: a settle may race with our registration.
            let tick = tokio::time::sleep(Duration::from_millis(50));
            tokio::select! {
                _ = &mut space => {}
                _ = tick => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::Backpressure(format!(
                        "destination queue is full ({} messages) and no room was made within {wait:?}",
                        self.cap
                    )));
                }
            }
        }
    }

    /// Enqueue without waiting; false (and nothing queued) when full.
    pub(crate) fn try_push(&self, item: Item) -> bool {
        self.try_push_item(item).is_ok()
    }

    /// Enqueue without waiting; the item back when full.
    fn try_push_item(&self, item: Item) -> std::result::Result<(), Item> {
        let mut st = self.lock();
        if st.ready.len() + st.unacked >= self.cap {
            return Err(item);
        }
        st.ready.push_back(item);
        drop(st);
        self.ready_signal.notify_one();
        Ok(())
    }

    /// Take the next message; it counts as unacknowledged until settled.
    pub(crate) fn try_pop(&self) -> Option<Item> {
        let mut st = self.lock();
        let item = st.ready.pop_front()?;
        st.unacked += 1;
        Some(item)
    }

    /// Settle a popped message: gone (`None`) or back at the head of the queue.
    pub(crate) fn settle(&self, requeue: Option<Item>) {
        let mut st = self.lock();
        st.unacked = st.unacked.saturating_sub(1);
        if let Some(mut item) = requeue {
            item.redelivered = true;
            st.ready.push_front(item);
            drop(st);
            self.ready_signal.notify_one();
        } else {
            drop(st);
        }
        self.space_signal.notify_one();
    }

    /// Remove a waiting message by id (TTL expiry).
    pub(crate) fn remove(&self, id: &MessageId) -> Option<Item> {
        let mut st = self.lock();
        let pos = st.ready.iter().position(|i| i.msg.id() == id)?;
        let item = st.ready.remove(pos);
        drop(st);
        self.space_signal.notify_one();
        item
    }

    pub(crate) fn ready_signal(&self) -> &Notify {
        &self.ready_signal
    }

    pub(crate) fn consumers(&self) -> usize {
        self.consumers.load(Ordering::SeqCst)
    }

    pub(crate) fn add_consumer(&self) {
        self.consumers.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn remove_consumer(&self) {
        self.consumers.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn is_idle(&self) -> bool {
        let st = self.lock();
        st.ready.is_empty() && st.unacked == 0 && self.consumers() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comms_core::address::Destination;

    fn item(n: u32) -> Item {
        Item {
            msg: Message::new("X", Destination::Service("s".into()))
                .unwrap()
                .with_param("n", n.to_string())
                .into(),
            redelivered: false,
        }
    }

    #[tokio::test]
    async fn bound_counts_unacked_and_requeue_goes_first() {
        let q = Queue::new(2);
        q.push(item(1), Duration::ZERO).await.unwrap();
        q.push(item(2), Duration::ZERO).await.unwrap();
        let e = q
            .push(item(3), Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Backpressure(_)));
        let one = q.try_pop().unwrap();
        assert!(
            !q.try_push(item(3)),
            "unacked still counts against the bound"
        );
        q.settle(Some(one));
        let again = q.try_pop().unwrap();
        assert_eq!(again.msg.param("n"), Some("1"));
        assert!(again.redelivered);
        q.settle(None);
        assert!(q.try_push(item(3)));
    }

    #[tokio::test]
    async fn waiting_sender_proceeds_when_room_is_made() {
        let q = std::sync::Arc::new(Queue::new(1));
        q.push(item(1), Duration::ZERO).await.unwrap();
        let q2 = q.clone();
        let sender = tokio::spawn(async move { q2.push(item(2), Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sender.is_finished());
        let it = q.try_pop().unwrap();
        q.settle(None);
        drop(it);
        sender.await.unwrap().unwrap();
    }
}
