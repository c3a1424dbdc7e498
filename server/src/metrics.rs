//! The server's Prometheus metrics (served by `server --http`, `comms-ops`): agents up and
//! down and running dispatches (read at each scrape), dispatches started, target outcomes by
//! kind, and the agents' task durations. docs/OPERATIONS.md lists them with the daemon's and
//! the transport's.

use std::sync::{Arc, Weak};

use comms_fleet::control::{Outcome, TargetResult};
use comms_ops::encode::gauge;
use comms_ops::prometheus_client::collector::Collector;
use comms_ops::prometheus_client::encoding::DescriptorEncoder;
use comms_ops::prometheus_client::metrics::counter::Counter;
use comms_ops::prometheus_client::metrics::family::Family;
use comms_ops::prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use comms_ops::Metrics;

use crate::state::State;

/// Counted as dispatches run (cheap clones of shared atomics).
#[derive(Debug, Clone)]
pub(crate) struct ServerMetrics {
    dispatches: Counter,
    outcomes: Family<Vec<(&'static str, &'static str)>, Counter>,
    durations: Histogram,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self {
            dispatches: Counter::default(),
            outcomes: Family::default(),
            // 10 ms to ~11 min: a `uname` to a long build.
            durations: Histogram::new(exponential_buckets(0.01, 4.0, 11)),
        }
    }
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::Failed => "failed",
        Outcome::Timeout => "timeout",
        Outcome::Unreachable => "unreachable",
        Outcome::Cancelled => "cancelled",
    }
}

impl ServerMetrics {
    /// A dispatch started (resumed ones are not counted again).
    pub(crate) fn dispatched(&self) {
        self.dispatches.inc();
    }

    /// One target's outcome, and the agent's wall time when it sent a result.
    pub(crate) fn target(&self, result: &TargetResult) {
        self.outcomes
            .get_or_create(&vec![("outcome", outcome_label(result.outcome))])
            .inc();
        if let Some(r) = &result.result {
            self.durations.observe(r.duration_ms as f64 / 1000.0);
        }
    }

    /// Registers these and the live levels of `state` into `metrics`.
    pub(crate) fn register(&self, metrics: &Metrics, state: &Arc<State>) {
        metrics.with(|r| {
            r.register(
                "comms_server_dispatches",
                "Dispatches started (commsctl run and DISPATCH requests).",
                self.dispatches.clone(),
            );
            r.register(
                "comms_server_target_outcomes",
                "Targets of dispatches finished, by outcome (ok, failed, timeout, unreachable, cancelled).",
                self.outcomes.clone(),
            );
            r.register(
                "comms_server_task_duration_seconds",
                "Wall time of tasks as the agents measured it (targets that sent a result).",
                self.durations.clone(),
            );
        });
        metrics.register_collector(Levels(Arc::downgrade(state)));
    }
}

/// Agents up/down and running dispatches, read from the server's state at each scrape.
#[derive(Debug)]
struct Levels(Weak<State>);

impl Collector for Levels {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(state) = self.0.upgrade() else {
            return Ok(()); // the server stopped
        };
        let agents = state.agents();
        let up = agents.iter().filter(|a| a.up).count() as i64;
        let down = agents.len() as i64 - up;
        gauge(
            &mut encoder,
            "comms_server_agents",
            "Agents the server knows, by state (up: advertised within their TTL).",
            &[(&[("state", "up")], up), (&[("state", "down")], down)],
        )?;
        gauge(
            &mut encoder,
            "comms_server_dispatches_running",
            "Dispatches running now.",
            &[(&[], state.running() as i64)],
        )?;
        Ok(())
    }
}
