//! Running one dispatch: send `RUN` to every target, gather `RESULT`s until the deadline,
//! report every target exactly once (ok / failed / timeout / unreachable / cancelled).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use comms::{Address, Endpoint, Message, TypedMessage};
use comms_fleet::control::{
    cmd, Accepted, AgentInfo, DispatchRecord, DispatchRequest, Outcome, TargetResult,
};
use comms_fleet::task::RunTask;
use tokio::sync::mpsc;

use crate::state::{Route, State};
use crate::store::{now_unix, StoreError, Unfinished};

/// Pick targets: live agents the selector matches, and matching agents that are down.
pub(crate) fn select(state: &State, request: &DispatchRequest) -> (Vec<AgentInfo>, Vec<AgentInfo>) {
    state
        .agents()
        .into_iter()
        .filter(|a| a.matches(&request.selector))
        .partition(|a| a.up)
}

/// Send `data` as `command` to the requester; a failure is logged (the requester may be gone).
async fn tell<T: serde::Serialize>(ep: &Endpoint, requester: &Address, command: &str, data: &T) {
    let sent = match Message::new(command, requester.clone()).and_then(|m| m.with_data(data)) {
        Ok(m) => ep.send(m).await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        tracing::warn!(to = %requester, command, error = %e, "not delivered to the requester");
    }
}

async fn report(ep: &Endpoint, state: &State, requester: Option<&Address>, result: TargetResult) {
    state.keep(&result);
    if let Some(requester) = requester {
        tell(ep, requester, cmd::TARGET_RESULT, &result).await;
    }
}

/// Start a dispatch: returns what to answer at once; the rest runs in the background.
/// `requested_by` is who asked, when the request said so.
pub(crate) async fn start(
    ep: Endpoint,
    state: Arc<State>,
    request: DispatchRequest,
    requester: Address,
    requested_by: Option<String>,
) -> Result<Accepted, StoreError> {
    let dispatch = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    let (live, down) = select(&state, &request);
    let accepted = Accepted {
        dispatch: dispatch.clone(),
        targets: live.iter().map(|a| a.address.clone()).collect(),
        unreachable: down.iter().map(|a| a.address.clone()).collect(),
    };
    let started = now_unix();
    let record = DispatchRecord {
        dispatch: dispatch.clone(),
        argv: request.job.argv.clone(),
        started_unix: started,
        done: false,
        outcomes: Default::default(),
        results: Vec::new(),
        requester: Some(requester.to_string()),
        requested_by,
    };
    let wait = wait_of(&state, &request);
    state.begin(
        &record,
        started.saturating_add(wait.as_secs().saturating_add(1)),
    )?;
    tokio::spawn(run(ep, state, request, requester, record, live, down, wait));
    Ok(accepted)
}

/// How long a dispatch waits for its results. Saturating: a requester's absurd timeout_ms
/// must not overflow the clock.
fn wait_of(state: &State, request: &DispatchRequest) -> Duration {
    Duration::from_millis(request.job.timeout_ms)
        .saturating_add(Duration::from_secs(state.config.deadline_grace_secs))
}

