//! The fleet scenario, one body for every backend: a `server` and three `agent` processes, driven
//! with `commsctl` exactly as an operator would. Only the `[transport]` section differs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test body: failures should be loud

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::binary;

/// A running fleet's files and processes.
pub struct Fleet {
    /// Temp dir holding config, state and logs.
    pub dir: tempfile::TempDir,
    config: PathBuf,
    server: Option<Child>,
    agents: Vec<Option<Child>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

fn spawn(program: &Path, args: &[&str], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    Command::new(program)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()))
}

impl Fleet {
    /// Write the config (`transport` is the `[transport]` section's body, plus any backend
    /// sections after it; `{dir}` stands for the fleet's temp dir) and start the server.
    pub fn start(transport: &str) -> Fleet {
        let mut fleet = Fleet::new(transport);
        fleet.start_server();
        fleet
    }

    /// [`Fleet::start`] without starting the server.
    pub fn new(transport: &str) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let transport = transport.replace("{dir}", &dir.path().display().to_string());
        let config = dir.path().join("fleet.toml");
        // Every fleet is keyed: tasks and commsctl requests are signed on every backend.
        let key_file = dir.path().join("fleet.key");
        std::fs::write(&key_file, format!("{:032x}\n", std::process::id())).expect("write key");
        let text = format!(
            "[transport]\n{transport}\n\n[server]\ndeadline_grace_secs = 5\nttl_secs = 1\nkey_file = \"{key}\"\nstate_dir = \"{state}\"\n\n[agent]\nserver = \"server\"\nttl_secs = 1\nmax_tasks = 4\nkey_file = \"{key}\"\n",
            key = key_file.display(),
            state = dir.path().join("server-state").display()
        );
        std::fs::write(&config, text).expect("write config");
        Fleet {
            dir,
            config,
            server: None,
            agents: Vec::new(),
        }
    }

    /// The fleet key file (in the config, and given to commsctl through the environment).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("fleet.key")
    }

    /// The log file of process `name` (`server`, `agent_N`).
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// The config file every process of the fleet reads.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// SIGKILL the server (its history stays in the fleet's temp dir).
    pub async fn kill_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            child.kill().await.expect("kill server");
        }
    }

    /// SIGTERM the server and wait (up to `limit`) for it to exit: its exit code and how long
    /// it took; `None` if it was still running at `limit` (it is killed then).
    pub async fn term_server(&mut self, limit: Duration) -> Option<(Option<i32>, Duration)> {
        let mut child = self.server.take()?;
        let pid = child.id().expect("server pid");
        let started = Instant::now();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "SIGTERM to the server");
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => Some((status.expect("wait").code(), started.elapsed())),
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        }
    }

    /// Start the server (again) with the fleet's config.
    pub fn start_server(&mut self) {
        self.start_server_with(&[]);
    }

    /// [`Fleet::start_server`] with more command-line arguments.
    pub fn start_server_with(&mut self, extra: &[&str]) {
        let cfg = self.config.display().to_string();
        let mut args = vec!["--config", cfg.as_str()];
        args.extend_from_slice(extra);
        self.server = Some(spawn(
            &binary("server", "server"),
            &args,
            &self.log("server"),
        ));
    }

    /// Start agent number `n` (name `agent_n`) in `group`; the same `n` reuses its state dir.
    pub fn start_agent(&mut self, n: usize, group: &str) {
        self.start_agent_with(n, group, &[]);
    }

    /// [`Fleet::start_agent`] with more command-line arguments.
    pub fn start_agent_with(&mut self, n: usize, group: &str, extra: &[&str]) {
        let cfg = self.config.display().to_string();
        let state = self
            .dir
            .path()
            .join(format!("state{n}"))
            .display()
            .to_string();
        let name = format!("agent_{n}");
        let mut args = vec![
            "--config",
            cfg.as_str(),
            "--name",
            name.as_str(),
            "--state-dir",
            state.as_str(),
            "--group",
            group,
        ];
        args.extend_from_slice(extra);
        let child = spawn(&binary("agent", "agent"), &args, &self.log(&name));
        if self.agents.len() <= n {
            self.agents.resize_with(n + 1, || None);
        }
        self.agents[n] = Some(child);
    }

    /// SIGKILL agent `n`.
    pub async fn kill_agent(&mut self, n: usize) {
        if let Some(mut child) = self.agents.get_mut(n).and_then(Option::take) {
            child.kill().await.expect("kill agent");
        }
    }

    /// Run `commsctl --json ARGS`; its exit code and stdout lines parsed as JSON.
    pub async fn ctl(&self, args: &[&str]) -> (i32, Vec<Value>) {
        let (code, lines, _) = self.ctl_keyed(args, true).await;
        (code, lines)
    }

    /// Run `commsctl --json ARGS`, with the fleet key, or without it (`--insecure`: unsigned
    /// requests, as anyone without the key would send); exit code, stdout lines parsed as
    /// JSON, stderr.
    pub async fn ctl_keyed(&self, args: &[&str], key: bool) -> (i32, Vec<Value>, String) {
        let cfg = self.config.display().to_string();
        let mut full = vec!["--config", cfg.as_str(), "--json"];
        if !key {
            full.push("--insecure");
        }
        full.extend_from_slice(args);
        let mut cmd = Command::new(binary("server", "commsctl"));
        cmd.args(&full).env_remove("COMMS_FLEET_KEY_FILE");
        if key {
            cmd.env("COMMS_FLEET_KEY_FILE", self.key_file());
        }
        let out = cmd.output().await.expect("run commsctl");
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), lines, stderr)
    }

    /// Start `commsctl --json ARGS` and return the child with its stdout lines.
    pub fn ctl_spawn(
        &self,
        args: &[&str],
    ) -> (
        Child,
        tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    ) {
        let cfg = self.config.display().to_string();
        let mut full = vec!["--config", cfg.as_str(), "--json"];
        full.extend_from_slice(args);
        let mut child = Command::new(binary("server", "commsctl"))
            .args(&full)
            .env("COMMS_FLEET_KEY_FILE", self.key_file())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn commsctl");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        (child, lines)
    }

    /// Agents as `commsctl --json agents` lists them, one `"event":"agent"` line each (empty
    /// while the server is not answering).
    pub async fn agents(&self) -> Vec<Value> {
        match self.ctl(&["agents"]).await {
            (0, lines) => lines
                .into_iter()
                .filter(|v| v["event"] == "agent")
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Wait until the server answers `commsctl status` (panics with the logs after `timeout`).
    pub async fn wait_server(&self, timeout: Duration) {
        let started = Instant::now();
        loop {
            let (code, _, stderr) = self.ctl_keyed(&["status"], true).await;
            if code == 0 {
                return;
            }
            if started.elapsed() > timeout {
                self.dump_logs();
                panic!("the server never answered within {timeout:?}: {stderr}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Wait until `want(agents)` holds; how long it took.
    pub async fn wait_agents(
        &self,
        what: &str,
        timeout: Duration,
        want: impl Fn(&[Value]) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let agents = self.agents().await;
            if want(&agents) {
                return started.elapsed();
            }
            if started.elapsed() > timeout {
                self.dump_logs();
                panic!("{what}: not within {timeout:?}; agents: {agents:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Print every process log (on failure).
    pub fn dump_logs(&self) {
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) == Some("log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- {} (last lines)", path.display());
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn state_of(agents: &[Value], name: &str) -> Option<(bool, String)> {
    agents
        .iter()
        .find(|a| {
            a["address"]
                .as_str()
                .is_some_and(|s| s.ends_with(&format!(":{name}")))
        })
        .map(|a| {
            (
                a["up"].as_bool().unwrap_or(false),
                a["id"].as_str().unwrap_or("").to_owned(),
            )
        })
}

fn results(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l.get("outcome").is_some())
        .collect()
}

/// The dispatch id of the `accepted` line a `commsctl --json run` prints first.
pub async fn accepted_dispatch(
    out: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> String {
    let line = out.next_line().await.unwrap().expect("accepted line");
    let accepted: Value = serde_json::from_str(&line).unwrap();
    accepted["dispatch"]
        .as_str()
        .expect("dispatch id")
        .to_owned()
}

/// The scenario of the fleet issue: run on all, on a group; cancel a long task; kill an agent
/// (reported down within the TTL); restart it (same id, back up).
pub async fn scenario(transport: &str) {
    let mut fleet = Fleet::start(transport);
    for (n, group) in [(1, "web"), (2, "web"), (3, "db")] {
        fleet.start_agent(n, group);
    }
    let up = |agents: &[Value]| {
        agents
            .iter()
            .filter(|a| a["up"] == Value::Bool(true))
            .count()
    };
    fleet
        .wait_agents("three agents up", Duration::from_secs(60), |a| up(a) == 3)
        .await;

    // Without the fleet key, the server runs nothing for anyone.
    let (code, _, stderr) = fleet
        .ctl_keyed(&["run", "--all", "--", "sh", "-c", "echo unsigned"], false)
        .await;
    assert_ne!(code, 0, "an unsigned dispatch must fail: {stderr}");
    assert!(stderr.contains("not authorized"), "{stderr}");

    let (code, lines) = fleet
        .ctl(&["run", "--all", "--", "sh", "-c", "echo hello-$0"])
        .await;
    let outs: Vec<&str> = lines.iter().filter_map(|l| l["data"].as_str()).collect();
    assert_eq!(code, 0, "run --all: {lines:?}");
    assert_eq!(results(&lines).len(), 3, "{lines:?}");
    assert_eq!(
        outs.iter().filter(|o| o.contains("hello-sh")).count(),
        3,
        "{outs:?}"
    );

    let (code, lines) = fleet.ctl(&["run", "--group", "web", "--", "true"]).await;
    assert_eq!(code, 0);
    let mut agents: Vec<&str> = results(&lines)
        .iter()
        .filter_map(|r| r["agent"].as_str())
        .collect();
    agents.sort_unstable();
    assert!(
        agents.len() == 2 && agents[0].ends_with(":agent_1") && agents[1].ends_with(":agent_2"),
        "{agents:?}"
    );

    let (code, lines) = fleet
        .ctl(&["run", "--agent", "agent_3", "--", "sh", "-c", "exit 3"])
        .await;
    assert_eq!(code, 1, "a failed target makes commsctl fail");
    assert_eq!(results(&lines)[0]["outcome"], "failed");

    // Cancel a long task.
    let (mut run, mut out) = fleet.ctl_spawn(&[
        "run",
        "--agent",
        "agent_1",
        "--timeout",
        "60",
        "--",
        "sleep",
        "30",
    ]);
    let dispatch = accepted_dispatch(&mut out).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, _) = fleet.ctl(&["cancel", &dispatch]).await;
    assert_eq!(code, 0);
    let mut outcome = None;
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(20), out.next_line()).await
    {
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if let Some(o) = v.get("outcome") {
            outcome = Some(o.clone());
        }
    }
    let status = tokio::time::timeout(Duration::from_secs(10), run.wait())
        .await
        .expect("run ends")
        .expect("wait");
    assert_eq!(outcome, Some(Value::from("cancelled")));
    assert_eq!(status.code(), Some(1));

    // Kill an agent: reported down within the TTL (1 s; allow the sweep and the polling).
    let before = fleet.agents().await;
    let (_, id3) = state_of(&before, "agent_3").expect("agent_3 listed");
    fleet.kill_agent(3).await;
    let took = fleet
        .wait_agents("agent_3 down", Duration::from_secs(10), |a| {
            state_of(a, "agent_3").is_some_and(|(up, _)| !up)
        })
        .await;
    assert!(
        took < Duration::from_secs(5),
        "reported down after {took:?}"
    );

    // Restart it: same id, back up.
    fleet.start_agent(3, "db");
    fleet
        .wait_agents("agent_3 back", Duration::from_secs(60), |a| {
            state_of(a, "agent_3").is_some_and(|(up, _)| up)
        })
        .await;
    let (_, id_again) = state_of(&fleet.agents().await, "agent_3").expect("listed");
    assert_eq!(id_again, id3, "the restarted agent kept its id");
}
