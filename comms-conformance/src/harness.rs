//! Test-side helpers: a context per case, recorders, waiting, checks.

use std::collections::HashSet;
use std::fmt::Display;
use std::future::{ready, Ready};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use comms_core::capabilities::Capabilities;
use comms_core::endpoint::{Endpoint, EndpointBuilder, HandlerResult, Outcome, Request};
use comms_core::message::{Message, MessageId};

use crate::Backend;

/// Why a case stopped early.
#[derive(Debug)]
pub enum Stop {
    /// The backend broke a guarantee (or the case could not run).
    Fail(String),
    /// The case does not apply to this backend; the reason is printed.
    Skip(String),
}

/// A case's result.
pub type CaseResult = Result<(), Stop>;

/// Turn any error into a failure with context.
pub trait OrFail<T> {
    /// Fail with `what: error`.
    fn or_fail(self, what: &str) -> Result<T, Stop>;
}

impl<T, E: Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> Result<T, Stop> {
        self.map_err(|e| Stop::Fail(format!("{what}: {e}")))
    }
}

impl<T> OrFail<T> for Option<T> {
    fn or_fail(self, what: &str) -> Result<T, Stop> {
        self.ok_or_else(|| Stop::Fail(format!("{what}: none")))
    }
}

/// Fail unless `cond`.
pub fn ensure(cond: bool, what: impl FnOnce() -> String) -> CaseResult {
    if cond {
        Ok(())
    } else {
        Err(Stop::Fail(what()))
    }
}

/// How long a case waits for deliveries before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// One case's world: a fresh namespace and fresh names.
#[allow(missing_debug_implementations)] // holds a `dyn Backend`
pub struct Ctx<'a> {
    pub(crate) backend: &'a dyn Backend,
    pub(crate) caps: Capabilities,
    pub(crate) ns: String,
    pub(crate) uniq: String,
}

impl Ctx<'_> {
    /// A name unique to this case run.
    pub fn name(&self, base: &str) -> String {
        format!("{base}_{}", self.uniq)
    }

    /// The backend's capabilities.
    pub fn caps(&self) -> &Capabilities {
        &self.caps
    }

    /// Start an endpoint for `service` at `slot` in this case's namespace.
    pub async fn endpoint(
        &self,
        slot: usize,
        service: &str,
        build: impl FnOnce(EndpointBuilder) -> EndpointBuilder,
    ) -> Result<Endpoint, Stop> {
        self.endpoint_in(&self.ns.clone(), slot, service, build)
            .await
    }

    /// Start an endpoint in another namespace.
    pub async fn endpoint_in(
        &self,
        ns: &str,
        slot: usize,
        service: &str,
        build: impl FnOnce(EndpointBuilder) -> EndpointBuilder,
    ) -> Result<Endpoint, Stop> {
        let transport = self
            .backend
            .connect(ns, slot)
            .await
            .or_fail(&format!("connect slot {slot}"))?;
        let name = self.name(service);
        build(Endpoint::builder(transport, name.clone()))
            .start()
            .await
            .or_fail(&format!("start endpoint {name}"))
    }
}

/// Records handled messages, in handling order.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
}

#[derive(Debug, Default)]
struct Seen {
    messages: Vec<Message>,
    ids: HashSet<MessageId>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record a message (a handler's shared one is copied only when still shared).
    pub fn push(&self, msg: impl Into<std::sync::Arc<Message>>) {
        let msg = std::sync::Arc::unwrap_or_clone(msg.into());
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.ids.insert(msg.id().clone());
            seen.messages.push(msg);
        }
        self.changed.notify_waiters();
    }

    /// A handler that records and acknowledges.
    pub fn handler(
        &self,
    ) -> impl Fn(Request) -> Ready<HandlerResult> + Clone + Send + Sync + 'static {
        let rec = self.clone();
        move |req: Request| {
            rec.push(req.into_message());
            ready(Ok(Outcome::Done))
        }
    }

    /// Everything recorded so far.
    pub fn messages(&self) -> Vec<Message> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .messages
            .clone()
    }

    /// Handler runs so far.
    pub fn count(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .messages
            .len()
    }

    /// Distinct message ids handled so far.
    pub fn distinct(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ids
            .len()
    }

    /// Wait until `n` distinct messages were handled.
    pub async fn wait_distinct(&self, n: usize, timeout: Duration) -> CaseResult {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if self.distinct() >= n {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                // One last look: a notification may race with the deadline.
                return ensure(self.distinct() >= n, || {
                    format!(
                        "only {} of {n} messages handled within {timeout:?}",
                        self.distinct()
                    )
                });
            }
        }
    }

    /// The `seq` parameters in handling order (messages without one are skipped).
    pub fn seqs(&self) -> Vec<u64> {
        self.messages()
            .iter()
            .filter_map(|m| m.param("seq").and_then(|s| s.parse().ok()))
            .collect()
    }
}

/// Check that `seqs` is strictly increasing; say where it is not.
pub fn check_increasing(seqs: &[u64], what: &str) -> CaseResult {
    match seqs.windows(2).position(|w| w[0] >= w[1]) {
        None => Ok(()),
        Some(i) => Err(Stop::Fail(format!(
            "{what}: order broken at position {}: {} then {} (around it: {:?})",
            i + 1,
            seqs[i],
            seqs[i + 1],
            &seqs[i.saturating_sub(8)..(i + 8).min(seqs.len())]
        ))),
    }
}

/// Check that no message id was handled twice.
pub fn check_no_duplicates(rec: &Recorder) -> CaseResult {
    let (count, distinct) = (rec.count(), rec.distinct());
    ensure(count == distinct, || {
        format!(
            "{} handler runs for {distinct} distinct messages: {} ran twice",
            count,
            count - distinct
        )
    })
}
