//! Floods against a `commsd` process (issue 18, points 7 and 8): hostile lines produce a
//! bounded number of log lines (`LogGates`: one a second per kind, with the count
//! suppressed); non-reading connections and a non-reading sniffer keep the daemon's RSS under
//! `memory_budget` + 128 MiB (docs/HARDENING.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::{Duration, Instant};

use comms_test_support::{Commsd, CommsdSpec, Stderr};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

async fn start(extra: &[&str], stderr: Stderr) -> Commsd {
    CommsdSpec::new(env!("CARGO_BIN_EXE_commsd"))
        .name("flood")
        .unix_only_in_dir()
        .args(extra)
        .stderr(stderr)
        .start()
        .await
        .expect("commsd starts")
}

/// Reads and discards everything (the daemon's answers to the flood).
fn drain(mut r: impl AsyncRead + Unpin + Send + 'static) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
}

/// 100k hostile lines (unparseable, too long, for an unregistered service with the cache
/// full) write at most a few log lines a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_line_flood_logs_are_bounded() {
    let mut d = start(
        &["--cache-max-messages", "1", "--max-line", "200"],
        Stderr::Capture,
    )
    .await;
    let sock = d.socket().unwrap().to_path_buf();
    // Startup lines are not part of the count.
    while d.stderr_line(Duration::from_millis(300)).await.is_some() {}
    let t0 = Instant::now();
    let (r, mut w) = UnixStream::connect(&sock).await.unwrap().into_split();
    drain(r);
    let long = format!("x/{}\n", "y".repeat(300));
    let mut batch = Vec::new();
    for i in 0..100_000u32 {
        match i % 3 {
            0 => batch.extend_from_slice(b"!!not a line @@\n"),
            1 => batch.extend_from_slice(format!("nobody_{i}/HELLO n={i}\n").as_bytes()),
            _ => batch.extend_from_slice(long.as_bytes()),
        }
        if batch.len() > 64 * 1024 {
            w.write_all(&batch).await.unwrap();
            batch.clear();
        }
    }
    w.write_all(&batch).await.unwrap();
    // A round trip shows the daemon went through the whole flood.
    w.write_all(b"REGISTER service=flood_probe;version=1\n")
        .await
        .unwrap();
    let mut probe = UnixStream::connect(d.socket().unwrap()).await.unwrap();
    probe
        .write_all(b"REGISTER service=probe_two;version=1\n")
        .await
        .unwrap();
    let mut lines = 0usize;
    let mut seen = Vec::new();
    while let Some(l) = d.stderr_line(Duration::from_millis(1500)).await {
        lines += 1;
        if seen.len() < 5 {
            seen.push(l);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let stats_bound = 10.0 + 4.0 * secs;
    eprintln!("{lines} log lines in {secs:.1} s for 100k hostile lines: {seen:?}");
    assert!(
        (lines as f64) <= stats_bound,
        "{lines} log lines in {secs:.1} s (bound {stats_bound:.0}): {seen:?}"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// 40 registered services that never read and a sniffer that never reads, while senders
/// flood them: the daemon's RSS stays under the default `memory_budget` (128 MiB) + 128 MiB;
/// the slow consumers are disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_connections_keep_rss_bounded() {
    let d = start(&[], Stderr::from_env()).await;
    let pid = d.pid().unwrap();
    let sock = d.socket().unwrap().to_path_buf();
    let mut sinks = Vec::new();
    for i in 0..40 {
        let mut s = UnixStream::connect(&sock).await.unwrap();
        s.write_all(format!("REGISTER service=sink_{i};version=1\n").as_bytes())
            .await
            .unwrap();
        sinks.push(s);
    }
    let mut sniffer = UnixStream::connect(&sock).await.unwrap();
    sniffer.write_all(b"SNIFF\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let payload = "z".repeat(2000);
    let mut senders = Vec::new();
    for k in 0..4 {
        let payload = payload.clone();
        let sock = sock.clone();
        senders.push(tokio::spawn(async move {
            let (r, mut w) = UnixStream::connect(&sock).await.unwrap().into_split();
            drain(r);
            let reg = format!("REGISTER service=flooder_{k};version=1\n");
            w.write_all(reg.as_bytes()).await.unwrap();
            let mut batch = Vec::new();
            for i in 0..40_000u32 {
                let line = format!("sink_{}/DATA n={i};p={payload}\n", i % 40);
                batch.extend_from_slice(line.as_bytes());
                if batch.len() > 256 * 1024 && w.write_all(&batch).await.is_ok() {
                    batch.clear();
                }
            }
            let _ = w.write_all(&batch).await;
        }));
    }
    let mut max = 0u64;
    let done = async {
        for s in senders {
            let _ = s.await;
        }
    };
    tokio::pin!(done);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = &mut done => break,
            _ = tick.tick() => max = max.max(rss_kib(pid)),
        }
    }
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        max = max.max(rss_kib(pid));
    }
    let bound = (128 + 128) * 1024;
    eprintln!(
        "commsd max VmRSS {} MiB (bound {} MiB)",
        max / 1024,
        bound / 1024
    );
    assert!(max > 0, "VmRSS read");
    assert!(
        max < bound,
        "commsd VmRSS {} MiB over {} MiB",
        max / 1024,
        bound / 1024
    );
    drop(sinks);
    drop(sniffer);
}
