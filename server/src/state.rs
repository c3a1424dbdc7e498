//! What the server keeps: the agent directory view, task routes, running dispatches, and
//! the dispatch history ([`Store`], SQLite).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, UNIX_EPOCH};

use comms::{Address, Directory, Query};
use comms_fleet::auth::{AuthError, FleetAuth};
use comms_fleet::control::{AgentInfo, DispatchRecord, TargetOutput, TargetResult, SERVER_SERVICE};
use tokio::sync::mpsc;

use crate::config::ServerConfig;
use crate::store::{Store, StoreError};

/// Where a running task's messages go.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) dispatch: String,
    pub(crate) agent: Address,
    /// Where output goes; `None` for a dispatch resumed after a restart.
    pub(crate) requester: Option<Address>,
    pub(crate) results: mpsc::Sender<TargetResult>,
}

#[derive(Debug)]
pub(crate) struct State {
    /// The fleet key and the ids of requests it already accepted.
    pub(crate) auth: Option<FleetAuth>,
    pub(crate) directory: Directory,
    pub(crate) config: ServerConfig,
    pub(crate) started: Instant,
    pub(crate) backend: String,
    routes: Mutex<HashMap<String, Route>>,
    active: Mutex<HashSet<String>>,
    pub(crate) store: Store,
    pub(crate) metrics: crate::metrics::ServerMetrics,
    /// The last output of each target of running dispatches (for the web view): dispatch →
    /// agent → at most [`LIVE_TAIL`] bytes; dropped when the dispatch ends.
    live: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

/// Output kept per running target for the web view (the end of it).
pub(crate) const LIVE_TAIL: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    pub(crate) fn new(
        directory: Directory,
        config: ServerConfig,
        backend: String,
        auth: Option<FleetAuth>,
        store: Store,
    ) -> Self {
        Self {
            auth,
            directory,
            config,
            started: Instant::now(),
            backend,
            routes: Mutex::default(),
            active: Mutex::default(),
            store,
            metrics: Default::default(),
            live: Mutex::default(),
        }
    }

    /// Signs `msg` with the fleet key, if the server has one.
    pub(crate) fn sign(&self, msg: &mut comms::Message) {
        if let Some(auth) = &self.auth {
            auth.sign(msg);
        }
    }

    /// With a fleet key: whether `msg` is signed with it for the server, fresh and new.
    /// Keyless (`insecure`): always.
    pub(crate) fn admit(&self, msg: &comms::Message) -> Result<(), AuthError> {
        match &self.auth {
            Some(auth) => auth.admit(msg, SERVER_SERVICE),
            None => Ok(()),
        }
    }

    /// Every agent the directory knows, up or down, sorted by address.
    pub(crate) fn agents(&self) -> Vec<AgentInfo> {
        self.directory
            .lookup(&Query::new().fact("role", "agent").include_down())
            .into_iter()
            .map(|e| {
                let ad = &e.advertisement;
                AgentInfo {
                    address: ad.address.to_string(),
                    id: ad.facts.get("id").cloned().unwrap_or_default(),
                    up: e.up,
                    groups: ad.groups.iter().cloned().collect(),
                    labels: ad.labels.clone(),
                    facts: ad.facts.clone(),
                    since_unix: e
                        .since
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                }
            })
            .collect()
    }

    pub(crate) fn route(&self, task: &str) -> Option<Route> {
        lock(&self.routes).get(task).cloned()
    }

    pub(crate) fn add_route(&self, task: String, route: Route) {
        lock(&self.routes).insert(task, route);
    }

    pub(crate) fn drop_routes(&self, dispatch: &str) {
        lock(&self.routes).retain(|_, r| r.dispatch != dispatch);
    }

    pub(crate) fn routes_of(&self, dispatch: &str) -> Vec<(String, Route)> {
        lock(&self.routes)
            .iter()
            .filter(|(_, r)| r.dispatch == dispatch)
            .map(|(t, r)| (t.clone(), r.clone()))
            .collect()
    }

    pub(crate) fn running(&self) -> usize {
        lock(&self.active).len()
    }

    /// Record a new (or resumed) dispatch as running.
    pub(crate) fn begin(
        &self,
        record: &DispatchRecord,
        deadline_unix: u64,
    ) -> Result<(), StoreError> {
        self.store.begin(record, deadline_unix)?;
        lock(&self.active).insert(record.dispatch.clone());
        self.metrics.dispatched();
        Ok(())
    }

    /// Mark a running dispatch resumed after a restart (already in the store).
    pub(crate) fn resume(&self, dispatch: &str) {
        lock(&self.active).insert(dispatch.to_owned());
    }

    /// Keep one target's result; a failure is logged (the result still goes to the requester).
    pub(crate) fn keep(&self, result: &TargetResult) {
        self.metrics.target(result);
        if let Err(e) = self.store.add_result(result) {
            tracing::error!(dispatch = %result.dispatch, error = %e, "result not stored");
        }
    }

    /// Keeps the end of a running target's output (for the web view).
    pub(crate) fn output(&self, chunk: &TargetOutput) {
        let mut live = lock(&self.live);
        if !lock(&self.active).contains(&chunk.dispatch) {
            return;
        }
        let tail = live
            .entry(chunk.dispatch.clone())
            .or_default()
            .entry(chunk.agent.clone())
            .or_default();
        tail.push_str(&chunk.data);
        if tail.len() > LIVE_TAIL {
            let mut cut = tail.len() - LIVE_TAIL;
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            tail.drain(..cut);
        }
    }

    /// The output of running targets, by dispatch and agent.
    pub(crate) fn live_output(&self) -> HashMap<String, BTreeMap<String, String>> {
        lock(&self.live).clone()
    }

    /// The dispatch is over.
    pub(crate) fn finish(&self, dispatch: &str) {
        lock(&self.live).remove(dispatch);
        lock(&self.active).remove(dispatch);
        if let Err(e) = self.store.finish(dispatch) {
            tracing::error!(%dispatch, error = %e, "dispatch end not stored");
        }
    }

    /// The newest `config.recent` dispatches, oldest first.
    pub(crate) fn recent(&self) -> Result<Vec<DispatchRecord>, StoreError> {
        self.store.recent(self.config.recent.max(1))
    }
}
