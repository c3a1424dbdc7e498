//! Tool → server: requests to the `server` service (from `commsctl` or any tool), payloads
//! as JSON in the `data` parameter. With a fleet key, every request is signed ([`crate::auth`]).
//!
//! - `AGENTS` → `AGENT_LIST` (data: `Vec<AgentInfo>`), paged: see [`page`].
//! - `DISPATCH` (data: [`DispatchRequest`]; optional param `requested_by`, kept in the
//!   history) → `DISPATCH_ACCEPTED` (data: [`Accepted`]), then, to
//!   the requester, `TARGET_OUTPUT` chunks and one `TARGET_RESULT` per target as they arrive, and
//!   `DISPATCH_DONE` (data: [`DispatchRecord::summary`]: outcome counts, not the results
//!   already streamed, so it stays small for any fleet size) when every target has a result or
//!   its deadline passed.
//! - `RESULTS` → `RESULT_LIST` (data: recent `Vec<DispatchRecord>`, paged; a record too big for
//!   a page comes as its summary). The list comes from the server's history, which survives
//!   restarts.
//! - `DISPATCH_RESULTS` (param `dispatch`) → `TARGET_RESULTS` (data: that dispatch's
//!   `Vec<TargetResult>` with full output tails, paged); an unknown id is an `ERROR`.
//! - A `RESULT` ([`crate::task::TaskResult`]) is acknowledged by the server with `RESULT_ACK`
//!   (param `task`) once stored; an agent keeps and resends a result until then.
//! - `CANCEL_DISPATCH` (param `dispatch`) → `CANCEL` to each running target.
//! - `SERVER_STATUS` → `SERVER_STATUS_REPORT` (data: [`ServerStatus`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::task::{TaskResult, TaskStatus};
use crate::Job;

/// Command names.
pub mod cmd {
    #![allow(missing_docs)]
    pub const AGENTS: &str = "AGENTS";
    pub const AGENT_LIST: &str = "AGENT_LIST";
    pub const DISPATCH: &str = "DISPATCH";
    pub const DISPATCH_ACCEPTED: &str = "DISPATCH_ACCEPTED";
    pub const TARGET_OUTPUT: &str = "TARGET_OUTPUT";
    pub const TARGET_RESULT: &str = "TARGET_RESULT";
    pub const DISPATCH_DONE: &str = "DISPATCH_DONE";
    pub const RESULTS: &str = "RESULTS";
    pub const RESULT_LIST: &str = "RESULT_LIST";
    pub const CANCEL_DISPATCH: &str = "CANCEL_DISPATCH";
    pub const SERVER_STATUS: &str = "SERVER_STATUS";
    pub const SERVER_STATUS_REPORT: &str = "SERVER_STATUS_REPORT";
    pub const DISPATCH_RESULTS: &str = "DISPATCH_RESULTS";
    pub const TARGET_RESULTS: &str = "TARGET_RESULTS";
}

/// The server's service name.
pub const SERVER_SERVICE: &str = "server";

/// Which agents a dispatch goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// One agent: its id (or an 8+ character prefix), service name or address.
    Agent(String),
    /// Members of a group.
    Group(String),
    /// Agents with this label value.
    Label(String, String),
    /// Every live agent.
    All,
}

/// An agent as the server knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// `node:service`.
    pub address: String,
    /// Stable id.
    pub id: String,
    /// Live or not.
    pub up: bool,
    /// Groups.
    pub groups: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Facts.
    pub facts: BTreeMap<String, String>,
    /// Unix seconds of the last up/down change.
    pub since_unix: u64,
}

impl AgentInfo {
    /// Whether `selector` picks this agent.
    pub fn matches(&self, selector: &Selector) -> bool {
        match selector {
            Selector::All => true,
            Selector::Group(g) => self.groups.iter().any(|x| x == g),
            Selector::Label(k, v) => self.labels.get(k) == Some(v),
            Selector::Agent(a) => {
                let service = self.address.split_once(':').map_or("", |(_, s)| s);
                self.id == *a
                    || self.address == *a
                    || service == a
                    || (a.len() >= 8 && self.id.starts_with(a.as_str()))
            }
        }
    }
}

/// A [`Job`] to run on the agents a selector picks. Its JSON: `selector` and the job's fields,
/// side by side. Each target gets the job as a [`crate::task::RunTask`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchRequest {
    /// Target agents.
    pub selector: Selector,
    /// What to run; `timeout_ms` is also each target's deadline.
    #[serde(flatten)]
    pub job: Job,
}

/// The answer to `DISPATCH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// Dispatch id.
    pub dispatch: String,
    /// Live targets the task was sent to.
    pub targets: Vec<String>,
    /// Targets named by the selector that are down (reported `unreachable` at once).
    pub unreachable: Vec<String>,
}

