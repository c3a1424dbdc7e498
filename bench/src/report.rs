//! Results: one [`Row`] per (backend, payload, mode), the markdown table, the JSON document,
//! and progress lines on stderr.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::latency::Rtt;

/// Delivery mode of a row (`Na` for references that have only one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Fire-and-forget.
    AtMostOnce,
    /// Confirmed / acknowledged.
    AtLeastOnce,
    /// Not applicable (raw TCP, NATS core).
    Na,
}

impl Mode {
    /// Short label for the table.
    pub fn label(self) -> &'static str {
        match self {
            Mode::AtMostOnce => "at-most-once",
            Mode::AtLeastOnce => "at-least-once",
            Mode::Na => "-",
        }
    }

    /// `m` sent in this mode (at-most-once, or as built).
    pub fn apply(self, m: comms_core::Message) -> comms_core::Message {
        if self == Mode::AtMostOnce {
            m.at_most_once()
        } else {
            m
        }
    }
}

/// One-way throughput of one row.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OneWay {
    /// Messages handed to the sender.
    pub sent: u64,
    /// Messages the receiver counted.
    pub received: u64,
    /// From the first send to the last receipt.
    pub secs: f64,
    /// `received / secs`.
    pub msg_per_s: f64,
    /// Payload megabytes (10^6) per second received.
    pub mb_per_s: f64,
}

impl OneWay {
    /// Figures from counts and elapsed time.
    pub fn new(sent: u64, received: u64, elapsed: Duration, payload: usize) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let msg_per_s = received as f64 / secs;
        Self {
            sent,
            received,
            secs,
            msg_per_s,
            mb_per_s: msg_per_s * payload as f64 / 1e6,
        }
    }
}

/// What one (backend, payload, mode) measured, or why it did not.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Backend or reference name (`native`, `nats`, `raw-lapin`...).
    pub backend: String,
    /// Payload bytes.
    pub payload: usize,
    /// Delivery mode.
    pub mode: Mode,
    /// One-way throughput, when measured.
    pub oneway: Option<OneWay>,
    /// Request/reply latency, when measured.
    pub rtt: Option<Rtt>,
    /// Why the whole row, or a part of it, was not measured.
    pub skipped: Option<String>,
    /// Remarks (losses, partial failures).
    pub notes: Vec<String>,
}

impl Row {
    /// A row with nothing measured yet.
    pub fn new(backend: &str, payload: usize, mode: Mode) -> Self {
        Self {
            backend: backend.to_owned(),
            payload,
            mode,
            oneway: None,
            rtt: None,
            skipped: None,
            notes: Vec::new(),
        }
    }

    /// A row that was not measured, with the reason.
    pub fn skipped(backend: &str, payload: usize, mode: Mode, reason: impl Into<String>) -> Self {
        let mut row = Self::new(backend, payload, mode);
        row.skipped = Some(reason.into());
        row
    }

    /// Keeps a one-way measurement (noting what was not received within the drain time), or
    /// notes why it failed.
    pub fn record_oneway(&mut self, measured: anyhow::Result<OneWay>) {
        match measured {
            Ok(o) => {
                if o.received < o.sent {
                    self.notes.push(format!(
                        "{} not received within the drain time",
                        o.sent - o.received
                    ));
                }
                self.oneway = Some(o);
            }
            Err(e) => self.notes.push(format!("one-way failed: {e:#}")),
        }
    }

    /// Keeps a request/reply latency summary, or notes why it failed.
    pub fn record_rtt(&mut self, measured: anyhow::Result<crate::latency::Latencies>) {
        match measured {
            Ok(l) => self.rtt = l.summary(),
            Err(e) => self.notes.push(format!("request/reply failed: {e:#}")),
        }
    }
}

/// Progress on stderr: which row runs, and its figures when done.
#[derive(Debug)]
pub struct Progress {
    start: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Start the clock.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// Announce a step.
    pub fn step(&self, what: &str) {
        eprintln!("[{:6.1}s] {what} ...", self.start.elapsed().as_secs_f64());
    }

    /// Report a finished row.
    pub fn done(&self, row: &Row) {
        eprintln!(
            "[{:6.1}s]   {} {} B {}: {}",
            self.start.elapsed().as_secs_f64(),
            row.backend,
            row.payload,
            row.mode.label(),
            cells(row)[3..].join(" | ")
        );
    }
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn cells(row: &Row) -> Vec<String> {
    let mut c = vec![
        row.backend.clone(),
        row.payload.to_string(),
        row.mode.label().to_owned(),
    ];
    match &row.oneway {
        Some(o) => {
            c.push(fmt_rate(o.msg_per_s));
            c.push(format!("{:.1}", o.mb_per_s));
            c.push(format!("{}/{}", o.received, o.sent));
        }
        None => c.extend(["-".into(), "-".into(), "-".into()]),
    }
    match &row.rtt {
        Some(r) => {
            c.push(fmt_us(r.p50_us));
            c.push(fmt_us(r.p99_us));
            c.push(fmt_us(r.p999_us));
        }
        None => c.extend(["-".into(), "-".into(), "-".into()]),
    }
    let mut note: Vec<String> = row
        .skipped
        .iter()
        .map(|s| format!("skipped: {s}"))
        .collect();
    note.extend(row.notes.iter().cloned());
    c.push(note.join("; "));
    c
}

/// The markdown table of every row.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| backend | payload B | mode | one-way msg/s | MB/s | recv/sent | RTT p50 | p99 | p99.9 | note |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", cells(row).join(" | "));
    }
    out
}

/// The JSON document: run settings, rows, ratios.
pub fn json(meta: serde_json::Value, rows: &[Row], ratios: &[crate::ratios::Ratio]) -> String {
    let doc = serde_json::json!({ "meta": meta, "rows": rows, "ratios": ratios });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
