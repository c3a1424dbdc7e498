//! The server endpoint and its handlers.
//!
//! Its fleet key ([`fleet_key`], [`fleet_auth`]): `key_file`, else `<state_dir>/fleet.key`, created on the
//! first start (mode 0600, [`crate::keygen`]) so that `agent` and `commsctl` on the same host
//! find it; keyless only when `insecure`. With a key every request must be signed (its
//! replay guard is kept in `<state_dir>/replay-guard`), and the history records the origin
//! of each `DISPATCH` (`requester`).

use std::sync::Arc;
use std::time::Duration;

use comms::{Directory, Endpoint, HandlerError, Outcome, Request, Transport, TypedMessage};
use comms_fleet::auth::{FleetAuth, FleetKey, KEY_FILE_NAME, REPLAY_GUARD_FILE};
use comms_fleet::control::{
    cmd, outcome_of, page, AgentInfo, DispatchRecord, DispatchRequest, ServerStatus, TargetOutput,
    TargetResult, PAGE_BYTES, SERVER_SERVICE,
};
use comms_fleet::task::{cmd as task_cmd, CancelTask, TaskOutput, TaskResult};

use crate::config::ServerConfig;
use crate::dispatch;
use crate::state::State;
use crate::store::Store;

/// A running server.
#[derive(Debug)]
pub struct Server {
    endpoint: Endpoint,
    state: Arc<State>,
}

/// How long [`Server::shutdown`] waits for the endpoint to close (SIGTERM to exit stays
/// under 5 s, the embedded daemon's stop included).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Longest task timeout accepted.
pub const MAX_TASK_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl Server {
    /// Advertise as `server`, watch the agents, serve requests.
    pub async fn start(
        transport: Box<dyn Transport>,
        config: ServerConfig,
    ) -> comms::Result<Server> {
        config.validate().map_err(comms::Error::Config)?;
        let directory = Directory::new();
        let backend = transport.capabilities().backend.to_owned();
        let store = Store::open(
            &config.state_dir,
            config.retain_dispatches,
            config.retain_days,
        )
        .map_err(|e| comms::Error::Config(e.to_string()))?;
        let unfinished = store
            .unfinished()
            .map_err(|e| comms::Error::Config(e.to_string()))?;
        let auth = fleet_auth(&config).map_err(comms::Error::Config)?;
        let state = Arc::new(State::new(
            directory.clone(),
            config.clone(),
            backend,
            auth,
            store,
        ));
        let endpoint = Endpoint::builder(transport, SERVER_SERVICE)
            .ttl(Duration::from_secs(config.ttl_secs.max(1)))
            .fact("role", "server")
            .directory(directory)
            .handle(cmd::AGENTS, with_state(&state, on_agents))
            .handle(cmd::DISPATCH, with_state(&state, on_dispatch))
            .handle(cmd::RESULTS, with_state(&state, on_results))
            .handle(cmd::CANCEL_DISPATCH, with_state(&state, on_cancel))
            .handle(cmd::SERVER_STATUS, with_state(&state, on_status))
            .handle(
                cmd::DISPATCH_RESULTS,
                with_state(&state, on_dispatch_results),
            )
            .on::<TaskResult, _, _>({
                let state = state.clone();
                move |req, result| on_result(state.clone(), req, result)
            })
            .on::<TaskOutput, _, _>({
                let state = state.clone();
                move |req, output| on_output(state.clone(), req, output)
            })
            .start()
            .await?;
        for open in unfinished {
            dispatch::resume(endpoint.clone(), state.clone(), open);
        }
        tracing::info!(address = %endpoint.address(), state_dir = %config.state_dir.display(), "server up");
        Ok(Server { endpoint, state })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Registers the server's metrics (agents, dispatches, outcomes, task durations) and its
    /// transport's into `metrics` (served by `--http`).
    pub fn register_metrics(&self, metrics: &comms_ops::Metrics) {
        self.state.metrics.register(metrics, &self.state);
        if let Some(stats) = self.endpoint.transport().stats() {
            metrics.register_collector(comms_ops::transport::TransportCollector::new(
                stats,
                self.state.backend.clone(),
            ));
        }
    }

    /// Let `view` show this server's state (its routes answer 503 until then).
    pub fn attach_web(&self, view: &crate::web::WebView) {
        view.attach(&self.state);
    }

    /// Agents as the server sees them now.
    pub fn agents(&self) -> Vec<AgentInfo> {
        self.state.agents()
    }

    /// Close, bounded by [`SHUTDOWN_GRACE`]: messages still unacknowledged then (output for a
    /// gone `commsctl`, say) are dropped; results are safe in the history and with the agents.
    pub async fn shutdown(self) -> comms::Result<()> {
        match tokio::time::timeout(SHUTDOWN_GRACE, self.endpoint.close()).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(
                    "closing took over {}s: stopping anyway",
                    SHUTDOWN_GRACE.as_secs()
                );
                Ok(())
            }
        }
    }
}

