//! The link: our own reconnect loop (lapin's built-in recovery stays off).
//!
//! One supervisor task owns the current session (`session::Session`) and publishes it through a `watch` channel
//! (`None` while disconnected). It checks the session's health every 100 ms and whenever a user
//! reports a failure; when the session is broken it opens a new one with capped exponential
//! backoff (`reconnect_initial` doubling up to `reconnect_max`, for ever until the transport
//! closes), restoring the namespace topology and this transport's identity (instance and service
//! queues, bindings) before publishing it. Consumers watch the generation and re-subscribe;
//! senders hold each message until it is confirmed and publish it again on the new session.
//!
//! Why our own loop: lapin's recovery (`enable_auto_recover`) replays channels and consumers
//! inside lapin, but in-flight publisher confirms and deliveries of the old connection end in
//! errors whose handling we must write anyway; one loop that replaces the whole session is
//! simpler to reason about and to test (the generation tells every user which session it is on).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comms_core::{Address, Result};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::disconnected;
use crate::options::RabbitOptions;
use crate::session::Session;
use crate::topology::Names;

const HEALTH_CHECK: Duration = Duration::from_millis(100);

/// Who this transport is: restored on every reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) address: Address,
    pub(crate) commands: BTreeSet<String>,
}

#[derive(Debug)]
struct Shared {
    opts: Arc<RabbitOptions>,
    names: Names,
    session: watch::Sender<Option<Arc<Session>>>,
    identity: Mutex<Option<Identity>>,
    broken: Notify,
}

/// Handle on the supervisor; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    shared: Arc<Shared>,
}

impl Link {
    /// Connect once (an unreachable broker is an error here), then supervise.
    pub(crate) async fn start(
        opts: Arc<RabbitOptions>,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self> {
        let names = Names::new(&opts.namespace);
        let first = tokio::time::timeout(opts.send_timeout, Session::open(&opts, &names, 1, None))
            .await
            .map_err(|_| disconnected("connect"))??;
        let (tx, _) = watch::channel(Some(Arc::new(first)));
        let shared = Arc::new(Shared {
            opts,
            names,
            session: tx,
            identity: Mutex::new(None),
            broken: Notify::new(),
        });
        tracker.spawn(supervise(shared.clone(), cancel));
        Ok(Self { shared })
    }

    pub(crate) fn opts(&self) -> &RabbitOptions {
        &self.shared.opts
    }

    pub(crate) fn names(&self) -> &Names {
        &self.shared.names
    }

    /// The session, waiting until `deadline` while reconnecting.
    pub(crate) async fn session_until(&self, deadline: Instant) -> Result<Arc<Session>> {
        let mut rx = self.shared.session.subscribe();
        let wait = async {
            rx.wait_for(|s| s.as_ref().is_some_and(|s| s.healthy()))
                .await
                .map(|s| s.clone())
        };
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(s)) => s.ok_or_else(|| disconnected("wait for the broker")),
            Ok(Err(_)) => Err(comms_core::Error::Closed),
            Err(_) => Err(disconnected("wait for the broker")),
        }
    }

    /// Watch sessions (consumers follow the generation).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Arc<Session>>> {
        self.shared.session.subscribe()
    }

    /// Waits on `sessions` (from [`Link::subscribe`]) for a healthy session of generation
    /// `since` or later. `None`: cancelled, or the link is gone (the follower stops);
    /// `Some(None)`: no session after all (look again).
    pub(crate) async fn next_session(
        sessions: &mut watch::Receiver<Option<Arc<Session>>>,
        since: u64,
        cancel: &CancellationToken,
    ) -> Option<Option<Arc<Session>>> {
        let wait = sessions.wait_for(|s| {
            s.as_ref()
                .is_some_and(|s| s.healthy() && s.generation >= since)
        });
        tokio::select! {
            _ = cancel.cancelled() => None,
            s = wait => s.ok().map(|s| s.clone()),
        }
    }

    /// Something failed on the current session: check it now.
    pub(crate) fn report_broken(&self) {
        self.shared.broken.notify_one();
    }

    pub(crate) fn identity(&self) -> Option<Identity> {
        self.shared
            .identity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_identity(&self, id: Option<Identity>) {
        *self
            .shared
            .identity
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = id;
    }
}

async fn supervise(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut generation = 1;
    loop {
        // Wait until the current session breaks.
        let current = shared.session.borrow().clone();
        if let Some(session) = current {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => {
                        shared.session.send_replace(None);
                        session.close().await;
                        return;
                    }
                    _ = tokio::time::sleep(HEALTH_CHECK) => {}
                    _ = shared.broken.notified() => {}
                }
                if !session.healthy() {
                    break;
                }
            }
            tracing::warn!(
                generation = session.generation,
                "rabbitmq: connection lost; reconnecting"
            );
            shared.session.send_replace(None);
            session.close().await;
        }
        // Reconnect with capped exponential backoff.
        let opts = &shared.opts;
        let mut delay = opts.reconnect_initial;
        generation += 1;
        let session = loop {
            let identity = shared
                .identity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let attempt = tokio::time::timeout(
                opts.send_timeout,
                Session::open(opts, &shared.names, generation, identity),
            );
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                r = attempt => r,
            };
            match outcome {
                Ok(Ok(s)) => break s,
                Ok(Err(e)) => tracing::info!(error = %e, ?delay, "rabbitmq: reconnect failed"),
                Err(_) => tracing::info!(?delay, "rabbitmq: reconnect timed out"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(opts.reconnect_max);
        };
        tracing::info!(generation, "rabbitmq: reconnected; topology restored");
        shared.session.send_replace(Some(Arc::new(session)));
    }
}
