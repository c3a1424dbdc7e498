//! The agent endpoint: advertises, accepts tasks signed with the fleet key only, runs them.
//!
//! A `RUN` or `CANCEL` is admitted when it is signed with the fleet key for this agent, fresh
//! and new ([`FleetAuth`], its replay guard kept in `<state_dir>/replay-guard`, so a restart
//! does not reopen the window); the sender's name counts for nothing. Keyless (`insecure`)
//! the agent accepts every task, and says so loudly at start. A task's `secret_env` (sealed
//! with the fleet key) is opened here and added to its environment; it is never logged.
//!
//! Replies owed to peers never wedge the agent: `PONG` is sent at-most-once, and the native
//! transport keeps at most `REPLY_QUOTA` unacknowledged replies per destination (beyond it a
//! reply is written once), so a local process flooding fake `PING`s (or any request) without
//! acknowledging cannot fill the outbox that the task results share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comms::{Address, Endpoint, HandlerError, Outcome, Request, Transport};
use comms_fleet::auth::{FleetAuth, FleetKey, REPLAY_GUARD_FILE};
use comms_fleet::task::{
    cmd, CancelTask, RunTask, TaskOutput, TaskResult, TaskStatus, AGENT_PREFIX,
};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::AgentConfig;
use crate::runner::{self, TaskSpec};
use crate::{facts, identity, AgentError};

/// How long one reachability probe waits for its answer.
const REACH_PROBE: Duration = Duration::from_secs(2);

/// Logs "agent up" once the agent has really reached its transport: a `PING` to itself came
/// back through the daemon or broker (the first `advertise` of a native transport returns
/// while the daemon is still unreachable, the client then keeps trying). Until then it says
/// once that it is waiting.
async fn announce_when_reached(endpoint: Endpoint, id: String) {
    let mut waiting_said = false;
    loop {
        let probe = match comms::Message::new(cmd::PING, endpoint.address().clone()) {
            Ok(m) => m.at_most_once(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the reachability probe");
                return;
            }
        };
        let started = tokio::time::Instant::now();
        match endpoint.request(probe, REACH_PROBE).await {
            Ok(_) => {
                tracing::info!(address = %endpoint.address(), %id, "agent up");
                return;
            }
            Err(comms::Error::Closed) => return,
            Err(e) => {
                if !waiting_said {
                    tracing::info!(address = %endpoint.address(), error = %e, "agent started; waiting to reach its transport");
                    waiting_said = true;
                }
            }
        }
        // A probe that failed at once (nothing connected) waits out its period.
        tokio::time::sleep_until(started + REACH_PROBE).await;
    }
}

#[derive(Debug)]
struct Tasks {
    running: Mutex<HashMap<String, CancellationToken>>,
    /// With a fleet key: requests must be signed, and each is accepted once. `None` only
    /// when `insecure`.
    auth: Option<FleetAuth>,
    /// This agent's service name (what signatures must name).
    name: String,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    config: AgentConfig,
}

/// `comms_agent_tasks_running`, read at each scrape.
#[derive(Debug)]
struct RunningTasks(std::sync::Weak<Tasks>);

impl comms_ops::Collector for RunningTasks {
    fn encode(
        &self,
        mut encoder: comms_ops::prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        let Some(tasks) = self.0.upgrade() else {
            return Ok(());
        };
        let running = tasks.lock().len() as i64;
        comms_ops::encode::gauge(
            &mut encoder,
            "comms_agent_tasks_running",
            "Tasks this agent runs now (at most max_tasks).",
            &[(&[], running)],
        )
    }
}