/// How one target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// Non-zero exit, signal, refused or could not start.
    Failed,
    /// No result by the deadline.
    Timeout,
    /// The agent is down or could not be reached.
    Unreachable,
    /// Cancelled on request.
    Cancelled,
}

/// The target outcome of an agent's task status.
pub fn outcome_of(result: &TaskResult) -> Outcome {
    match result.status {
        TaskStatus::Ok => Outcome::Ok,
        TaskStatus::Timeout => Outcome::Timeout,
        TaskStatus::Cancelled => Outcome::Cancelled,
        TaskStatus::Failed | TaskStatus::Error | TaskStatus::Rejected => Outcome::Failed,
    }
}

/// One target's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetResult {
    /// Dispatch id.
    pub dispatch: String,
    /// Agent address.
    pub agent: String,
    /// Outcome.
    pub outcome: Outcome,
    /// The agent's result, when it sent one.
    pub result: Option<TaskResult>,
}

/// One output chunk of one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetOutput {
    /// Dispatch id.
    pub dispatch: String,
    /// Agent address.
    pub agent: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// Text.
    pub data: String,
}

/// A finished (or running) dispatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchRecord {
    /// Dispatch id.
    pub dispatch: String,
    /// argv.
    pub argv: Vec<String>,
    /// Unix seconds when it started.
    pub started_unix: u64,
    /// Whether every target has an outcome.
    pub done: bool,
    /// How many targets ended with each outcome (`ok`, `failed`...). Always filled; when a
    /// record would not fit in one message, `results` is left empty and this remains.
    #[serde(default)]
    pub outcomes: BTreeMap<String, usize>,
    /// Results so far.
    pub results: Vec<TargetResult>,
    /// The address the `DISPATCH` came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// Who asked, when the `DISPATCH` carried it (its `requested_by` parameter, e.g.
    /// `user@host`); informative, not authenticated beyond the request's own signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

impl DispatchRecord {
    /// Fills [`DispatchRecord::outcomes`] from `results`.
    pub fn counted(mut self) -> Self {
        self.outcomes.clear();
        for r in &self.results {
            let name = serde_json::to_value(r.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *self.outcomes.entry(name).or_default() += 1;
        }
        self
    }

    /// The record with its outcome counts and without the per-target results.
    pub fn summary(self) -> Self {
        let mut s = self.counted();
        s.results.clear();
        s
    }
}

/// Bytes of JSON items per `AGENT_LIST` / `RESULT_LIST` page: well inside the smallest
/// transport limit (native: 30 KiB per message, values escaped), so a list of any length
/// crosses every backend. A request's `offset=N` asks for the page starting at item N; a
/// reply's `next=M` says more items follow from M.
pub const PAGE_BYTES: usize = 12 * 1024;

/// The JSON array of `items[offset..]` that fits in [`PAGE_BYTES`] (at least one item), and
/// the offset of the next page if any.
pub fn page<T: Serialize>(
    items: &[T],
    offset: usize,
) -> serde_json::Result<(String, Option<usize>)> {
    let mut out = String::from("[");
    let mut i = offset;
    while let Some(item) = items.get(i) {
        let json = serde_json::to_string(item)?;
        if i > offset && out.len() + json.len() + 2 > PAGE_BYTES {
            break;
        }
        if i > offset {
            out.push(',');
        }
        out.push_str(&json);
        i += 1;
    }
    out.push(']');
    Ok((out, (i < items.len()).then_some(i)))
}

/// The answer to `SERVER_STATUS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Server address.
    pub address: String,
    /// Transport backend.
    pub backend: String,
    /// Agents up.
    pub agents_up: usize,
    /// Agents down.
    pub agents_down: usize,
    /// Dispatches running.
    pub dispatches_running: usize,
    /// Seconds since start.
    pub uptime_secs: u64,
}

#[cfg(test)]
mod page_tests {
    use super::*;

    #[test]
    fn pages_cover_every_item_once_and_stay_under_the_budget() {
        let items: Vec<String> = (0..3000)
            .map(|i| format!("item-{i:05}-{}", "x".repeat(i % 50)))
            .collect();
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let (json, next) = page(&items, offset).unwrap();
            assert!(json.len() <= PAGE_BYTES, "{}", json.len());
            let mut got: Vec<String> = serde_json::from_str(&json).unwrap();
            assert!(!got.is_empty());
            seen.append(&mut got);
            match next {
                Some(n) => offset = n,
                None => break,
            }
        }
        assert_eq!(seen, items);
        assert_eq!(page::<String>(&[], 0).unwrap(), ("[]".to_owned(), None));
    }
}
