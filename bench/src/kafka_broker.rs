//! The Kafka broker of the `kafka` and `raw-rdkafka` rows: `$COMMS_BENCH_KAFKA` when set,
//! else a fresh `tansu` child process (`$TANSU_BIN`, `PATH` or `~/.cargo/bin`; in memory, on
//! a free loopback port), one per row group so both groups start from the same empty broker;
//! killed on drop. With neither, the rows are skipped with the reason.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A broker to measure against.
#[derive(Debug)]
pub struct Broker {
    /// `host:port`.
    pub bootstrap: String,
    _child: Option<Child>,
}

fn tansu_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("tansu")).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/tansu"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// `$COMMS_BENCH_KAFKA` if it answers, else a started tansu; `Err(reason)` otherwise.
pub async fn broker() -> Result<Broker, String> {
    if let Ok(bootstrap) = std::env::var("COMMS_BENCH_KAFKA") {
        crate::probe::tcp(&bootstrap).await?;
        return Ok(Broker {
            bootstrap,
            _child: None,
        });
    }
    let bin = tansu_binary().ok_or(
        "no broker: set COMMS_BENCH_KAFKA, or install tansu (cargo install tansu --locked --features dynostore,libsql)",
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let listener = format!("tcp://127.0.0.1:{port}");
    let mut child = Command::new(&bin)
        .args(["broker", "--listener-url", &listener])
        .args(["--advertised-listener-url", &listener])
        .args(["--storage-engine", "memory://tansu/"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let bootstrap = format!("127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while crate::probe::tcp(&bootstrap).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("tansu exited on start: {status}"));
        }
        if tokio::time::Instant::now() > deadline {
            return Err("tansu did not accept connections within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Broker {
        bootstrap,
        _child: Some(child),
    })
}