/// The server's fleet key (see the module docs): `key_file`, else `<state_dir>/fleet.key`,
/// created if missing; `None` only when `insecure` (and no `key_file`). `main` reads it before
/// starting the embedded daemon, whose admin token is derived from it.
pub fn fleet_key(config: &ServerConfig) -> Result<Option<FleetKey>, String> {
    let path = match &config.key_file {
        Some(p) => p.clone(),
        None if config.insecure => return Ok(None),
        None => {
            let path = config.state_dir.join(KEY_FILE_NAME);
            let created = create_key(&path)
                .map_err(|e| format!("creating the fleet key {}: {e}", path.display()))?;
            if created {
                tracing::info!(
                    "created a fleet key at {} (mode 0600): agents and commsctl on this host \
                     find it there; give it to agents on other hosts (--key-file)",
                    path.display()
                );
            }
            path
        }
    };
    let key = FleetKey::from_file(&path).map_err(|e| e.to_string())?;
    tracing::debug!(key_file = %path.display(), keys = key.accepted(), "fleet key");
    Ok(Some(key))
}

/// The server's key and replay guard (see the module docs); `None` only when `insecure`.
fn fleet_auth(config: &ServerConfig) -> Result<Option<FleetAuth>, String> {
    let Some(key) = fleet_key(config)? else {
        tracing::warn!(
            "INSECURE: no fleet key (--insecure): this server answers unsigned requests \
             from any client and sends unsigned tasks"
        );
        return Ok(None);
    };
    FleetAuth::persistent(key, &config.state_dir.join(REPLAY_GUARD_FILE))
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Creates a key file at `path` (and its directory) unless one is there; whether it did.
fn create_key(path: &std::path::Path) -> Result<bool, String> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    match crate::keygen::write_key_file(path, false) {
        Ok(()) => Ok(true),
        Err(crate::keygen::KeygenError::Exists(_)) => Ok(false), // another start made it
        Err(e) => Err(e.to_string()),
    }
}

type Handled = Result<Outcome, HandlerError>;

/// Wraps a request handler: with a fleet key, only signed requests reach it (the others get
/// an `ERROR` reply saying why, and a log line).
fn with_state<F, Fut>(
    state: &Arc<State>,
    f: F,
) -> impl Fn(Request) -> std::pin::Pin<Box<dyn std::future::Future<Output = Handled> + Send>>
       + Send
       + Sync
       + 'static
where
    F: Fn(Arc<State>, Request) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Handled> + Send + 'static,
{
    let state = state.clone();
    move |req| {
        if let Err(e) = state.admit(req.message()) {
            tracing::warn!(from = ?req.message().from(), command = %req.message().command, reason = %e, "request refused");
            let why = format!("not authorized: {e}");
            return Box::pin(async move { Err(HandlerError::Failed(why)) });
        }
        Box::pin(f(state.clone(), req))
    }
}

/// A page of `items` as the reply `command`, from the request's `offset` (see [`page`]).
fn paged<T: serde::Serialize>(req: &Request, command: &str, items: &[T]) -> Handled {
    let offset = match req.message().param("offset") {
        None => 0,
        Some(v) => v.parse().map_err(|_| {
            HandlerError::Invalid(comms::Invalid::new("offset", "not a non-negative integer"))
        })?,
    };
    let (data, next) = page(items, offset).map_err(comms::Error::from)?;
    let mut reply = req.reply(command)?.with_param("data", data);
    if let Some(n) = next {
        reply = reply.with_param("next", n.to_string());
    }
    Ok(Outcome::Reply(reply))
}

async fn on_agents(state: Arc<State>, req: Request) -> Handled {
    paged(&req, cmd::AGENT_LIST, &state.agents())
}

async fn on_dispatch(state: Arc<State>, req: Request) -> Handled {
    let request: DispatchRequest = req.message().data()?;
    if request.job.argv.is_empty() {
        return Err(HandlerError::Invalid(comms::Invalid::new(
            "data",
            "argv is empty",
        )));
    }
    let timeout_ms = request.job.timeout_ms;
    if timeout_ms == 0 || Duration::from_millis(timeout_ms) > MAX_TASK_TIMEOUT {
        return Err(HandlerError::Invalid(comms::Invalid::new(
            "data",
            "timeout_ms must be between 1 ms and 24 h",
        )));
    }
    if state.running() >= state.config.max_running {
        return Err(HandlerError::Failed(format!(
            "busy: {} dispatches running",
            state.config.max_running
        )));
    }
    let requester = req
        .message()
        .from()
        .cloned()
        .ok_or_else(|| HandlerError::Failed("no origin".into()))?;
    let requested_by = req.message().param("requested_by").map(str::to_owned);
    let accepted = dispatch::start(
        req.endpoint.clone(),
        state,
        request,
        requester,
        requested_by,
    )
    .await
    .map_err(|e| HandlerError::Failed(format!("history: {e}")))?;
    Ok(Outcome::Reply(
        req.reply(cmd::DISPATCH_ACCEPTED)?.with_data(&accepted)?,
    ))
}

