//! The RabbitMQ broker of the tests: its URL, and starting / restarting it with
//! `rabbitmqctl` (see `tests/src/rabbitmq.rs` for the conformance backend built on it).
//!
//! Restart: by default the Erlang VM is killed with SIGKILL (`kill -9` of the pid
//! `rabbitmqctl eval 'os:getpid().'` reports) and started again with `rabbitmq-server
//! -detached`; with `COMMS_RABBITMQ_RESTART=stop_app` it is `rabbitmqctl stop_app` +
//! `start_app` instead. Either way we wait for `rabbitmqctl await_startup`, and a
//! [`BrokerGuard`] starts the broker again if a test fails half-way.

use std::process::Command;
use std::time::Duration;

use crate::{Error, Result};

/// The broker URL for tests: `$COMMS_RABBITMQ_URL`, else the local broker on 5672.
pub fn url() -> String {
    std::env::var("COMMS_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Starts the broker again when dropped (tests that stop it hold one).
#[derive(Debug)]
pub struct BrokerGuard;

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        if let Err(e) = ensure_running() {
            eprintln!("BrokerGuard: could not start the broker again: {e}");
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(Error::io(program))?;
    if !status.success() {
        return Err(Error::Failed(format!(
            "{program} {} failed",
            args.join(" ")
        )));
    }
    Ok(())
}

/// Run `rabbitmqctl args`, returning its stdout.
pub fn rabbitmqctl(args: &[&str]) -> Result<String> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(Error::io("rabbitmqctl"))?;
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "rabbitmqctl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Start the broker if it is not running, and wait until it accepts work.
pub fn ensure_running() -> Result<()> {
    if rabbitmqctl(&["await_startup", "--timeout", "5"]).is_ok() {
        return Ok(());
    }
    if rabbitmqctl(&["start_app"]).is_err() {
        // The VM itself is gone: start the server.
        run("rabbitmq-server", &["-detached"])?;
        std::thread::sleep(Duration::from_secs(2));
        let _ = rabbitmqctl(&["start_app"]);
    }
    await_startup()
}

/// Wait (up to two minutes) until the node answers and the app is running. Right after
/// `rabbitmq-server -detached` the node is not even reachable, which `await_startup` reports
/// as an error: retry it.
pub fn await_startup() -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match rabbitmqctl(&["await_startup", "--timeout", "30"]) {
            Ok(_) => return Ok(()),
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Kill and start the broker (see the module docs); blocking.
pub fn restart_broker() -> Result<()> {
    let _guard = BrokerGuard;
    if std::env::var("COMMS_RABBITMQ_RESTART").as_deref() != Ok("stop_app") {
        let pid = rabbitmqctl(&["eval", "list_to_integer(os:getpid())."])?;
        run("kill", &["-9", pid.trim()])?;
        std::thread::sleep(Duration::from_millis(500));
        run("rabbitmq-server", &["-detached"])?;
        std::thread::sleep(Duration::from_secs(2));
    } else {
        rabbitmqctl(&["stop_app"])?;
        std::thread::sleep(Duration::from_millis(500));
        rabbitmqctl(&["start_app"])?;
    }
    await_startup()
}
