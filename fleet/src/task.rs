//! Server ↔ agent: typed messages to and from an agent.
//!
//! `RUN` (a task) → the agent streams `OUTPUT` chunks and ends with one `RESULT`, all sent to
//! the `RUN`'s origin and carrying the task id (not correlated: a task is not one
//! request/reply). `CANCEL` stops a task; `PING` → `PONG`; `FACTS` → `FACTS_REPORT`. With a
//! fleet key, `RUN` and `CANCEL` are signed ([`crate::auth`]).

use comms_core::{ParamType, Schema, TypedMessage};
use serde::{Deserialize, Serialize};

use crate::Job;

/// Command names.
pub mod cmd {
    /// Run a task.
    pub const RUN: &str = "RUN";
    /// A chunk of a task's output.
    pub const OUTPUT: &str = "OUTPUT";
    /// A task's result.
    pub const RESULT: &str = "RESULT";
    /// Server → agent (param `task`): the result is stored; the agent stops resending it.
    pub const RESULT_ACK: &str = "RESULT_ACK";
    /// Cancel a task.
    pub const CANCEL: &str = "CANCEL";
    /// Liveness probe.
    pub const PING: &str = "PING";
    /// Answer to `PING`.
    pub const PONG: &str = "PONG";
    /// Ask for facts.
    pub const FACTS: &str = "FACTS";
    /// Answer to `FACTS`.
    pub const FACTS_REPORT: &str = "FACTS_REPORT";
}

/// The service every agent endpoint's name starts with.
pub const AGENT_PREFIX: &str = "agent_";

/// Run a [`Job`] on an agent. Its parameters: `task` and the job's fields, side by side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTask {
    /// Task id (unique per dispatch and agent).
    pub task: String,
    /// What to run.
    #[serde(flatten)]
    pub job: Job,
}

impl TypedMessage for RunTask {
    const COMMAND: &'static str = cmd::RUN;
    fn schema() -> Schema {
        Schema::new(cmd::RUN)
            .required("task", ParamType::String)
            .required("argv", ParamType::Json)
            .optional("env", ParamType::Json)
            .optional("cwd", ParamType::String)
            .required("timeout_ms", ParamType::Integer)
            .required("output_cap", ParamType::Integer)
            .optional("secret_env", ParamType::String)
    }
}

/// A chunk of output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutput {
    /// Task id.
    pub task: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// 0, 1, 2... per task (both streams share the counter).
    pub seq: u64,
    /// The text (invalid UTF-8 and NUL bytes replaced by U+FFFD).
    pub data: String,
}

impl TypedMessage for TaskOutput {
    const COMMAND: &'static str = cmd::OUTPUT;
    fn schema() -> Schema {
        Schema::new(cmd::OUTPUT)
            .required("task", ParamType::String)
            .required("stream", ParamType::String)
            .required("seq", ParamType::Integer)
            .required("data", ParamType::String)
    }
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Exit code 0.
    Ok,
    /// Non-zero exit or killed by a signal.
    Failed,
    /// Killed at its timeout.
    Timeout,
    /// Stopped by `CANCEL`.
    Cancelled,
    /// Could not start (program missing, bad cwd...).
    Error,
    /// Refused (busy, not authorized, invalid).
    Rejected,
}

impl TaskStatus {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Ok => "ok",
            TaskStatus::Failed => "failed",
            TaskStatus::Timeout => "timeout",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Error => "error",
            TaskStatus::Rejected => "rejected",
        }
    }
}

/// The result of one task on one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Task id.
    pub task: String,
    /// How it ended.
    pub status: TaskStatus,
    /// Exit code, when it exited.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Signal, when killed by one.
    #[serde(default)]
    pub signal: Option<i64>,
    /// Wall time.
    pub duration_ms: u64,
    /// Bytes written to stdout (all of them, even past the cap).
    pub stdout_bytes: u64,
    /// Bytes written to stderr.
    pub stderr_bytes: u64,
    /// Whether output past the cap was dropped.
    pub truncated: bool,
    /// The last few KiB of stdout.
    pub stdout_tail: String,
    /// The last few KiB of stderr.
    pub stderr_tail: String,
    /// Why it could not run, when it could not.
    #[serde(default)]
    pub error: Option<String>,
}

impl TypedMessage for TaskResult {
    const COMMAND: &'static str = cmd::RESULT;
    fn schema() -> Schema {
        Schema::new(cmd::RESULT)
            .required("task", ParamType::String)
            .required("status", ParamType::String)
            .optional("exit_code", ParamType::Integer)
            .optional("signal", ParamType::Integer)
            .required("duration_ms", ParamType::Integer)
            .required("stdout_bytes", ParamType::Integer)
            .required("stderr_bytes", ParamType::Integer)
            .required("truncated", ParamType::Bool)
            .required("stdout_tail", ParamType::String)
            .required("stderr_tail", ParamType::String)
            .optional("error", ParamType::String)
    }
}

impl TaskResult {
    /// A result for a task that never ran.
    pub fn not_run(task: &str, status: TaskStatus, error: impl Into<String>) -> Self {
        Self {
            task: task.to_owned(),
            status,
            exit_code: None,
            signal: None,
            duration_ms: 0,
            stdout_bytes: 0,
            stderr_bytes: 0,
            truncated: false,
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            error: Some(error.into()),
        }
    }
}

/// Cancel a running task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelTask {
    /// Task id.
    pub task: String,
}

impl TypedMessage for CancelTask {
    const COMMAND: &'static str = cmd::CANCEL;
    fn schema() -> Schema {
        Schema::new(cmd::CANCEL).required("task", ParamType::String)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comms_core::Destination;

    #[test]
    fn result_round_trip() {
        let r = TaskResult::not_run("t", TaskStatus::Rejected, "busy");
        let msg = r.to_message(Destination::Service("server".into())).unwrap();
        assert_eq!(msg.param("status"), Some("rejected"));
        assert_eq!(TaskResult::from_message(&msg).unwrap(), r);
    }
}
