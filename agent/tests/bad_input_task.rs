//! Hostile task requests to a running agent, over the in-process memory transport (the
//! reference implementation of the transport contract).
//!
//! For each request: a clear answer (an `INVALID` reply naming the field for a request the
//! schema or decoder refuses, else a `RESULT` with status `rejected`/`error` and the reason);
//! the agent keeps serving: the server's next signed task runs, and a bystander's `PING`
//! gets its `PONG` throughout. Every task here is signed with the fleet key, so what is tested
//! is the agent's handling of the request itself.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use comms::{Destination, Endpoint, Message, Outcome};
use comms_agent::{Agent, AgentConfig};
use comms_fleet::auth::FleetKey;
use comms_fleet::task::{TaskOutput, TaskResult, TaskStatus};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    _dir: tempfile::TempDir,
    agent: Agent,
    /// The service the agent runs tasks for.
    server: Endpoint,
    results: mpsc::UnboundedReceiver<TaskResult>,
    outputs: mpsc::UnboundedReceiver<TaskOutput>,
    bystander: Endpoint,
    key: FleetKey,
    n: u32,
}

fn url(hub: &str) -> String {
    format!("memory://{hub}?node=n1")
}

impl Fixture {
    async fn start(hub: &str) -> Self {
        Self::start_with(hub, |_| {}).await
    }

    async fn start_with(hub: &str, f: impl FnOnce(&mut AgentConfig)) -> Self {
        Self::start_on(&url(hub), tempfile::tempdir().unwrap(), f).await
    }

    async fn start_on(url: &str, dir: tempfile::TempDir, f: impl FnOnce(&mut AgentConfig)) -> Self {
        let key_file = dir.path().join("fleet.key");
        std::fs::write(&key_file, "0123456789abcdef0123456789abcdef\n").unwrap();
        let key = FleetKey::from_file(&key_file).unwrap();
        let mut config = AgentConfig {
            name: Some("agent_t".into()),
            state_dir: dir.path().join("state"),
            key_file: Some(key_file),
            ..AgentConfig::default()
        };
        f(&mut config);
        let agent = Agent::start(comms::connect_url(url).await.unwrap(), config)
            .await
            .unwrap();
        let (rtx, results) = mpsc::unbounded_channel();
        let (otx, outputs) = mpsc::unbounded_channel();
        let server = Endpoint::builder(comms::connect_url(url).await.unwrap(), "server")
            .on::<TaskResult, _, _>(move |_req, r| {
                let _ = rtx.send(r);
                async { Ok(Outcome::Done) }
            })
            .on::<TaskOutput, _, _>(move |_req, o| {
                let _ = otx.send(o);
                async { Ok(Outcome::Done) }
            })
            .start()
            .await
            .unwrap();
        let bystander = Endpoint::builder(comms::connect_url(url).await.unwrap(), "bystander")
            .start()
            .await
            .unwrap();
        Self {
            _dir: dir,
            agent,
            server,
            results,
            outputs,
            bystander,
            key,
            n: 0,
        }
    }

    fn to_agent() -> Destination {
        Destination::Service("agent_t".into())
    }

    /// A `RUN` with the given parameters (no defaults: each test says what it sends).
    fn run_msg(params: &[(&str, &str)]) -> Message {
        let mut m = Message::new("RUN", Self::to_agent()).unwrap();
        for (k, v) in params {
            m = m.with_param(*k, *v);
        }
        m
    }

    /// Sends a request the agent must refuse with `INVALID` naming `field`; returns the reason.
    async fn invalid(&mut self, msg: Message, field: &str) -> String {
        let e = self.server.request(msg, WAIT).await.unwrap_err();
        assert_eq!(e.remote_command(), Some("INVALID"), "{e}");
        let comms::Error::Remote { reply, .. } = e else {
            unreachable!()
        };
        assert_eq!(reply.param("field"), Some(field), "{reply:?}");
        let reason = reply.param("reason").unwrap_or_default().to_owned();
        self.all_well().await;
        reason
    }

    /// Signs a well-formed `RUN`, sends it, and returns its `RESULT`.
    async fn result_of(&mut self, mut msg: Message) -> TaskResult {
        self.key.sign(&mut msg);
        let task = msg.param("task").unwrap().to_owned();
        self.server.send(msg).await.unwrap();
        loop {
            let r = tokio::time::timeout(WAIT, self.results.recv())
                .await
                .expect("a RESULT in time")
                .unwrap();
            if r.task == task {
                return r;
            }
        }
    }

