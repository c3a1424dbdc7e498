//! [`Tour`]: runs README blocks in a directory of their own (see the parent module for the
//! rules).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};

use super::{expected_status, long_running, Block, Kind};

/// A finished foreground command.
#[derive(Debug, Clone)]
pub struct Ran {
    /// The line as written.
    pub line: String,
    /// Exit status.
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

#[derive(Debug)]
struct Background {
    kind: Kind,
    line: String,
    log: PathBuf,
    child: Child,
}

/// One run of the README in its own directory.
#[derive(Debug)]
pub struct Tour {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    substitutions: Vec<(String, String)>,
    background: Vec<Background>,
    commsctl: PathBuf,
    count: usize,
    ready: usize,
}

impl Tour {
    /// A tour in a fresh directory inside the workspace's target directory.
    pub fn new(workspace: &Path, target_tmp: &Path) -> anyhow::Result<Self> {
        let base = if target_tmp.starts_with(workspace) {
            target_tmp.to_path_buf()
        } else {
            workspace.to_path_buf()
        };
        std::fs::create_dir_all(&base)?;
        let dir = tempfile::Builder::new()
            .prefix(".readme-tour-")
            .tempdir_in(&base)?;
        let env = std::env::vars().filter(|(k, _)| user_env(k)).collect();
        let commsctl = target_tmp
            .parent()
            .map(|t| t.join("release/commsctl"))
            .context("no target directory")?;
        Ok(Self {
            dir,
            env,
            substitutions: Vec::new(),
            background: Vec::new(),
            commsctl,
            count: 0,
            ready: 0,
        })
    }

    /// The tour's directory (the commands' working directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Set an environment variable, as the test's substitution for a fixed port.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.insert(key.to_owned(), value.to_owned());
    }

    /// Replace `from` by `to` in every command line (a broker URL of the test's own).
    pub fn substitute(&mut self, from: &str, to: &str) {
        self.substitutions.push((from.to_owned(), to.to_owned()));
    }

    /// Run `blocks` in order; returns every foreground command's result.
    pub fn run_blocks(&mut self, blocks: &[Block]) -> anyhow::Result<Vec<Ran>> {
        let mut ran = Vec::new();
        let mut section = None;
        for block in blocks {
            if section.is_some() && section != Some(&block.section) {
                self.stop_all()?;
            }
            section = Some(&block.section);
            if block.not_run().is_some() {
                continue;
            }
            if block
                .commands()
                .any(|c| c.trim_start().starts_with("export COMMS_URL="))
            {
                self.stop_all()?;
            }
            for line in block.commands() {
                let line = self.substituted(line);
                match long_running(&line) {
                    Some(kind) => self.start(kind, &line)?,
                    None => {
                        self.wait_ready()?;
                        let r = self.run(&line)?;
                        let want = expected_status(&line)?;
                        ensure!(
                            r.status == want,
                            "`{line}` exited {} (README says {want})\nstdout:\n{}\nstderr:\n{}\n{}",
                            r.status,
                            r.stdout,
                            r.stderr,
                            self.logs()
                        );
                        ran.push(r);
                    }
                }
            }
            self.wait_ready()?;
        }
        self.stop_all()?;
        Ok(ran)
    }

    fn substituted(&self, line: &str) -> String {
        self.substitutions
            .iter()
            .fold(line.to_owned(), |l, (from, to)| l.replace(from, to))
    }

    fn next_file(&mut self, what: &str) -> PathBuf {
        self.count += 1;
        self.dir.path().join(format!(".{:02}-{what}", self.count))
    }

