//! The hub: one in-process "broker" per name, shared by every memory transport that names it.
//!
//! State: the live endpoints (address → accepted commands), one queue per instance and one per
//! service. Queues outlive the transports that consume them, so an endpoint that goes away and
//! comes back with the same address finds what was sent meanwhile. A hub lives while any
//! transport holds it; it is not persistent.
//!
//! Sniffing: the hub has a **tap**, a `tokio::sync::broadcast` channel of message copies made
//! on the first [`Hub::tap`]. Routing sends a copy only while a sniffer is subscribed (one
//! atomic load otherwise); a sniffer that lags loses the oldest copies (`broadcast` overwrites
//! them), which never blocks a sender.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use tokio::sync::broadcast;

use comms_core::address::{Address, Destination, Scope};
use comms_core::error::{Error, Result};
use comms_core::message::Message;

use crate::queue::Queue;

#[derive(Debug, Default)]
struct State {
    live: HashMap<Address, BTreeSet<String>>,
    instances: HashMap<Address, Arc<Queue>>,
    services: HashMap<String, Arc<Queue>>,
}

#[derive(Debug)]
pub(crate) struct Hub {
    state: Mutex<State>,
    queue_bound: usize,
    /// Copies for sniffers, made on first use.
    tap: OnceLock<broadcast::Sender<Message>>,
    /// The hub's dead letters (in memory, like everything of the hub).
    pub(crate) dead_letters: Arc<comms_core::dead_letter::MemoryDeadLetters>,
}

/// Copies a sniffer may fall behind by before it loses the oldest.
pub(crate) const TAP_BOUND: usize = 4096;

/// Where a routed message goes.
pub(crate) enum Route {
    One(Arc<Queue>),
    Many(Vec<Arc<Queue>>),
}

impl Hub {
    /// The hub called `name`, made on first use.
    pub(crate) fn named(name: &str, queue_bound: usize) -> Arc<Hub> {
        static HUBS: OnceLock<Mutex<HashMap<String, Weak<Hub>>>> = OnceLock::new();
        let mut hubs = HUBS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        hubs.retain(|_, hub| hub.strong_count() > 0);
        if let Some(hub) = hubs.get(name).and_then(Weak::upgrade) {
            return hub;
        }
        let hub = Arc::new(Hub {
            state: Mutex::new(State::default()),
            queue_bound,
            tap: OnceLock::new(),
            dead_letters: Arc::default(),
        });
        hubs.insert(name.to_owned(), Arc::downgrade(&hub));
        hub
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark `address` live with its commands. Refused when another transport holds it.
    pub(crate) fn register(
        &self,
        address: &Address,
        commands: BTreeSet<String>,
        rebind: bool,
    ) -> Result<()> {
        let mut st = self.lock();
        if !rebind && st.live.contains_key(address) {
            return Err(Error::AddressInUse(address.to_string()));
        }
        st.live.insert(address.clone(), commands);
        Ok(())
    }

    pub(crate) fn unregister(&self, address: &Address) {
        self.lock().live.remove(address);
    }

    pub(crate) fn instance_queue(&self, address: &Address) -> Arc<Queue> {
        let bound = self.queue_bound;
        self.lock()
            .instances
            .entry(address.clone())
            .or_insert_with(|| Arc::new(Queue::new(bound)))
            .clone()
    }

    pub(crate) fn service_queue(&self, service: &str) -> Arc<Queue> {
        let bound = self.queue_bound;
        self.lock()
            .services
            .entry(service.to_owned())
            .or_insert_with(|| Arc::new(Queue::new(bound)))
            .clone()
    }

    /// The queues a message from `from` to `to` with `command` goes into.
    pub(crate) fn route(&self, from: &Address, to: &Destination, command: &str) -> Route {
        match to {
            Destination::Instance(a) => Route::One(self.instance_queue(a)),
            Destination::Service(s) => Route::One(self.service_queue(s)),
            Destination::Broadcast(scope) => {
                let targets: Vec<Address> = self
                    .lock()
                    .live
                    .iter()
                    .filter(|(addr, cmds)| {
                        cmds.contains(command)
                            && (*scope == Scope::All || addr.node() == from.node())
                    })
                    .map(|(addr, _)| addr.clone())
                    .collect();
                Route::Many(targets.iter().map(|a| self.instance_queue(a)).collect())
            }
        }
    }

    /// A new subscription to copies of every message routed from now on.
    pub(crate) fn tap(&self) -> broadcast::Receiver<Message> {
        self.tap
            .get_or_init(|| broadcast::channel(TAP_BOUND).0)
            .subscribe()
    }

    /// Hands sniffers a copy of `msg`; costs one atomic load when nobody sniffs.
    pub(crate) fn copy_to_sniffers(&self, msg: &Message) {
        if let Some(tap) = self.tap.get() {
            if tap.receiver_count() > 0 {
                let _ = tap.send(msg.clone());
            }
        }
    }

    /// Drop queues nobody uses any more (called after TTL expiry), so that sending to many
    /// made-up names does not grow the hub for ever.
    pub(crate) fn collect_idle(&self) {
        let mut st = self.lock();
        let State {
            live,
            instances,
            services,
        } = &mut *st;
        instances.retain(|addr, q| live.contains_key(addr) || !q.is_idle());
        services.retain(|_, q| !q.is_idle());
    }
}
