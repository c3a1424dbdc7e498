//! [`Job`]: what a task runs, the fields `RUN` and `DISPATCH` share.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A program to run and its limits. [`crate::task::RunTask`] (one task on one agent) and
/// [`crate::control::DispatchRequest`] (one task on the agents a selector picks) carry it
/// `#[serde(flatten)]`: its fields sit beside theirs, on the wire as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Program and arguments (no shell).
    pub argv: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Kill the task (and its process group) after this long; for a dispatch, also each
    /// target's deadline (plus the server's grace).
    pub timeout_ms: u64,
    /// Stop collecting output past this many bytes per stream (the process keeps running).
    pub output_cap: u64,
    /// Environment variables no sniffer may read: their JSON object sealed with the fleet key
    /// ([`crate::auth::FleetKey::seal`]). The server passes it through unopened; the agent
    /// opens it and adds the variables to `env` (they win). Absent from the wire when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
}

#[cfg(test)]
mod tests {
    //! The encodings pinned byte for byte: agents and tools of the previous release (where
    //! each struct declared these fields itself) must read and write the same messages.
    use super::*;
    use crate::control::{DispatchRequest, Selector};
    use crate::task::RunTask;
    use comms_core::{Destination, Message, TypedMessage};

    fn job() -> Job {
        Job {
            argv: vec!["sh".into(), "-c".into(), "echo \"a\";b".into()],
            env: BTreeMap::from([("K".into(), "v".into())]),
            cwd: Some("/tmp".into()),
            timeout_ms: 5000,
            output_cap: 1024,
            secret_env: None,
        }
    }

    #[test]
    fn run_task_params_are_pinned() {
        let run = RunTask {
            task: "t1".into(),
            job: job(),
        };
        let msg = run
            .to_message(Destination::Service("agent_x".into()))
            .unwrap();
        let params: Vec<(&str, &str)> = msg
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            params,
            [
                ("argv", r#"["sh","-c","echo \"a\";b"]"#),
                ("cwd", "/tmp"),
                ("env", r#"{"K":"v"}"#),
                ("output_cap", "1024"),
                ("task", "t1"),
                ("timeout_ms", "5000"),
            ]
        );
        assert_eq!(RunTask::from_message(&msg).unwrap(), run);
    }

    #[test]
    fn run_task_reads_a_minimal_message() {
        let msg = Message::new("RUN", Destination::Service("agent_x".into()))
            .unwrap()
            .with_param("task", "t2")
            .with_param("argv", r#"["true"]"#)
            .with_param("timeout_ms", "7")
            .with_param("output_cap", "0");
        let run = RunTask::from_message(&msg).unwrap();
        assert_eq!(run.task, "t2");
        assert_eq!(
            run.job,
            Job {
                argv: vec!["true".into()],
                env: BTreeMap::new(),
                cwd: None,
                timeout_ms: 7,
                output_cap: 0,
                secret_env: None,
            }
        );
        // No cwd: the parameter is absent, not empty.
        let back = run.to_message(Destination::Service("a".into())).unwrap();
        assert_eq!(back.param("cwd"), None);
        assert_eq!(back.param("env"), Some("{}"));
    }

    #[test]
    fn dispatch_request_json_is_pinned() {
        let request = DispatchRequest {
            selector: Selector::Label("zone".into(), "eu".into()),
            job: job(),
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(
            json,
            r#"{"selector":{"label":["zone","eu"]},"argv":["sh","-c","echo \"a\";b"],"env":{"K":"v"},"cwd":"/tmp","timeout_ms":5000,"output_cap":1024}"#
        );
        assert_eq!(
            serde_json::from_str::<DispatchRequest>(&json).unwrap(),
            request
        );
        let minimal: DispatchRequest = serde_json::from_str(
            r#"{"selector":"all","argv":["id"],"timeout_ms":1,"output_cap":2}"#,
        )
        .unwrap();
        assert_eq!(minimal.selector, Selector::All);
        assert_eq!(minimal.job.env, BTreeMap::new());
        assert_eq!(minimal.job.cwd, None);
        assert_eq!(
            serde_json::to_string(&minimal).unwrap(),
            r#"{"selector":"all","argv":["id"],"env":{},"cwd":null,"timeout_ms":1,"output_cap":2}"#
        );
    }
}
