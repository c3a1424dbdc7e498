//! Issue 17, points 5 and 6, with the real `server`, `agent` and `commsctl` binaries on `cd:`:
//! the fleet is keyed by default and a captured task cannot be replayed across a restart.
//!
//! - a keyless `server` creates `<state dir>/fleet.key` (mode 0600), logs its path, keeps it
//!   across restarts, and answers only signed requests;
//! - an `agent` with no key it can find refuses to start in one line naming where it looked;
//!   `--insecure` (and its former name `--allow-unsigned-tasks`) runs it keyless, logged as
//!   INSECURE;
//! - `agent` and `commsctl` find the server's key by default (same working directory, or
//!   `COMMS_SERVER_STATE_DIR`); `commsctl results` says who asked (`by <requester>`);
//! - a process registered as `server` (a bare `commsd` without a real server, where anyone may
//!   take the name) cannot run an unsigned task: the name counts for nothing;
//! - a signed `RUN` accepted once is refused after the agent restarts (SIGKILL);
//! - a key file `new\nold` accepts tasks signed with either key (rotation without downtime);
//! - `commsctl run --secret-env K=V`: the task gets the variable, a sniffer of the transport
//!   and the server's history never see its value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use comms::{Destination, Endpoint, Outcome, TypedMessage};
use comms_fleet::auth::FleetKey;
use comms_fleet::task::{RunTask, TaskResult, TaskStatus};
use comms_fleet::Job;
use comms_test_support::{free_port, CommsdSpec};
use comms_tests::binary;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);