    /// The agent still runs the server's tasks, and still answers a bystander.
    async fn all_well(&mut self) {
        self.n += 1;
        let task = format!("good{}", self.n);
        let r = self
            .result_of(Self::run_msg(&[
                ("task", &task),
                ("argv", r#"["echo","still here"]"#),
                ("timeout_ms", "10000"),
                ("output_cap", "1024"),
            ]))
            .await;
        assert_eq!(r.status, TaskStatus::Ok, "{r:?}");
        assert_eq!(r.stdout_tail, "still here\n");
        let ping = Message::new("PING", Self::to_agent()).unwrap();
        let pong = self.bystander.request(ping, WAIT).await.unwrap();
        assert_eq!(pong.command, "PONG");
    }
}

#[tokio::test]
async fn malformed_and_wrong_typed_requests_get_invalid_naming_the_field() {
    let mut f = Fixture::start("bad_task_invalid").await;
    let base = [
        ("task", "t1"),
        ("timeout_ms", "1000"),
        ("output_cap", "100"),
    ];
    let with = |extra: &[(&'static str, &'static str)], skip: &str| {
        let mut p: Vec<(&str, &str)> = base.iter().copied().filter(|(k, _)| *k != skip).collect();
        p.extend_from_slice(extra);
        Fixture::run_msg(&p)
    };
    // Missing argv, then argv of the wrong types.
    let r = f.invalid(with(&[], ""), "argv").await;
    assert!(r.contains("required"), "{r}");
    f.invalid(with(&[("argv", "echo hi")], ""), "argv").await;
    let r = f.invalid(with(&[("argv", r#"{"a":1}"#)], ""), "RUN").await;
    assert!(r.contains("expected a sequence"), "{r}");
    let r = f.invalid(with(&[("argv", "[1,2]")], ""), "RUN").await;
    assert!(r.contains("expected a string"), "{r}");
    // Deeply nested JSON in argv: refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep: &'static str = Box::leak(deep.into_boxed_str());
    f.invalid(with(&[("argv", deep)], ""), "argv").await;
    // Other fields.
    f.invalid(with(&[("argv", r#"["true"]"#)], "timeout_ms"), "timeout_ms")
        .await;
    f.invalid(
        with(
            &[("argv", r#"["true"]"#), ("timeout_ms", "soon")],
            "timeout_ms",
        ),
        "timeout_ms",
    )
    .await;
    let r = f
        .invalid(
            with(
                &[("argv", r#"["true"]"#), ("timeout_ms", "-1")],
                "timeout_ms",
            ),
            "RUN",
        )
        .await;
    assert!(r.contains("invalid value: integer `-1`"), "{r}");
    f.invalid(
        with(&[("argv", r#"["true"]"#), ("env", r#"["A"]"#)], ""),
        "RUN",
    )
    .await;
    f.invalid(
        with(&[("argv", r#"["true"]"#), ("env", r#"{"A":1}"#)], ""),
        "RUN",
    )
    .await;
    f.invalid(with(&[("argv", r#"["true"]"#)], "task"), "task")
        .await;
    // An unknown command gets UNKNOWN.
    let e = f
        .server
        .request(
            Message::new("FROBNICATE", Fixture::to_agent()).unwrap(),
            WAIT,
        )
        .await
        .unwrap_err();
    assert_eq!(e.remote_command(), Some("UNKNOWN"), "{e}");
    f.all_well().await;
    f.agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_that_cannot_run_get_a_result_saying_why() {
    let mut f = Fixture::start("bad_task_cannot_run").await;
    let run = |task: &'static str, argv: &'static str, extra: &[(&'static str, &'static str)]| {
        let mut p = vec![
            ("task", task),
            ("argv", argv),
            ("timeout_ms", "10000"),
            ("output_cap", "1024"),
        ];
        p.extend_from_slice(extra);
        Fixture::run_msg(&p)
    };
    let cases: Vec<(Message, TaskStatus, &str)> = vec![
        (
            run("empty", "[]", &[]),
            TaskStatus::Rejected,
            "argv is empty",
        ),
        (
            run("nul_argv", r#"["echo","a\u0000b"]"#, &[]),
            TaskStatus::Error,
            "nul byte",
        ),
        (
            run("nul_prog", r#"["ec\u0000ho"]"#, &[]),
            TaskStatus::Error,
            "nul byte",
        ),
        (
            run(
                "nul_env_key",
                r#"["true"]"#,
                &[("env", r#"{"A\u0000B":"x"}"#)],
            ),
            TaskStatus::Error,
            "nul byte",
        ),
        (
            run(
                "nul_env_value",
                r#"["true"]"#,
                &[("env", r#"{"A":"x\u0000y"}"#)],
            ),
            TaskStatus::Error,
            "nul byte",
        ),
        (
            run("nul_cwd", r#"["true"]"#, &[("cwd", "/tm\0p")]),
            TaskStatus::Error,
            "nul byte",
        ),
        (
            run("no_cwd", r#"["true"]"#, &[("cwd", "/nonexistent/dir")]),
            TaskStatus::Error,
            "No such file or directory",
        ),
        (
            run("no_program", r#"["/nonexistent/program"]"#, &[]),
            TaskStatus::Error,
            "cannot start \"/nonexistent/program\"",
        ),
    ];
    for (msg, status, why) in cases {
        let r = f.result_of(msg).await;
        assert_eq!(r.status, status, "{r:?}");
        let error = r.error.clone().unwrap_or_default();
        assert!(error.contains(why), "{:?}: {error:?} lacks {why:?}", r.task);
        f.all_well().await;
    }
    f.agent.shutdown().await.unwrap();
}

/// One argument over the kernel's per-argument limit (128 KiB), and many arguments.
#[tokio::test]
async fn huge_argv_is_an_error_result_or_runs() {
    let mut f = Fixture::start("bad_task_huge").await;
    let big = serde_json::to_string(&["echo".to_owned(), "x".repeat(200_000)]).unwrap();
    let r = f
        .result_of(Fixture::run_msg(&[
            ("task", "big_arg"),
            ("argv", &big),
            ("timeout_ms", "10000"),
            ("output_cap", "1024"),
        ]))
        .await;
    assert_eq!(r.status, TaskStatus::Error, "{r:?}");
    assert!(
        r.error
            .as_deref()
            .unwrap_or_default()
            .contains("Argument list too long"),
        "{r:?}"
    );
    f.all_well().await;
    // 50 000 short arguments fit: the task runs, its output capped as asked.
    let mut argv = vec!["echo".to_owned()];
    argv.extend((0..50_000).map(|i| format!("a{i}")));
    let many = serde_json::to_string(&argv).unwrap();
    let r = f
        .result_of(Fixture::run_msg(&[
            ("task", "many_args"),
            ("argv", &many),
            ("timeout_ms", "10000"),
            ("output_cap", "1000"),
        ]))
        .await;
    assert_eq!(r.status, TaskStatus::Ok, "{r:?}");
    assert!(r.truncated && r.stdout_bytes > 300_000, "{r:?}");
    // Too big for the transport: the sender's own error, the agent never sees it.
    let huge = serde_json::to_string(&["echo".to_owned(), "x".repeat(5 << 20)]).unwrap();
    let e = f
        .server
        .send(Fixture::run_msg(&[
            ("task", "huge"),
            ("argv", &huge),
            ("timeout_ms", "10000"),
            ("output_cap", "1024"),
        ]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
    f.all_well().await;
    f.agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn zero_and_absurd_timeouts() {
    let mut f = Fixture::start_with("bad_task_timeouts", |c| c.max_timeout_secs = 1).await;
    let sleep = |task: &'static str, timeout: &'static str| {
        Fixture::run_msg(&[
            ("task", task),
            ("argv", r#"["sleep","30"]"#),
            ("timeout_ms", timeout),
            ("output_cap", "1024"),
        ])
    };
    let r = f.result_of(sleep("zero", "0")).await;
    assert_eq!(r.status, TaskStatus::Rejected, "{r:?}");
    assert_eq!(r.error.as_deref(), Some("timeout_ms must be at least 1"));
    f.all_well().await;
    // Beyond an integer: refused by the schema.
    let r = f
        .invalid(sleep("overflow", "18446744073709551615"), "timeout_ms")
        .await;
    assert!(r.contains("integer"), "{r}");
    // An absurd timeout is capped at the agent's max_timeout_secs (here 1 s): killed then.
    let r = f.result_of(sleep("absurd", "9223372036854775807")).await;
    assert_eq!(r.status, TaskStatus::Timeout, "{r:?}");
    assert!(r.duration_ms >= 900 && r.duration_ms < 10_000, "{r:?}");
    f.all_well().await;
    f.agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn non_utf8_output_is_replaced_not_fatal() {
    let mut f = Fixture::start("bad_task_utf8").await;
    let r = f
        .result_of(Fixture::run_msg(&[
            ("task", "bytes"),
            ("argv", r#"["printf","a\\377\\376b\\000c"]"#),
            ("timeout_ms", "10000"),
            ("output_cap", "1024"),
        ]))
        .await;
    assert_eq!(r.status, TaskStatus::Ok, "{r:?}");
    assert_eq!(r.stdout_bytes, 6);
    assert_eq!(r.stdout_tail, "a\u{fffd}\u{fffd}b\u{fffd}c");
    let mut data = String::new();
    while let Ok(o) = f.outputs.try_recv() {
        if o.task == "bytes" {
            data.push_str(&o.data);
        }
    }
    assert_eq!(data, "a\u{fffd}\u{fffd}b\u{fffd}c");
    f.all_well().await;
    f.agent.shutdown().await.unwrap();
}

/// Over the native daemon a cd: line cannot carry a NUL byte: output with NUL bytes used to make
/// every OUTPUT chunk and the RESULT unsendable (the server never learnt how the task ended).
#[tokio::test]
async fn nul_bytes_in_output_reach_the_server_over_the_native_daemon() {
    use commsd::{Daemon, DaemonConfig};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("commsd.sock");
    let daemon = Daemon::start(DaemonConfig::ephemeral("n1", &sock))
        .await
        .unwrap();
    let mut f = Fixture::start_on(&format!("cd://{}", sock.display()), dir, |_| {}).await;
    let r = f
        .result_of(Fixture::run_msg(&[
            ("task", "nul_out"),
            ("argv", r#"["printf","a\\000b"]"#),
            ("timeout_ms", "10000"),
            ("output_cap", "1024"),
        ]))
        .await;
    assert_eq!(r.status, TaskStatus::Ok, "{r:?}");
    assert_eq!((r.stdout_bytes, r.stdout_tail.as_str()), (3, "a\u{fffd}b"));
    let o = tokio::time::timeout(WAIT, f.outputs.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.task.as_str(), o.data.as_str()),
        ("nul_out", "a\u{fffd}b")
    );
    f.all_well().await;
    f.agent.shutdown().await.unwrap();
    daemon.shutdown().await;
}

/// Only signed tasks run; an unsigned one gets a `rejected` result, whoever sends it.
#[tokio::test]
async fn tasks_from_anyone_but_the_server_are_rejected() {
    let hub = "bad_task_unauthorized";
    let mut f = Fixture::start(hub).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mallory = Endpoint::builder(comms::connect_url(&url(hub)).await.unwrap(), "mallory")
        .on::<TaskResult, _, _>(move |_req, r| {
            let _ = tx.send(r);
            async { Ok(Outcome::Done) }
        })
        .start()
        .await
        .unwrap();
    mallory
        .send(Fixture::run_msg(&[
            ("task", "evil"),
            ("argv", r#"["touch","/tmp/pwned"]"#),
            ("timeout_ms", "1000"),
            ("output_cap", "10"),
        ]))
        .await
        .unwrap();
    let r = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, TaskStatus::Rejected);
    assert!(r.error.unwrap().contains("not authorized"));
    // Nor may it cancel the server's tasks.
    let cancel = Message::new("CANCEL", Fixture::to_agent())
        .unwrap()
        .with_param("task", "good1");
    let e = mallory.request(cancel, WAIT).await.unwrap_err();
    assert_eq!(e.remote_command(), Some("ERROR"), "{e}");
    assert!(e.to_string().contains("not authorized"), "{e}");
    f.all_well().await;
    f.agent.shutdown().await.unwrap();
}

/// `secret_env` sealed with the fleet key reaches the task's environment; one sealed with
/// another key, or not a JSON object, is a `rejected` result saying why.
#[tokio::test]
async fn secret_env_is_opened_with_the_fleet_key_and_a_foreign_seal_is_refused() {
    let mut f = Fixture::start("bad_task_secret_env").await;
    let run = |task: &'static str, sealed: &str| {
        Fixture::run_msg(&[
            ("task", task),
            ("argv", r#"["sh","-c","echo \"$TOKEN\""]"#),
            ("timeout_ms", "10000"),
            ("output_cap", "1024"),
            ("secret_env", sealed),
        ])
    };
    let good = f.key.seal(br#"{"TOKEN":"abc"}"#).unwrap();
    let r = f.result_of(run("sealed_ok", &good)).await;
    assert_eq!(
        (r.status, r.stdout_tail.as_str()),
        (TaskStatus::Ok, "abc\n")
    );
    let other = FleetKey::new(vec![7u8; 32]).unwrap();
    let foreign = other.seal(br#"{"TOKEN":"abc"}"#).unwrap();
    let not_json = f.key.seal(b"TOKEN=abc").unwrap();
    for (task, sealed, why) in [
        (
            "sealed_foreign",
            foreign.as_str(),
            "not sealed with this fleet's key",
        ),
        ("sealed_not_json", not_json.as_str(), "not a JSON object"),
        ("sealed_garbage", "s1.zz", "malformed"),
    ] {
        let r = f.result_of(run(task, sealed)).await;
        assert_eq!(r.status, TaskStatus::Rejected, "{r:?}");
        let error = r.error.unwrap_or_default();
        assert!(error.contains(why), "{task}: {error}");
        f.all_well().await;
    }
    f.agent.shutdown().await.unwrap();
}
