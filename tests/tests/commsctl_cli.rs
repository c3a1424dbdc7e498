//! `commsctl`, `server` and `agent` as an operator sees them (issue 15, points 2, 6 and 8):
//! bounded failures naming the masked URL, no hang when the server dies mid-run, exit codes,
//! `--json` events, completions, no ANSI in logs written to a pipe. Real processes throughout.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use comms_test_support::{binary, free_port};

fn bin(package: &str, name: &str) -> PathBuf {
    binary(package, name).expect("binary")
}

fn commsctl(args: &[&str]) -> (Output, Duration) {
    commsctl_in(Path::new("."), args)
}

/// `commsctl` run in `dir`: beside a server started there, it finds the server's fleet key
/// (`./server-state/fleet.key`) as an operator's would.
fn commsctl_in(dir: &Path, args: &[&str]) -> (Output, Duration) {
    // Built (if need be) before the clock starts: the timings are commsctl's own.
    let commsctl = bin("server", "commsctl");
    let started = Instant::now();
    let out = Command::new(commsctl)
        .args(args)
        .current_dir(dir)
        .env_remove("COMMS_URL")
        .env_remove("COMMS_FLEET_KEY_FILE")
        .env_remove("COMMS_SERVER_STATE_DIR")
        .env_remove("RUST_LOG")
        .output()
        .expect("commsctl runs");
    (out, started.elapsed())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `server` with its embedded daemon on a Unix socket in `dir`; logs to `dir/server.log`.
struct Server {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Server {
    fn start(dir: &std::path::Path) -> Self {
        let url = format!("cd://{}/commsd.sock?retry=0.1,0.2,0.5", dir.display());
        let log = std::fs::File::create(dir.join("server.log")).expect("log");
        let child = Command::new(bin("server", "server"))
            .args(["--url", &url])
            .env_remove("COMMS_URL")
            .env_remove("COMMS_FLEET_KEY_FILE")
            .env_remove("COMMS_SERVER_STATE_DIR")
            .env("RUST_LOG", "info")
            .current_dir(dir)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("server starts");
        let server = Server {
            child,
            url,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let (out, _) = server.ctl(&["--url", &server.url, "--wait", "2", "status"]);
            if out.status.success() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("server did not come up");
    }
}

impl Server {
    /// `commsctl ARGS` in the server's directory (where it finds the server's key).
    fn ctl(&self, args: &[&str]) -> (Output, Duration) {
        commsctl_in(&self.dir, args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kafka_wrong_port_fails_within_the_connect_timeout_in_one_line() {
    let url = format!("kafka://127.0.0.1:{}", free_port().expect("port"));
    let (out, took) = commsctl(&["--url", &url, "--connect-timeout", "3", "agents"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(
        lines[0].contains(&url) && lines[0].contains("kafka broker"),
        "{err}"
    );
}

#[test]
fn rabbitmq_wrong_port_masks_the_password_and_names_the_cause_once() {
    let url = format!(
        "amqp://guest:s3cret@127.0.0.1:{}/%2f",
        free_port().expect("port")
    );
    let (out, took) = commsctl(&["--url", &url, "status"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(!err.contains("s3cret"), "password shown: {err}");
    assert!(err.contains("guest:***@127.0.0.1"), "{err}");
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn native_daemon_absent_is_reported_with_the_url_and_json_errors_have_an_event() {
    let url = format!("cd://127.0.0.1:{}", free_port().expect("port"));
    let (out, took) = commsctl(&["--json", "--url", &url, "agents"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let v: serde_json::Value = serde_json::from_str(err.trim()).expect("JSON error");
    assert_eq!(v["event"], "error");
    assert!(
        v["message"].as_str().unwrap_or_default().contains(&url),
        "{err}"
    );
}

#[test]
fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let (out, _) = commsctl(&["completions", shell]);
        assert!(out.status.success());
        assert!(text(&out.stdout).contains("commsctl"), "{shell}");
    }
    let (out, _) = commsctl(&["man"]);
    assert!(out.status.success() && text(&out.stdout).contains(".TH commsctl"));
}

#[test]
fn help_documents_environment_exit_codes_and_examples_and_sniff_rejects_unused_flags() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["cancel", "--help"],
    ] {
        let (out, _) = commsctl(&args);
        let help = text(&out.stdout);
        assert!(help.contains("Examples:"), "{args:?}: {help}");
    }
    let (out, _) = commsctl(&["--help"]);
    let help = text(&out.stdout);
    for want in [
        "COMMS_URL",
        "RUST_LOG",
        "Exit codes:",
        "cd://127.0.0.1:4040",
    ] {
        assert!(help.contains(want), "{want}: {help}");
    }
    for (package, name) in [("server", "server"), ("agent", "agent")] {
        let out = Command::new(bin(package, name))
            .arg("--help")
            .output()
            .expect("help");
        let help = text(&out.stdout);
        for want in ["COMMS_URL", "Exit codes:", "Examples:"] {
            assert!(help.contains(want), "{name} {want}: {help}");
        }
    }
    let (out, _) = commsctl(&["--url", "cd://127.0.0.1:1", "sniff", "--wait", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("sniff does not use --wait"));
}

#[test]
fn cancel_unknown_is_exit_2_json_lines_have_events_and_logs_have_no_ansi() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path());
    let (out, _) = server.ctl(&["--url", &server.url, "cancel", "nosuchdispatch"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("nosuchdispatch"));
    // No agents: `run` answers at once, with an accepted and a summary event.
    for args in [
        vec!["--json", "--url", &server.url, "status"],
        vec!["--json", "--url", &server.url, "run", "--all", "--", "true"],
    ] {
        let (out, _) = server.ctl(&args);
        let stdout = text(&out.stdout);
        assert!(!stdout.trim().is_empty(), "{args:?}");
        for line in stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            assert!(v["event"].is_string(), "{line}");
        }
        if args.contains(&"run") {
            assert!(stdout
                .lines()
                .last()
                .unwrap_or_default()
                .contains("\"summary\""));
        }
    }
    let log = std::fs::read_to_string(dir.path().join("server.log")).expect("log");
    assert!(!log.contains('\u{1b}'), "ANSI escape in a log file: {log}");
    assert!(
        log.contains("namespace default") && log.contains("from flag --url"),
        "{log}"
    );
}

#[test]
fn run_exits_non_zero_within_seconds_when_the_server_is_killed() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = Server::start(dir.path());
    let agent_log = std::fs::File::create(dir.path().join("agent.log")).expect("log");
    let mut agent = Command::new(bin("agent", "agent"))
        .args(["--url", &server.url, "--name", "a1", "--state-dir"])
        .arg(dir.path().join("agent-state"))
        .current_dir(dir.path())
        .env_remove("COMMS_URL")
        .env_remove("COMMS_FLEET_KEY_FILE")
        .env_remove("COMMS_SERVER_STATE_DIR")
        .stdout(agent_log.try_clone().expect("log"))
        .stderr(agent_log)
        .spawn()
        .expect("agent starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (out, _) = server.ctl(&["--url", &server.url, "agents"]);
        if text(&out.stdout).contains("1 up") {
            break;
        }
        assert!(Instant::now() < deadline, "agent never came up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut run = Command::new(bin("server", "commsctl"))
        .args(["--url", &server.url, "run", "--all", "--", "sleep", "30"])
        .current_dir(dir.path())
        .env_remove("COMMS_URL")
        .env_remove("COMMS_FLEET_KEY_FILE")
        .env_remove("COMMS_SERVER_STATE_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    std::thread::sleep(Duration::from_secs(2));
    server.child.kill().expect("kill");
    let killed = Instant::now();
    let out = loop {
        if run.try_wait().expect("wait").is_some() {
            break run.wait_with_output().expect("output");
        }
        if killed.elapsed() > Duration::from_secs(15) {
            let _ = run.kill();
            let _ = agent.kill();
            panic!("commsctl still waiting 15 s after the server was killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = agent.kill();
    let _ = agent.wait();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "commsctl exited {:?} after the kill: {err}",
        killed.elapsed()
    );
    assert!(
        err.contains("still unknown") && err.contains("commsctl results"),
        "{err}"
    );
}