    /// Run one line to its end (at most 120 s), then keep the environment it left.
    pub fn run(&mut self, line: &str) -> anyhow::Result<Ran> {
        let (out, err, envf) = (
            self.next_file("stdout"),
            self.next_file("stderr"),
            self.next_file("env"),
        );
        let script = format!(
            "{line}\n__rc=$?\nenv -0 > '{}'\nexit $__rc\n",
            envf.display()
        );
        let mut child = Command::new("bash")
            .args(["-c", &script])
            .current_dir(self.dir.path())
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(File::create(&out)?)
            .stderr(File::create(&err)?)
            .spawn()
            .context("starting bash")?;
        let traffic = line.contains(" sniff ").then(|| self.traffic());
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("`{line}` still running after 120 s\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some((stop, thread)) = traffic {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = thread.join();
        }
        if let Ok(bytes) = std::fs::read(&envf) {
            self.env = bytes
                .split(|b| *b == 0)
                .filter_map(|kv| {
                    let kv = String::from_utf8_lossy(kv);
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.to_owned()))
                })
                .filter(|(k, _)| !matches!(k.as_str(), "_" | "__rc" | "PWD" | "OLDPWD" | "SHLVL"))
                .collect();
        }
        let ran = Ran {
            line: line.to_owned(),
            status: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        };
        eprintln!(
            "$ {line}\n{}{}[exit {}]",
            ran.stdout, ran.stderr, ran.status
        );
        Ok(ran)
    }

    /// Traffic while a `sniff` runs, as the rest of a live fleet would make:
    /// `commsctl run --all -- true` in a loop until the returned flag is set.
    fn traffic(
        &self,
    ) -> (
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<()>,
    ) {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, exe, dir, env) = (
            stop.clone(),
            self.commsctl.clone(),
            self.dir.path().to_path_buf(),
            self.env.clone(),
        );
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = Command::new(&exe)
                    .args([
                        "--wait",
                        "5",
                        "run",
                        "--all",
                        "--timeout",
                        "5",
                        "--",
                        "true",
                    ])
                    .current_dir(&dir)
                    .env_clear()
                    .envs(&env)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        (stop, thread)
    }

    fn start(&mut self, kind: Kind, line: &str) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt;
        let log = self.next_file("log");
        let file = File::create(&log)?;
        let child = Command::new("bash")
            .args(["-c", &format!("exec {line}")])
            .current_dir(self.dir.path())
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting `{line}`"))?;
        eprintln!("$ {line} &   (pid {}, log {})", child.id(), log.display());
        self.background.push(Background {
            kind,
            line: line.to_owned(),
            log,
            child,
        });
        Ok(())
    }

    /// Waits for the processes started since the last wait to log that they are up, and for
    /// the server to list every running agent as up.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let from = self.ready;
        self.ready = self.background.len();
        let deadline = Instant::now() + Duration::from_secs(90);
        for i in from..self.background.len() {
            let marker = match self.background[i].kind {
                Kind::Server => "server up",
                Kind::Agent(_) => "agent up",
            };
            loop {
                let b = &mut self.background[i];
                if std::fs::read_to_string(&b.log).is_ok_and(|t| t.contains(marker)) {
                    break;
                }
                let line = b.line.clone();
                if let Some(status) = b.child.try_wait()? {
                    bail!("`{line}` exited {status} before it was up\n{}", self.logs());
                }
                ensure!(
                    Instant::now() < deadline,
                    "`{line}` not up after 90 s\n{}",
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let agents: Vec<String> = self
            .background
            .iter()
            .filter_map(|b| match &b.kind {
                Kind::Agent(name) => Some(name.clone()),
                Kind::Server => None,
            })
            .collect();
        let has_server = self.background.iter().any(|b| b.kind == Kind::Server);
        if from == self.background.len() || agents.is_empty() || !has_server {
            return Ok(());
        }
        let mut last = String::new();
        while Instant::now() < deadline {
            let out = Command::new(&self.commsctl)
                .args(["--json", "agents"])
                .current_dir(self.dir.path())
                .env_clear()
                .envs(&self.env)
                .output()
                .with_context(|| format!("running {}", self.commsctl.display()))?;
            last = String::from_utf8_lossy(&out.stdout).into_owned();
            let listed = json_agents(&last);
            let up = |name: &str| {
                listed.iter().any(|x| {
                    x["up"] == true
                        && x["address"]
                            .as_str()
                            .is_some_and(|s| s == name || s.ends_with(&format!(":{name}")))
                })
            };
            if agents.iter().all(|a| up(a)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        bail!(
            "the server does not list {agents:?} as up after 90 s: {last}\n{}",
            self.logs()
        )
    }

    /// Stops every background process (SIGTERM to its group, SIGKILL after 10 s).
    pub fn stop_all(&mut self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        for b in &self.background {
            signal(&format!("-{}", b.child.id()), "-TERM");
        }
        self.ready = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        for mut b in std::mem::take(&mut self.background) {
            let group = format!("-{}", b.child.id());
            loop {
                // Done when the process and everything it started (its group) are gone, so a
                // port is free again for the next section's server.
                if b.child.try_wait()?.is_some() && !signal(&group, "-0") {
                    break;
                }
                if Instant::now() > deadline {
                    signal(&group, "-KILL");
                    let _ = b.child.wait();
                    problems.push(format!("`{}` ignored SIGTERM for 10 s", b.line));
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        ensure!(problems.is_empty(), "{}", problems.join("\n"));
        Ok(())
    }

    /// The last lines of every background process's log.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for b in &self.background {
            let text = std::fs::read_to_string(&b.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            s.push_str(&format!("--- log of `{}`:\n", b.line));
            s.push_str(&lines[lines.len().saturating_sub(25)..].join("\n"));
            s.push('\n');
        }
        s
    }
}

impl Drop for Tour {
    fn drop(&mut self) {
        let _ = self.stop_all();
    }
}

/// Whether a variable of the test's environment belongs in a user's shell: not `COMMS_*`,
/// `RUST_LOG`, nor what cargo and nextest set for a test (`CARGO_PKG_NAME`... would make
/// build scripts that watch them rebuild on `cargo run`).
pub fn user_env(key: &str) -> bool {
    !(key.starts_with("COMMS_")
        || key == "RUST_LOG"
        || (key.starts_with("CARGO") && key != "CARGO_HOME")
        || key.starts_with("NEXTEST")
        || key.starts_with("RUST_TEST")
        || key.starts_with("__CARGO"))
}

/// `kill SIG -- TARGET`; whether it reached a process.
fn signal(target: &str, sig: &str) -> bool {
    Command::new("kill")
        .args([sig, "--", target])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The agents in `commsctl --json agents` output: one JSON array, or one object per line (an
/// agent, or a list under `agents`).
fn json_agents(text: &str) -> Vec<serde_json::Value> {
    let mut listed = Vec::new();
    for value in text.lines().filter_map(|l| serde_json::from_str(l).ok()) {
        match value {
            serde_json::Value::Array(a) => listed.extend(a),
            serde_json::Value::Object(mut o) => match o.remove("agents") {
                Some(serde_json::Value::Array(a)) => listed.extend(a),
                _ => listed.push(serde_json::Value::Object(o)),
            },
            _ => {}
        }
    }
    listed
}
