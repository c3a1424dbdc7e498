//! Runs one task: a process in its own process group, output captured up to a cap and streamed
//! in chunks, killed with its whole group at the timeout or on cancel.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use comms_fleet::task::{TaskResult, TaskStatus};

/// Bytes of each stream kept for the result's tail.
pub const TAIL_BYTES: usize = 4096;
/// Largest chunk streamed back.
pub const CHUNK_BYTES: usize = 8192;
/// How long a cancelled task gets between SIGTERM and SIGKILL.
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Task id.
    pub task: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Kill after this long.
    pub timeout: Duration,
    /// Bytes of each stream streamed back at most.
    pub output_cap: u64,
}

/// A piece of output, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The text.
    pub data: String,
}

#[derive(Debug, Default)]
struct StreamStats {
    bytes: u64,
    truncated: bool,
    tail: Vec<u8>,
}

/// Run `spec`, sending output chunks to `chunks` as they come, until it exits, times out or
/// `cancel` fires. Never panics; a process that cannot start is a result with status `error`.
pub async fn run(
    spec: TaskSpec,
    chunks: mpsc::Sender<Chunk>,
    cancel: CancellationToken,
) -> TaskResult {
    let started = Instant::now();
    let Some((program, args)) = spec.argv.split_first() else {
        return TaskResult::not_run(&spec.task, TaskStatus::Rejected, "argv is empty");
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return TaskResult::not_run(
                &spec.task,
                TaskStatus::Error,
                format!("cannot start {program:?}: {e}"),
            )
        }
    };
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let readers = {
        let out = child
            .stdout
            .take()
            .map(|s| tokio::spawn(pump(s, "stdout", spec.output_cap, chunks.clone())));
        let err = child
            .stderr
            .take()
            .map(|s| tokio::spawn(pump(s, "stderr", spec.output_cap, chunks.clone())));
        (out, err)
    };
    let kill = |signal: Signal| {
        if let Some(pgid) = pgid {
            // The group may already be gone; that is fine.
            let _ = killpg(pgid, signal);
        }
    };
    let mut status = TaskStatus::Ok;
    let exit = tokio::select! {
        r = child.wait() => r,
        _ = tokio::time::sleep(spec.timeout) => {
            status = TaskStatus::Timeout;
            kill(Signal::SIGKILL);
            child.wait().await
        }
        _ = cancel.cancelled() => {
            status = TaskStatus::Cancelled;
            kill(Signal::SIGTERM);
            match tokio::time::timeout(CANCEL_GRACE, child.wait()).await {
                Ok(r) => r,
                Err(_) => {
                    kill(Signal::SIGKILL);
                    child.wait().await
                }
            }
        }
    };
    // Whatever is left in the group (children that outlived the leader) goes too.
    kill(Signal::SIGKILL);
    let (stdout, stderr) = (collect(readers.0).await, collect(readers.1).await);
    let mut result = TaskResult {
        task: spec.task.clone(),
        status,
        exit_code: None,
        signal: None,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        stdout_bytes: stdout.bytes,
        stderr_bytes: stderr.bytes,
        truncated: stdout.truncated || stderr.truncated,
        stdout_tail: text(&stdout.tail),
        stderr_tail: text(&stderr.tail),
        error: None,
    };
    match exit {
        Ok(exit) => {
            use std::os::unix::process::ExitStatusExt;
            result.exit_code = exit.code().map(i64::from);
            result.signal = exit.signal().map(i64::from);
            if result.status == TaskStatus::Ok && !exit.success() {
                result.status = TaskStatus::Failed;
            }
        }
        Err(e) => {
            result.status = TaskStatus::Error;
            result.error = Some(format!("waiting for the process: {e}"));
        }
    }
    result
}

async fn collect(handle: Option<tokio::task::JoinHandle<StreamStats>>) -> StreamStats {
    let Some(handle) = handle else {
        return StreamStats::default();
    };
    // A grandchild that left the group could hold the pipe open for ever: do not wait for it.
    match tokio::time::timeout(Duration::from_secs(1), handle).await {
        Ok(Ok(stats)) => stats,
        _ => StreamStats {
            truncated: true,
            ..StreamStats::default()
        },
    }
}