async fn on_results(state: Arc<State>, req: Request) -> Handled {
    let records: Vec<DispatchRecord> = state
        .recent()
        .map_err(|e| HandlerError::Failed(format!("history: {e}")))?
        .into_iter()
        .map(|r| {
            let r = r.counted();
            let fits = serde_json::to_string(&r).is_ok_and(|j| j.len() <= PAGE_BYTES);
            if fits {
                r
            } else {
                r.summary()
            }
        })
        .collect();
    paged(&req, cmd::RESULT_LIST, &records)
}

async fn on_dispatch_results(state: Arc<State>, req: Request) -> Handled {
    let dispatch = req.message().param("dispatch").ok_or_else(|| {
        HandlerError::Invalid(comms::Invalid::new(
            "dispatch",
            "required parameter is missing",
        ))
    })?;
    let record = state
        .store
        .recent_one(dispatch)
        .map_err(|e| HandlerError::Failed(format!("history: {e}")))?
        .ok_or_else(|| HandlerError::Failed(format!("unknown dispatch `{dispatch}`")))?;
    paged(&req, cmd::TARGET_RESULTS, &record.results)
}

async fn on_cancel(state: Arc<State>, req: Request) -> Handled {
    let dispatch = req.message().param("dispatch").ok_or_else(|| {
        HandlerError::Invalid(comms::Invalid::new(
            "dispatch",
            "required parameter is missing",
        ))
    })?;
    let routes = state.routes_of(dispatch);
    for (task, route) in &routes {
        if let Err(e) = req
            .endpoint
            .send({
                let mut m = CancelTask { task: task.clone() }.to_message(route.agent.clone())?;
                state.sign(&mut m);
                m
            })
            .await
        {
            tracing::warn!(agent = %route.agent, error = %e, "cancel not sent");
        }
    }
    Ok(Outcome::Reply(
        req.reply("CANCELLED")?
            .with_param("tasks", routes.len().to_string()),
    ))
}

async fn on_status(state: Arc<State>, req: Request) -> Handled {
    let agents = state.agents();
    let up = agents.iter().filter(|a| a.up).count();
    let status = ServerStatus {
        address: req.endpoint.address().to_string(),
        backend: state.backend.clone(),
        agents_up: up,
        agents_down: agents.len() - up,
        dispatches_running: state.running(),
        uptime_secs: state.started.elapsed().as_secs(),
    };
    Ok(Outcome::Reply(
        req.reply(cmd::SERVER_STATUS_REPORT)?.with_data(&status)?,
    ))
}

async fn on_result(state: Arc<State>, req: Request, result: TaskResult) -> Handled {
    // Acknowledged whether or not a dispatch waits for it: the agent may stop resending.
    if let Some(agent) = req.message().from().cloned() {
        ack_result(&req.endpoint, &state, agent, &result.task).await;
    }
    let Some(route) = state.route(&result.task) else {
        tracing::info!(task = %result.task, "result for a task no dispatch waits for (dropped)");
        return Ok(Outcome::Done);
    };
    let target = TargetResult {
        dispatch: route.dispatch.clone(),
        agent: route.agent.to_string(),
        outcome: outcome_of(&result),
        result: Some(result),
    };
    // The dispatch may have just finished (deadline): then nobody listens, which is fine.
    let _ = route.results.send(target).await;
    Ok(Outcome::Done)
}

async fn on_output(state: Arc<State>, req: Request, output: TaskOutput) -> Handled {
    let Some(route) = state.route(&output.task) else {
        return Ok(Outcome::Done);
    };
    let chunk = TargetOutput {
        dispatch: route.dispatch,
        agent: route.agent.to_string(),
        stream: output.stream,
        data: output.data,
    };
    state.output(&chunk);
    let Some(requester) = route.requester else {
        return Ok(Outcome::Done); // resumed after a restart: nobody watches the stream
    };
    let msg = comms::Message::new(cmd::TARGET_OUTPUT, requester)?.with_data(&chunk)?;
    req.endpoint.send(msg).await?;
    Ok(Outcome::Done)
}

/// Tells an agent its `RESULT` for `task` is kept (`RESULT_ACK`, at-most-once: a lost ack
/// only means one more resend).
async fn ack_result(ep: &Endpoint, state: &State, agent: comms::Address, task: &str) {
    let msg = comms::Message::new(task_cmd::RESULT_ACK, agent)
        .map(|m| m.with_param("task", task).at_most_once());
    if let Ok(mut msg) = msg {
        state.sign(&mut msg);
        if let Err(e) = ep.send(msg).await {
            tracing::debug!(%task, error = %e, "result ack not sent");
        }
    }
}
