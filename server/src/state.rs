//! What the server keeps: the agent directory view, task routes, recent dispatches.

use comms_agent::auth::{FleetKey, ReplayGuard};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, UNIX_EPOCH};

use comms::{Address, Directory, Query};
use tokio::sync::mpsc;

use crate::config::ServerConfig;
use crate::protocol::{AgentInfo, DispatchRecord, TargetResult};

/// Where a running task's messages go.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) dispatch: String,
    pub(crate) agent: Address,
    pub(crate) requester: Address,
    pub(crate) results: mpsc::Sender<TargetResult>,
}

#[derive(Debug)]
pub(crate) struct State {
    /// The fleet key and the ids of requests it already accepted.
    pub(crate) auth: Option<(FleetKey, Mutex<ReplayGuard>)>,
    pub(crate) directory: Directory,
    pub(crate) config: ServerConfig,
    pub(crate) started: Instant,
    pub(crate) backend: String,
    routes: Mutex<HashMap<String, Route>>,
    recent: Mutex<VecDeque<DispatchRecord>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    pub(crate) fn new(
        directory: Directory,
        config: ServerConfig,
        backend: String,
        key: Option<FleetKey>,
    ) -> Self {
        Self {
            auth: key.map(|k| (k, Mutex::default())),
            directory,
            config,
            started: Instant::now(),
            backend,
            routes: Mutex::default(),
            recent: Mutex::default(),
        }
    }

    /// Signs `msg` with the fleet key, if the server has one.
    pub(crate) fn sign(&self, msg: &mut comms::Message) {
        if let Some((key, _)) = &self.auth {
            key.sign(msg);
        }
    }

    /// With a fleet key: whether `msg` is signed with it for the server, fresh and new.
    pub(crate) fn admit(&self, msg: &comms::Message) -> Result<(), comms_agent::auth::AuthError> {
        match &self.auth {
            Some((key, guard)) => guard.lock().unwrap_or_else(|p| p.into_inner()).check(
                key,
                msg,
                crate::protocol::SERVER_SERVICE,
            ),
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
        lock(&self.recent).iter().filter(|r| !r.done).count()
    }

    /// Record a new dispatch; the oldest finished ones are dropped past the bound.
    pub(crate) fn begin(&self, record: DispatchRecord) {
        let mut recent = lock(&self.recent);
        recent.push_back(record);
        while recent.len() > self.config.recent.max(1) {
            match recent.iter().position(|r| r.done) {
                Some(i) => {
                    recent.remove(i);
                }
                None => break,
            }
        }
    }

    pub(crate) fn update(
        &self,
        dispatch: &str,
        change: impl FnOnce(&mut DispatchRecord),
    ) -> Option<DispatchRecord> {
        let mut recent = lock(&self.recent);
        let record = recent.iter_mut().find(|r| r.dispatch == dispatch)?;
        change(record);
        Some(record.clone())
    }

    pub(crate) fn recent(&self) -> Vec<DispatchRecord> {
        lock(&self.recent).iter().cloned().collect()
    }
}