/// Read a stream to its end: count everything, stream up to `cap` bytes in UTF-8-clean chunks,
/// keep the tail.
async fn pump(
    mut stream: impl AsyncRead + Unpin,
    name: &'static str,
    cap: u64,
    chunks: mpsc::Sender<Chunk>,
) -> StreamStats {
    let mut stats = StreamStats::default();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut carry: Vec<u8> = Vec::new();
    let mut streamed = 0u64;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        stats.bytes += n as u64;
        stats.tail.extend_from_slice(&buf[..n]);
        if stats.tail.len() > TAIL_BYTES {
            let cut = stats.tail.len() - TAIL_BYTES;
            stats.tail.drain(..cut);
        }
        if streamed >= cap {
            stats.truncated = true;
            continue;
        }
        let room = usize::try_from(cap - streamed).unwrap_or(usize::MAX);
        let take = n.min(room);
        if take < n {
            stats.truncated = true;
        }
        streamed += take as u64;
        carry.extend_from_slice(&buf[..take]);
        let valid = match std::str::from_utf8(&carry) {
            Ok(_) => carry.len(),
            // Keep an incomplete character (at most 3 bytes) for the next read.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => carry.len(),
        };
        let data = text(&carry[..valid]);
        carry.drain(..valid);
        if !data.is_empty() && chunks.send(Chunk { stream: name, data }).await.is_err() {
            // Nobody listens any more; keep draining so the process does not block.
            streamed = cap;
        }
    }
    if !carry.is_empty() {
        let data = text(&carry);
        let _ = chunks.send(Chunk { stream: name, data }).await;
    }
    stats
}

/// Output bytes as text every transport can carry: invalid UTF-8 and NUL bytes become U+FFFD
/// (a cd: line cannot hold a NUL, so a chunk or result containing one could not be sent).
fn text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}")
    } else {
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str], timeout_ms: u64, cap: u64) -> TaskSpec {
        TaskSpec {
            task: "t".into(),
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            env: BTreeMap::from([("GREETING".into(), "hello".into())]),
            cwd: None,
            timeout: Duration::from_millis(timeout_ms),
            output_cap: cap,
        }
    }

    async fn run_collect(spec: TaskSpec) -> (TaskResult, String) {
        let (tx, mut rx) = mpsc::channel(1024);
        let result = run(spec, tx, CancellationToken::new()).await;
        let mut out = String::new();
        while let Ok(c) = rx.try_recv() {
            if c.stream == "stdout" {
                out.push_str(&c.data);
            }
        }
        (result, out)
    }

    #[tokio::test]
    async fn exit_code_env_and_output() {
        let (r, out) = run_collect(spec(
            &["sh", "-c", "echo $GREETING; echo oops >&2; exit 3"],
            5000,
            1 << 20,
        ))
        .await;
        assert_eq!(r.status, TaskStatus::Failed);
        assert_eq!(r.exit_code, Some(3));
        assert_eq!(out, "hello\n");
        assert_eq!(r.stderr_tail, "oops\n");
        assert_eq!(r.stdout_bytes, 6);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // The child spawns a grandchild that would write the marker after 2 s.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let started = Instant::now();
        let (r, _) = run_collect(spec(&["sh", "-c", &script], 300, 1024)).await;
        assert_eq!(r.status, TaskStatus::Timeout);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !marker.exists(),
            "a process of the group outlived the timeout"
        );
    }

    #[tokio::test]
    async fn output_cap_truncates_but_counts() {
        let (r, out) = run_collect(spec(
            &["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x"],
            5000,
            1000,
        ))
        .await;
        assert_eq!(r.status, TaskStatus::Ok);
        assert_eq!(out.len(), 1000);
        assert!(r.truncated);
        assert_eq!(r.stdout_bytes, 100_000);
        assert_eq!(r.stdout_tail.len(), TAIL_BYTES);
    }

    #[tokio::test]
    async fn cancel_and_start_errors() {
        let (tx, _rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            c2.cancel();
        });
        let r = run(spec(&["sleep", "30"], 60_000, 10), tx, cancel).await;
        assert_eq!(r.status, TaskStatus::Cancelled);
        let (r, _) = run_collect(spec(&["/no/such/program"], 1000, 10)).await;
        assert_eq!(r.status, TaskStatus::Error);
        assert!(r.error.unwrap().contains("/no/such/program"));
        let (r, _) = run_collect(spec(&[], 1000, 10)).await;
        assert_eq!(r.status, TaskStatus::Rejected);
    }

    #[tokio::test]
    async fn utf8_split_across_reads_is_kept_whole() {
        let (r, out) = run_collect(spec(
            &["sh", "-c", "for i in $(seq 1 3000); do printf 'é✓'; done"],
            5000,
            1 << 20,
        ))
        .await;
        assert_eq!(r.status, TaskStatus::Ok);
        assert_eq!(out, "é✓".repeat(3000));
    }
}