fn deadline_in(wait: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// The shortest wait for the results of a dispatch resumed after a restart.
pub(crate) const RESUME_WINDOW: Duration = Duration::from_secs(15);

/// Take up a dispatch that was running when the server stopped: accept the results its
/// agents still send until its deadline, then report the missing targets.
pub(crate) fn resume(ep: Endpoint, state: Arc<State>, open: Unfinished) {
    let dispatch = open.record.dispatch.clone();
    state.resume(&dispatch);
    let (tx, rx) = mpsc::channel(open.tasks.len() + 16);
    let mut pending = HashMap::new();
    for (task, agent) in open.tasks {
        if state.store.has_result(&dispatch, &agent).unwrap_or(false) {
            continue;
        }
        let Ok(address) = agent.parse::<Address>() else {
            continue;
        };
        state.add_route(
            task.clone(),
            Route {
                dispatch: dispatch.clone(),
                agent: address.clone(),
                requester: None,
                results: tx.clone(),
            },
        );
        pending.insert(task, address);
    }
    drop(tx);
    // At least RESUME_WINDOW: the agents need a moment to reconnect and resend, even when
    // the server was down past the dispatch's deadline.
    let left =
        Duration::from_secs(open.deadline_unix.saturating_sub(now_unix())).max(RESUME_WINDOW);
    tracing::info!(%dispatch, targets = pending.len(), "dispatch resumed: waiting for its results");
    tokio::spawn(async move {
        collect(&ep, &state, None, &dispatch, pending, rx, deadline_in(left)).await;
    });
}

#[allow(clippy::too_many_arguments)]
async fn run(
    ep: Endpoint,
    state: Arc<State>,
    request: DispatchRequest,
    requester: Address,
    record: DispatchRecord,
    live: Vec<AgentInfo>,
    down: Vec<AgentInfo>,
    wait: Duration,
) {
    let dispatch = record.dispatch;
    let (tx, rx) = mpsc::channel(live.len() + 16);
    let mut pending: HashMap<String, Address> = HashMap::new();
    for agent in &down {
        let result = TargetResult {
            dispatch: dispatch.clone(),
            agent: agent.address.clone(),
            outcome: Outcome::Unreachable,
            result: None,
        };
        report(&ep, &state, Some(&requester), result).await;
    }
    let mut tasks = Vec::new();
    for (i, agent) in live.iter().enumerate() {
        let task = format!("{dispatch}_{i}");
        let Ok(address) = agent.address.parse::<Address>() else {
            continue;
        };
        state.add_route(
            task.clone(),
            Route {
                dispatch: dispatch.clone(),
                agent: address.clone(),
                requester: Some(requester.clone()),
                results: tx.clone(),
            },
        );
        tasks.push((task.clone(), address.to_string()));
        pending.insert(task, address);
    }
    // Stored before any RUN leaves: a result may come back to a restarted server.
    if let Err(e) = state.store.set_tasks(&dispatch, &tasks) {
        tracing::error!(%dispatch, error = %e, "dispatch tasks not stored");
    }
    for (task, address) in pending.clone() {
        let run = RunTask {
            task: task.clone(),
            job: request.job.clone(),
        };
        let sent = match run.to_message(address.clone()) {
            Ok(mut msg) => {
                state.sign(&mut msg);
                ep.send(msg).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::warn!(agent = %address, error = %e, "task not sent");
            pending.remove(&task);
            let result = TargetResult {
                dispatch: dispatch.clone(),
                agent: address.to_string(),
                outcome: Outcome::Unreachable,
                result: None,
            };
            report(&ep, &state, Some(&requester), result).await;
        }
    }
    drop(tx);
    collect(
        &ep,
        &state,
        Some(&requester),
        &dispatch,
        pending,
        rx,
        deadline_in(wait),
    )
    .await;
}

/// Gather results until every pending target has one or the deadline passes; report the
/// missing ones; mark the dispatch done.
async fn collect(
    ep: &Endpoint,
    state: &State,
    requester: Option<&Address>,
    dispatch: &str,
    mut pending: HashMap<String, Address>,
    mut rx: mpsc::Receiver<TargetResult>,
    deadline: tokio::time::Instant,
) {
    while !pending.is_empty() {
        tokio::select! {
            r = rx.recv() => match r {
                Some(result) => {
                    let task = result.result.as_ref().map(|r| r.task.clone()).unwrap_or_default();
                    if pending.remove(&task).is_some() {
                        report(ep, state, requester, result).await;
                    }
                }
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    for (_task, agent) in pending {
        let up = state.directory.get(&agent).is_some_and(|e| e.up);
        let outcome = if up {
            Outcome::Timeout
        } else {
            Outcome::Unreachable
        };
        let result = TargetResult {
            dispatch: dispatch.to_owned(),
            agent: agent.to_string(),
            outcome,
            result: None,
        };
        report(ep, state, requester, result).await;
    }
    state.drop_routes(dispatch);
    state.finish(dispatch);
    if let Some(requester) = requester {
        let summary = state
            .store
            .recent_one(dispatch)
            .ok()
            .flatten()
            .map(DispatchRecord::summary);
        if let Some(summary) = summary {
            tell(ep, requester, cmd::DISPATCH_DONE, &summary).await;
        }
    }
}
