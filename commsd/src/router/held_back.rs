//! Senders held back for a consumer that is behind (see `conn::flow`): while held, a
//! sender's events (its input, a too-long line, its close) are set aside in arrival order;
//! once the consumer caught up (or stopped reading) they are handled as if just arrived. The
//! sender's reader is paused at the same time, so what is set aside is what was already in the
//! router's inbox: no more memory than the inbox's own bound.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::Router;
use crate::conn::QueueBytes;
use crate::event::{ConnId, Event};

/// How often the router looks whether held senders may go on.
pub(super) const CHECK: Duration = Duration::from_millis(5);

/// A sender held back: the consumer's queue it waits for, and its events since.
#[derive(Debug)]
pub(crate) struct Held {
    queue: Arc<QueueBytes>,
    events: VecDeque<Event>,
}

impl Router {
    /// Holds `src` (a service connection) back until `queue`'s consumer caught up.
    pub(crate) fn hold_back(&mut self, src: ConnId, queue: Arc<QueueBytes>) {
        let Some(c) = self.conns.get(&src).filter(|c| c.link.is_none()) else {
            return;
        };
        c.handles.gate.hold(&queue);
        self.held_back.entry(src).or_insert_with(|| Held {
            queue,
            events: VecDeque::new(),
        });
    }

    /// `ev` unless it belongs to a held sender (then it is set aside).
    pub(super) fn defer_if_held_back(&mut self, ev: Event) -> Option<Event> {
        let id = match &ev {
            Event::Input { id, .. } | Event::TooLong { id, .. } | Event::Closed { id } => *id,
            _ => return Some(ev),
        };
        match self.held_back.get_mut(&id) {
            Some(h) => {
                h.events.push_back(ev);
                None
            }
            None => Some(ev),
        }
    }

    /// Lets the senders whose consumer caught up go on: their events set aside are handled
    /// in order (a sender held again meanwhile keeps the rest, ahead of anything newer).
    pub(super) fn release_held_back(&mut self) {
        if self.held_back.is_empty() {
            return;
        }
        let ready: Vec<ConnId> = self
            .held_back
            .iter()
            .filter(|(_, h)| h.queue.caught_up() || self.stopping)
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            let Some(mut held) = self.held_back.remove(&id) else {
                continue;
            };
            while let Some(ev) = held.events.pop_front() {
                self.on_event(ev);
                if let Some(again) = self.held_back.get_mut(&id) {
                    again.events.extend(held.events.drain(..));
                    break;
                }
            }
        }
    }
}
