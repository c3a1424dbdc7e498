//! Ratios between rows of the same run, checked against the targets.

use std::fmt::Write as _;

use serde::Serialize;

use crate::report::{Mode, Row};
use crate::scale::PAYLOADS;

/// A target: the ratio must be at least or at most a bound.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// `ratio >= bound`.
    AtLeast(f64),
    /// `ratio <= bound`.
    AtMost(f64),
}

/// One computed ratio.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// What is divided by what.
    pub name: String,
    /// The value, when both rows were measured.
    pub value: Option<f64>,
    /// The target, if it sets one.
    pub target: Option<Target>,
    /// Whether the target is met (`None`: no target or no value).
    pub met: Option<bool>,
}

fn find<'a>(rows: &'a [Row], backend: &str, payload: usize, mode: Mode) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.backend == backend && r.payload == payload && r.mode == mode)
}

fn tput(rows: &[Row], b: &str, p: usize, m: Mode) -> Option<f64> {
    find(rows, b, p, m)?
        .oneway
        .map(|o| o.msg_per_s)
        .filter(|v| *v > 0.0)
}

fn p50(rows: &[Row], b: &str, p: usize, m: Mode) -> Option<f64> {
    find(rows, b, p, m)?
        .rtt
        .map(|r| r.p50_us)
        .filter(|v| *v > 0.0)
}

fn ratio(name: String, a: Option<f64>, b: Option<f64>, target: Option<Target>) -> Ratio {
    let value = a.zip(b).map(|(a, b)| a / b);
    let met = value.zip(target).map(|(v, t)| match t {
        Target::AtLeast(x) => v >= x,
        Target::AtMost(x) => v <= x,
    });
    Ratio {
        name,
        value,
        target,
        met,
    }
}

/// Every ratio the issue asks for, from `rows`.
pub fn compute(rows: &[Row]) -> Vec<Ratio> {
    use Mode::{AtLeastOnce as Alo, AtMostOnce as Amo, Na};
    let mut out = Vec::new();
    for p in PAYLOADS {
        // The targets are stated for the 16 B rows; 1 KiB is reported beside them.
        let t = |x: Target| (p == 16).then_some(x);
        out.push(ratio(
            format!("native at-most-once / NATS core, one-way msg/s, {p} B"),
            tput(rows, "native", p, Amo),
            tput(rows, "nats", p, Na),
            t(Target::AtLeast(2.0)),
        ));
        out.push(ratio(
            format!("native at-least-once / NATS core, one-way msg/s, {p} B"),
            tput(rows, "native", p, Alo),
            tput(rows, "nats", p, Na),
            t(Target::AtLeast(1.0)),
        ));
        for (m, label) in [(Alo, "at-least-once"), (Amo, "at-most-once")] {
            out.push(ratio(
                format!("native {label} / NATS core, request/reply p50, {p} B"),
                p50(rows, "native", p, m),
                p50(rows, "nats", p, Na),
                t(Target::AtMost(0.7)),
            ));
        }
        for (m, label) in [(Alo, "at-least-once"), (Amo, "at-most-once")] {
            for (plugin, raw) in [("rabbitmq", "raw-lapin"), ("kafka", "raw-rdkafka")] {
                out.push(ratio(
                    format!("{plugin} / {raw}, one-way msg/s, {label}, {p} B"),
                    tput(rows, plugin, p, m),
                    tput(rows, raw, p, m),
                    Some(Target::AtLeast(0.9)),
                ));
                // Speed ratio for latency: raw p50 / plugin p50 (higher is better).
                out.push(ratio(
                    format!("{raw} p50 / {plugin} p50 (request/reply speed), {label}, {p} B"),
                    p50(rows, raw, p, m),
                    p50(rows, plugin, p, m),
                    Some(Target::AtLeast(0.9)),
                ));
            }
        }
        for (m, label) in [(Alo, "at-least-once"), (Amo, "at-most-once")] {
            out.push(ratio(
                format!("native {label} / raw TCP, request/reply p50, {p} B"),
                p50(rows, "native", p, m),
                p50(rows, "tcp", p, Na),
                None,
            ));
        }
    }
    out
}

/// The ratios as a markdown table.
pub fn table(ratios: &[Ratio]) -> String {
    let mut out = String::from("| ratio | value | target | met |\n|---|---:|---|---|\n");
    for r in ratios {
        let value = r.value.map_or_else(
            || "n/a (row not measured)".to_owned(),
            |v| format!("{v:.2}"),
        );
        let target = match r.target {
            Some(Target::AtLeast(x)) => format!("≥ {x}"),
            Some(Target::AtMost(x)) => format!("≤ {x}"),
            None => "-".to_owned(),
        };
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let _ = writeln!(out, "| {} | {value} | {target} | {met} |", r.name);
    }
    out
}