impl Tasks {
    /// Whether `msg` may act on this agent: signed with the fleet key for it, fresh, and
    /// not seen before (whoever sent it). Keyless (`insecure`): always. `Err` says why not.
    fn admit(&self, msg: &comms::Message) -> Result<(), String> {
        match &self.auth {
            Some(auth) => auth
                .admit(msg, &self.name)
                .map_err(|e| format!("not authorized: {e}")),
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    endpoint: Endpoint,
    tasks: Arc<Tasks>,
    id: String,
}

impl Agent {
    /// Load (or make) the stable id and the replay guard, advertise, and start serving tasks.
    /// Without `key_file` it refuses to start ([`AgentError::NoKey`]) unless `insecure`.
    pub async fn start(
        transport: Box<dyn Transport>,
        config: AgentConfig,
    ) -> Result<Agent, AgentError> {
        config.validate().map_err(AgentError::Config)?;
        let id = identity::load_or_create(&config.state_dir)?;
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| format!("{AGENT_PREFIX}{}", &id[..10.min(id.len())]));
        let auth = match (&config.key_file, config.insecure) {
            (Some(path), _) => Some(FleetAuth::persistent(
                FleetKey::from_file(path)?,
                &config.state_dir.join(REPLAY_GUARD_FILE),
            )?),
            (None, true) => {
                tracing::warn!(
                    "INSECURE: no fleet key (--insecure): this agent runs unsigned tasks from \
                     any client that can reach it"
                );
                None
            }
            (None, false) => return Err(AgentError::NoKey(no_key_hint())),
        };
        let tasks = Arc::new(Tasks {
            running: Mutex::default(),
            auth,
            name: name.clone(),
            slots: Arc::new(Semaphore::new(config.max_tasks.max(1))),
            tracker: TaskTracker::new(),
            config: config.clone(),
        });
        let mut builder =
            Endpoint::builder(transport, name).ttl(Duration::from_secs(config.ttl_secs.max(1)));
        for g in &config.groups {
            builder = builder.group(g.clone());
        }
        for (k, v) in &config.labels {
            builder = builder.label(k.clone(), v.clone());
        }
        for (k, v) in facts::collect(&id) {
            builder = builder.fact(k, v);
        }
        let (t1, t2) = (tasks.clone(), tasks.clone());
        let endpoint = builder
            .on::<RunTask, _, _>(move |req, run| on_run(t1.clone(), req, run))
            .on::<CancelTask, _, _>(move |req, cancel| on_cancel(t2.clone(), req, cancel))
            // A PONG is a liveness answer: at-most-once, so askers that never acknowledge
            // (anyone can send PING) cannot fill this agent's outbox; a lost PONG is a probe
            // the asker repeats.
            .handle(cmd::PING, |req| async move {
                Ok(Outcome::Reply(req.reply(cmd::PONG)?.at_most_once()))
            })
            // The server stored a result: the transport's at-least-once delivery (resent
            // until the server side acknowledges it, across reconnects) already kept it.
            .handle(cmd::RESULT_ACK, |req| async move {
                tracing::debug!(task = ?req.message().param("task"), "result acknowledged");
                Ok(Outcome::Done)
            })
            .handle(cmd::FACTS, |req| {
                let facts = req.endpoint.advertisement().facts;
                async move {
                    Ok(Outcome::Reply(
                        req.reply(cmd::FACTS_REPORT)?.with_data(&facts)?,
                    ))
                }
            })
            .start()
            .await?;
        // Detached: it ends with the endpoint (its probe fails `Closed`) or the process.
        tokio::spawn(announce_when_reached(endpoint.clone(), id.clone()));
        Ok(Agent {
            endpoint,
            tasks,
            id,
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Registers the agent's metrics (tasks running, its transport's counters) into
    /// `metrics` (served by `--http`).
    pub fn register_metrics(&self, metrics: &comms_ops::Metrics) {
        metrics.register_collector(RunningTasks(Arc::downgrade(&self.tasks)));
        let transport = self.endpoint.transport();
        if let Some(stats) = transport.stats() {
            metrics.register_collector(comms_ops::transport::TransportCollector::new(
                stats,
                transport.capabilities().backend,
            ));
        }
    }

    /// The stable id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Cancel running tasks (their results are still sent), wait for them (bounded), close.
    pub async fn shutdown(self) -> Result<(), AgentError> {
        for token in self.tasks.lock().values() {
            token.cancel();
        }
        self.tasks.tracker.close();
        if tokio::time::timeout(runner::CANCEL_GRACE * 3, self.tasks.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("tasks still running at shutdown");
        }
        self.endpoint.close().await?;
        Ok(())
    }
}

/// Where the agent looked for a key and how to give it one (the text of [`AgentError::NoKey`]).
pub fn no_key_hint() -> String {
    format!(
        "no fleet key: none given (--key-file, COMMS_FLEET_KEY_FILE, [agent] key_file) and \
         none at {} (the server creates it there; run the agent in the server's working \
         directory or set COMMS_SERVER_STATE_DIR to its state directory), or run keyless with \
         --insecure",
        comms_fleet::auth::default_key_path().display()
    )
}

async fn send_result(ep: &Endpoint, to: &Address, result: &TaskResult) {
    if let Err(e) = ep.send_typed(to.clone(), result).await {
        tracing::warn!(task = %result.task, %to, error = %e, "could not send a task result");
    }
}

/// Answers a `RUN` that will not run with a `rejected` result saying why.
async fn reject(
    req: &Request,
    from: &Address,
    task: &str,
    why: impl Into<String>,
) -> Result<Outcome, HandlerError> {
    send_result(
        &req.endpoint,
        from,
        &TaskResult::not_run(task, TaskStatus::Rejected, why),
    )
    .await;
    Ok(Outcome::Done)
}

async fn on_run(tasks: Arc<Tasks>, req: Request, run: RunTask) -> Result<Outcome, HandlerError> {
    let Some(from) = req.message().from().cloned() else {
        return Err(HandlerError::Failed("a task without an origin".into()));
    };
    let config = &tasks.config;
    if let Err(why) = tasks.admit(req.message()) {
        tracing::warn!(%from, task = %run.task, reason = %why, "task refused");
        return reject(&req, &from, &run.task, why).await;
    }
    if run.job.timeout_ms == 0 {
        return reject(&req, &from, &run.task, "timeout_ms must be at least 1").await;
    }
    if tasks.lock().contains_key(&run.task) {
        return Ok(Outcome::Done); // already running: a resend
    }
    let Ok(permit) = tasks.slots.clone().try_acquire_owned() else {
        let why = format!("busy: {} tasks already running", config.max_tasks);
        return reject(&req, &from, &run.task, why).await;
    };
    let mut job = run.job;
    if let Some(sealed) = job.secret_env.take() {
        match open_secret_env(&tasks, &sealed) {
            Ok(vars) => job.env.extend(vars),
            Err(why) => return reject(&req, &from, &run.task, why).await,
        }
    }
    let spec = TaskSpec {
        task: run.task.clone(),
        argv: job.argv,
        env: job.env,
        cwd: job.cwd,
        timeout: Duration::from_millis(job.timeout_ms)
            .min(Duration::from_secs(config.max_timeout_secs)),
        output_cap: job.output_cap.min(config.max_output_bytes),
    };
    let cancel = CancellationToken::new();
    tasks.lock().insert(run.task.clone(), cancel.clone());
    let (ep, t) = (req.endpoint.clone(), tasks.clone());
    tasks.tracker.spawn(async move {
        let (tx, mut rx) = mpsc::channel::<runner::Chunk>(64);
        let streamer = {
            let (ep, from, task) = (ep.clone(), from.clone(), spec.task.clone());
            tokio::spawn(async move {
                let mut seq = 0;
                while let Some(chunk) = rx.recv().await {
                    let out = TaskOutput { task: task.clone(), stream: chunk.stream.into(), seq, data: chunk.data };
                    seq += 1;
                    if let Err(e) = ep.send_typed(from.clone(), &out).await {
                        tracing::warn!(%task, error = %e, "output chunk not sent");
                    }
                }
            })
        };
        tracing::info!(task = %spec.task, argv = ?spec.argv, "task started");
        let result = runner::run(spec, tx, cancel).await;
        let _ = streamer.await;
        tracing::info!(task = %result.task, status = result.status.as_str(), ms = result.duration_ms, "task done");
        send_result(&ep, &from, &result).await;
        t.lock().remove(&result.task);
        drop(permit);
    });
    Ok(Outcome::Done)
}

/// The variables of a task's `secret_env`, opened with the fleet key.
fn open_secret_env(
    tasks: &Tasks,
    sealed: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let Some(auth) = &tasks.auth else {
        return Err("secret_env needs a fleet key: this agent runs keyless (--insecure)".into());
    };
    let plain = auth.open(sealed).map_err(|e| format!("secret_env: {e}"))?;
    serde_json::from_slice(&plain).map_err(|e| format!("secret_env: not a JSON object: {e}"))
}

async fn on_cancel(
    tasks: Arc<Tasks>,
    req: Request,
    cancel: CancelTask,
) -> Result<Outcome, HandlerError> {
    if let Err(why) = tasks.admit(req.message()) {
        tracing::warn!(from = ?req.message().from(), task = %cancel.task, reason = %why, "cancel refused");
        return Err(HandlerError::Failed(why));
    }
    match tasks.lock().get(&cancel.task) {
        Some(token) => token.cancel(),
        None => tracing::info!(task = %cancel.task, "cancel for a task that is not running"),
    }
    Ok(Outcome::Done)
}