/// A child process killed when dropped, with its log file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// `bin args` in `cwd`, without any `COMMS_*` of the test's environment (plus `env`).
    fn start(bin: &str, args: &[&str], cwd: &Path, env: &[(&str, &str)], log: &str) -> Proc {
        let package = if bin == "agent" { "agent" } else { "server" };
        let log = cwd.join(log);
        let out = std::fs::File::create(&log).expect("log");
        let mut cmd = Command::new(binary(package, bin));
        cmd.args(args)
            .current_dir(cwd)
            .env_remove("COMMS_URL")
            .env_remove("COMMS_FLEET_KEY_FILE")
            .env_remove("COMMS_SERVER_STATE_DIR")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn");
        Proc { child, log }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `marker`.
    fn wait_for(&mut self, marker: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.text().contains(marker) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("exited {status} before {marker:?}:\n{}", self.text());
            }
            assert!(
                Instant::now() < deadline,
                "no {marker:?} within {WAIT:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit; its exit code.
    fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "still running after {WAIT:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `commsctl ARGS` in `cwd` with `env`: exit code, stdout, stderr.
fn commsctl(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(binary("server", "commsctl"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("COMMS_URL")
        .env_remove("COMMS_FLEET_KEY_FILE")
        .env_remove("COMMS_SERVER_STATE_DIR")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("commsctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("key file").permissions().mode() & 0o777
}

#[test]
fn a_keyless_server_creates_a_private_key_logs_its_path_and_answers_only_signed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("cd://127.0.0.1:{}", free_port().unwrap());
    let env = [("COMMS_URL", url.as_str())];
    let mut server = Proc::start("server", &[], dir.path(), &env, "server.log");
    server.wait_for("server up");
    let key = dir.path().join("server-state/fleet.key");
    assert_eq!(mode(&key), 0o600);
    let created: Vec<String> = server
        .text()
        .lines()
        .filter(|l| l.contains("created a fleet key at server-state/fleet.key"))
        .map(str::to_owned)
        .collect();
    assert_eq!(created.len(), 1, "{}", server.text());
    assert!(created[0].contains("INFO"), "{created:?}");
    let first = std::fs::read_to_string(&key).unwrap();
    FleetKey::from_file(&key).expect("a usable key");

    // commsctl beside it finds the key; unsigned requests get nothing.
    let (code, out, err) = commsctl(&["status"], dir.path(), &env);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = commsctl(&["--insecure", "status"], dir.path(), &env);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not authorized"), "{err}");
    assert!(err.contains("INSECURE"), "{err}");
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, _, err) = commsctl(&["status"], elsewhere.path(), &env);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no fleet key") && err.contains("server-state/fleet.key"),
        "{err}"
    );

    // A restart keeps the key (and does not announce a new one).
    drop(server);
    let mut again = Proc::start("server", &[], dir.path(), &env, "server2.log");
    again.wait_for("server up");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), first);
    assert!(
        !again.text().contains("created a fleet key"),
        "{}",
        again.text()
    );

    // --insecure: no key, said loudly.
    drop(again);
    let other = tempfile::tempdir().unwrap();
    let url2 = format!("cd://127.0.0.1:{}", free_port().unwrap());
    let env2 = [("COMMS_URL", url2.as_str())];
    let mut insecure = Proc::start("server", &["--insecure"], other.path(), &env2, "s.log");
    insecure.wait_for("server up");
    assert!(insecure.text().contains("WARN") && insecure.text().contains("INSECURE"));
    assert!(!other.path().join("server-state/fleet.key").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_a_key_it_can_find_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("cd://127.0.0.1:{}", free_port().unwrap());
    let args = ["--url", &url, "--name", "web1", "--state-dir", "./web1"];
    let mut agent = Proc::start("agent", &args, dir.path(), &[], "agent.log");
    assert_eq!(agent.exit_code(), 1, "{}", agent.text());
    let err = agent.text();
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    for want in [
        "no fleet key",
        "server-state/fleet.key",
        "--key-file",
        "--insecure",
    ] {
        assert!(lines[0].contains(want), "{want}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");

    // COMMS_SERVER_STATE_DIR moves where it looks.
    let env = [("COMMS_SERVER_STATE_DIR", "/nonexistent/state")];
    let mut agent = Proc::start("agent", &args, dir.path(), &env, "agent2.log");
    assert_eq!(agent.exit_code(), 1);
    assert!(agent.text().contains("/nonexistent/state/fleet.key"));

    // --insecure (or its former name) runs keyless, said loudly.
    let bench = Bench::new().await;
    for flag in ["--insecure", "--allow-unsigned-tasks"] {
        let agent = bench.start_agent(&[flag], &format!("agent{flag}.log"));
        let text = agent.text();
        assert!(
            text.lines()
                .any(|l| l.contains("WARN") && l.contains("INSECURE")),
            "{text}"
        );
    }
}

#[test]
fn agent_and_commsctl_find_the_server_key_by_default_results_say_who_asked_secrets_stay_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("cd://127.0.0.1:{}", free_port().unwrap());
    let env = [("COMMS_URL", url.as_str())];
    let mut server = Proc::start("server", &[], dir.path(), &env, "server.log");
    server.wait_for("server up");
    let args = ["--name", "web1", "--state-dir", "./web1"];
    let mut agent = Proc::start("agent", &args, dir.path(), &env, "agent.log");
    agent.wait_for("agent up");
    let deadline = Instant::now() + WAIT;
    let (code, out, err) = loop {
        let r = commsctl(
            &["run", "--agent", "web1", "--", "echo", "hello"],
            dir.path(),
            &env,
        );
        if r.0 == 0 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(code, 0, "{out}{err}\n{}\n{}", server.text(), agent.text());
    assert!(out.contains("hello"), "{out}");

    // A secret variable reaches the task; a sniffer (and the history) never sees its value.
    // One sniffer per command, each for its first copy: an at-least-once DISPATCH may be
    // routed twice (a resend when its acknowledgement is slow), which must not hide the RUN.
    let mut sniffers: Vec<Proc> = ["DISPATCH", "RUN"]
        .into_iter()
        .map(|command| {
            let args = ["--json", "sniff", "--command", command, "--count", "1"];
            let log = format!("sniff-{command}.log");
            let mut sniff = Proc::start("commsctl", &args, dir.path(), &env, &log);
            sniff.wait_for("sniffing");
            sniff
        })
        .collect();
    let (code, out, err) = commsctl(
        &[
            "run",
            "--agent",
            "web1",
            "--secret-env",
            "TOKEN=s3cr3t-value",
            "--",
            "sh",
            "-c",
            // The value itself appears nowhere but in the sealed variable.
            "test \"$(echo \"$TOKEN\" | tr 3 e)\" = secret-value && echo token-ok",
        ],
        dir.path(),
        &env,
    );
    assert_eq!(code, 0, "{out}{err}\n{}", agent.text());
    assert!(out.contains("token-ok"), "{out}");
    let mut seen = String::new();
    for sniff in &mut sniffers {
        assert_eq!(sniff.exit_code(), 0, "{}", sniff.text());
        let text = sniff.text();
        assert!(text.contains("secret_env"), "{text}");
        seen.push_str(&text);
    }
    assert!(
        seen.contains("\"DISPATCH\"") && seen.contains("\"RUN\""),
        "{seen}"
    );
    assert!(
        !seen.contains("s3cr3t"),
        "a sniffer read the secret: {seen}"
    );
    let (_, history, _) = commsctl(&["--json", "results"], dir.path(), &env);
    assert!(!history.contains("s3cr3t"), "{history}");

    // From elsewhere, with the server's state directory named.
    let elsewhere = tempfile::tempdir().unwrap();
    let state = dir.path().join("server-state").display().to_string();
    let env2 = [
        ("COMMS_URL", url.as_str()),
        ("COMMS_SERVER_STATE_DIR", state.as_str()),
    ];
    let (code, out, err) = commsctl(&["results"], elsewhere.path(), &env2);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.contains("echo hello")).expect(&out);
    assert!(
        line.contains(" by ") && line.contains(":commsctl_"),
        "{line}"
    );
}

/// A bare `commsd` (no real server: anyone may register `server`), a key file written by the
/// test, and an agent started by `start_agent`.
struct Bench {
    dir: tempfile::TempDir,
    url: String,
    _daemon: comms_test_support::Commsd,
}

impl Bench {
    async fn new() -> Bench {
        let daemon = CommsdSpec::find()
            .unwrap()
            .unix_only_in_dir()
            .start()
            .await
            .unwrap();
        let url = format!("cd://{}", daemon.socket().unwrap().display());
        Bench {
            dir: tempfile::tempdir().unwrap(),
            url,
            _daemon: daemon,
        }
    }

    /// `agent --name web1 --state-dir ./web1 EXTRA` in the bench's directory, up.
    fn start_agent(&self, extra: &[&str], log: &str) -> Proc {
        let mut args = vec![
            "--url",
            &self.url,
            "--name",
            "web1",
            "--state-dir",
            "./web1",
        ];
        args.extend_from_slice(extra);
        let mut agent = Proc::start("agent", &args, self.dir.path(), &[], log);
        agent.wait_for("agent up");
        agent
    }

    /// An endpoint registered as `server` that keeps the results sent to it.
    async fn fake_server(&self) -> (Endpoint, mpsc::UnboundedReceiver<TaskResult>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let ep = Endpoint::builder(comms::connect_url(&self.url).await.unwrap(), "server")
            .on::<TaskResult, _, _>(move |_req, r| {
                let _ = tx.send(r);
                async { Ok(Outcome::Done) }
            })
            .start()
            .await
            .unwrap();
        (ep, rx)
    }

    /// A `RUN` for web1 that creates `marker` in the bench's directory.
    fn touch(&self, task: &str, marker: &str) -> comms::Message {
        RunTask {
            task: task.into(),
            job: Job {
                argv: vec![
                    "touch".into(),
                    self.dir.path().join(marker).display().to_string(),
                ],
                env: BTreeMap::new(),
                cwd: None,
                timeout_ms: 10_000,
                output_cap: 1024,
                secret_env: None,
            },
        }
        .to_message(Destination::Service("web1".into()))
        .unwrap()
    }

    fn exists(&self, marker: &str) -> bool {
        self.dir.path().join(marker).exists()
    }
}

/// Sends `msg` from `ep` and waits for the result of its task.
async fn result_of(
    ep: &Endpoint,
    rx: &mut mpsc::UnboundedReceiver<TaskResult>,
    msg: comms::Message,
) -> TaskResult {
    let task = msg.param("task").unwrap().to_owned();
    ep.send(msg).await.unwrap();
    loop {
        let r = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a RESULT in time")
            .unwrap();
        if r.task == task {
            return r;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_run_from_a_process_named_server_is_refused() {
    let bench = Bench::new().await;
    // The server's key, where a server started in this directory keeps it; the agent finds
    // it there by default.
    let key_file = bench.dir.path().join("server-state/fleet.key");
    std::fs::create_dir_all(key_file.parent().unwrap()).unwrap();
    comms_server::keygen::write_key_file(&key_file, false).unwrap();
    let agent = bench.start_agent(&[], "agent.log");
    let (mallory, mut results) = bench.fake_server().await;
    let r = result_of(&mallory, &mut results, bench.touch("unsigned", "pwned")).await;
    assert_eq!(r.status, TaskStatus::Rejected, "{r:?}\n{}", agent.text());
    let why = r.error.unwrap_or_default();
    assert!(
        why.contains("not authorized") && why.contains("unsigned"),
        "{why}"
    );
    assert!(!bench.exists("pwned"));
    // The same task signed with the key runs: the refusal was the signature's.
    let mut signed = bench.touch("signed", "ran");
    FleetKey::from_file(&key_file).unwrap().sign(&mut signed);
    let r = result_of(&mallory, &mut results, signed).await;
    assert_eq!(r.status, TaskStatus::Ok, "{r:?}");
    assert!(bench.exists("ran"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_run_is_refused_when_replayed_after_the_agent_restarts() {
    let bench = Bench::new().await;
    let key_file = bench.dir.path().join("fleet.key");
    comms_server::keygen::write_key_file(&key_file, false).unwrap();
    let key = FleetKey::from_file(&key_file).unwrap();
    let kf = key_file.display().to_string();
    let agent = bench.start_agent(&["--key-file", &kf], "agent.log");
    let (server, mut results) = bench.fake_server().await;
    let mut run = bench.touch("t1", "first");
    key.sign(&mut run);
    let captured = run.clone();
    let r = result_of(&server, &mut results, run).await;
    assert_eq!(r.status, TaskStatus::Ok, "{r:?}\n{}", agent.text());
    assert!(bench.exists("first"));
    std::fs::remove_file(bench.dir.path().join("first")).unwrap();

    // SIGKILL: no orderly shutdown; the guard must already be on disk.
    drop(agent);
    let agent = bench.start_agent(&["--key-file", &kf], "agent2.log");
    let r = result_of(&server, &mut results, captured).await;
    assert_eq!(r.status, TaskStatus::Rejected, "{r:?}\n{}", agent.text());
    assert!(r.error.unwrap_or_default().contains("replayed"));
    assert!(!bench.exists("first"), "the replayed task ran");

    // A new signed task still runs.
    let mut fresh = bench.touch("t2", "second");
    key.sign(&mut fresh);
    let r = result_of(&server, &mut results, fresh).await;
    assert_eq!(r.status, TaskStatus::Ok, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_key_rotation_the_agent_accepts_the_old_and_the_new_key() {
    let bench = Bench::new().await;
    let (new, old, other) = ("n".repeat(64), "o".repeat(64), "x".repeat(64));
    let key_file = bench.dir.path().join("fleet.key");
    std::fs::write(&key_file, format!("{new}\n{old}\n")).unwrap();
    let kf = key_file.display().to_string();
    let agent = bench.start_agent(&["--key-file", &kf], "agent.log");
    let (server, mut results) = bench.fake_server().await;
    for (task, key, want) in [
        ("by_old", &old, TaskStatus::Ok),
        ("by_new", &new, TaskStatus::Ok),
        ("by_other", &other, TaskStatus::Rejected),
    ] {
        let mut run = bench.touch(task, task);
        FleetKey::new(key.as_bytes()).unwrap().sign(&mut run);
        let r = result_of(&server, &mut results, run).await;
        assert_eq!(r.status, want, "{task}: {r:?}\n{}", agent.text());
        assert_eq!(bench.exists(task), want == TaskStatus::Ok, "{task}");
    }
}
