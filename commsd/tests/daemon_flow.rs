//! Flow control (commsd `conn::flow`): a consumer that reads, but slower than its sender
//! writes, slows the sender down instead of being disconnected with its messages lost; a
//! consumer that does not read at all is still disconnected (`daemon_ops.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

#[path = "daemon_util.rs"]
mod daemon_util;

use std::time::Duration;

use comms_test_support::LineClient;
use daemon_util::start_with;

const LINES: usize = 60_000;

/// 60,000 lines of about 100 bytes (6 MB, 12 times the consumer's 512 KiB queue) sent at
/// once to a consumer that reads them at about a fifth of that pace: every line arrives, in
/// order, and no consumer is disconnected. The old daemon dropped the consumer as slow (and
/// its lines with it) as soon as its queue was full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_slows_its_sender_down_instead_of_losing_lines() {
    let (_d, h) = start_with(|c| c.outbound_queue_bytes = 512 * 1024).await;
    let sock = h.unix_path().unwrap().to_path_buf();
    let mut sink = LineClient::unix(&sock).await.unwrap();
    sink.register("flow_sink").await.unwrap();
    let mut src = LineClient::unix(&sock).await.unwrap();
    src.register("flow_src").await.unwrap();
    let pad = "p".repeat(64);
    let sender = tokio::spawn(async move {
        let mut batch = String::new();
        for i in 0..LINES {
            batch.push_str(&format!("flow_sink/FLOW n={i};pad={pad}\n"));
            if batch.len() > 32 * 1024 {
                src.send_raw(batch.as_bytes()).await.unwrap();
                batch.clear();
            }
        }
        src.send_raw(batch.as_bytes()).await.unwrap();
        src
    });
    let mut got = 0;
    while got < LINES {
        let line = sink
            .line_within(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("line {got} of {LINES}: {e}; {:?}", h.stats()));
        let n: usize = comms_test_support::line::param(&line, "n").parse().unwrap();
        assert_eq!(n, got, "in order, none missing: {line}");
        got += 1;
        if got % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let _src = sender.await.unwrap();
    assert_eq!(h.stats().slow_consumers_disconnected, 0);
    h.shutdown().await;
}

/// A consumer that keeps reading, but too slowly to ever catch up (as a hostile local
/// process could: 32 KiB every 50 ms against a 16 MiB queue, so that going from half to a
/// quarter of it would take 13 s), holds its sender back for at most the hold limit (5 s):
/// the sender's next line to another service still arrives soon after, and the consumer is
/// disconnected once its queue is full. Without the limit the sender waits for the whole
/// 30 MB to trickle out (about 45 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_catches_up_holds_its_sender_back_for_a_bounded_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_d, h) = start_with(|c| c.outbound_queue_bytes = 16 * 1024 * 1024).await;
    let sock = h.unix_path().unwrap().to_path_buf();
    let mut fast = LineClient::unix(&sock)
        .await
        .unwrap()
        .with_wait(Duration::from_secs(40));
    fast.register("flow_fast").await.unwrap();
    let mut slow = tokio::net::UnixStream::connect(&sock).await.unwrap();
    slow.write_all(b"REGISTER service=flow_slow;version=1\n")
        .await
        .unwrap();
    let dribble = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    let mut src = LineClient::unix(&sock).await.unwrap();
    src.register("flow_src2").await.unwrap();
    // `flow_slow` is registered once the daemon answered our own REGISTER after it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    let flood = tokio::spawn(async move {
        let pad = "q".repeat(1000);
        let mut batch = String::new();
        for i in 0..30_000 {
            batch.push_str(&format!("flow_slow/FLOOD n={i};pad={pad}\n"));
            if batch.len() > 64 * 1024 {
                src.send_raw(batch.as_bytes()).await.unwrap();
                batch.clear();
            }
        }
        batch.push_str("flow_fast/AFTER n=1\n");
        src.send_raw(batch.as_bytes()).await.unwrap();
        src
    });
    fast.next_matching(|l| l.contains("/AFTER"))
        .await
        .expect("the line after the flood arrives");
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(12),
        "the sender was held back {waited:?}"
    );
    assert_eq!(h.stats().slow_consumers_disconnected, 1);
    let _src = flood.await.unwrap();
    dribble.abort();
    h.shutdown().await;
}
