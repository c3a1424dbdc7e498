//! Running one dispatch: send `RUN` to every target, gather `RESULT`s until the deadline,
//! report every target exactly once (ok / failed / timeout / unreachable / cancelled).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comms::{Address, Endpoint, Message, TypedMessage};
use comms_agent::protocol::{RunTask, TaskResult, TaskStatus};
use tokio::sync::mpsc;

use crate::protocol::{
    cmd, Accepted, AgentInfo, DispatchRecord, DispatchRequest, Outcome, TargetResult,
};
use crate::state::{Route, State};

/// Map an agent's task status to a target outcome.
pub fn outcome_of(result: &TaskResult) -> Outcome {
    match result.status {
        TaskStatus::Ok => Outcome::Ok,
        TaskStatus::Timeout => Outcome::Timeout,
        TaskStatus::Cancelled => Outcome::Cancelled,
        TaskStatus::Failed | TaskStatus::Error | TaskStatus::Rejected => Outcome::Failed,
    }
}

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

async fn report(ep: &Endpoint, state: &State, requester: &Address, result: TargetResult) {
    state.update(&result.dispatch, |r| r.results.push(result.clone()));
    tell(ep, requester, cmd::TARGET_RESULT, &result).await;
}

/// Start a dispatch: returns what to answer at once; the rest runs in the background.
pub(crate) async fn start(
    ep: Endpoint,
    state: Arc<State>,
    request: DispatchRequest,
    requester: Address,
) -> Accepted {
    let dispatch = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    let (live, down) = select(&state, &request);
    let accepted = Accepted {
        dispatch: dispatch.clone(),
        targets: live.iter().map(|a| a.address.clone()).collect(),
        unreachable: down.iter().map(|a| a.address.clone()).collect(),
    };
    state.begin(DispatchRecord {
        dispatch: dispatch.clone(),
        argv: request.argv.clone(),
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        done: false,
        outcomes: Default::default(),
        results: Vec::new(),
    });
    tokio::spawn(run(ep, state, request, requester, dispatch, live, down));
    accepted
}

async fn run(
    ep: Endpoint,
    state: Arc<State>,
    request: DispatchRequest,
    requester: Address,
    dispatch: String,
    live: Vec<AgentInfo>,
    down: Vec<AgentInfo>,
) {
    let (tx, mut rx) = mpsc::channel(live.len() + 16);
    let mut pending: HashMap<String, Address> = HashMap::new();
    for agent in &down {
        let result = TargetResult {
            dispatch: dispatch.clone(),
            agent: agent.address.clone(),
            outcome: Outcome::Unreachable,
            result: None,
        };
        report(&ep, &state, &requester, result).await;
    }
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
                requester: requester.clone(),
                results: tx.clone(),
            },
        );
        let run = RunTask {
            task: task.clone(),
            argv: request.argv.clone(),
            env: request.env.clone(),
            cwd: request.cwd.clone(),
            timeout_ms: request.timeout_ms,
            output_cap: request.output_cap,
        };
        let sent = match run.to_message(address.clone()) {
            Ok(mut msg) => {
                state.sign(&mut msg);
                ep.send(msg).await
            }
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => {
                pending.insert(task, address);
            }
            Err(e) => {
                tracing::warn!(agent = %address, error = %e, "task not sent");
                let result = TargetResult {
                    dispatch: dispatch.clone(),
                    agent: agent.address.clone(),
                    outcome: Outcome::Unreachable,
                    result: None,
                };
                report(&ep, &state, &requester, result).await;
            }
        }
    }
    drop(tx);
    // Saturating: a requester's absurd timeout_ms must not overflow the clock.
    let wait = Duration::from_millis(request.timeout_ms)
        .saturating_add(Duration::from_secs(state.config.deadline_grace_secs));
    let now = tokio::time::Instant::now();
    let deadline = now
        .checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
    while !pending.is_empty() {
        tokio::select! {
            r = rx.recv() => match r {
                Some(result) => {
                    let task = result.result.as_ref().map(|r| r.task.clone()).unwrap_or_default();
                    if pending.remove(&task).is_some() {
                        report(&ep, &state, &requester, result).await;
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
            dispatch: dispatch.clone(),
            agent: agent.to_string(),
            outcome,
            result: None,
        };
        report(&ep, &state, &requester, result).await;
    }
    state.drop_routes(&dispatch);
    if let Some(record) = state.update(&dispatch, |r| r.done = true) {
        tell(&ep, &requester, cmd::DISPATCH_DONE, &record.summary()).await;
    }
}
