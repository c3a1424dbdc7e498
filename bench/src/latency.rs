//! Latency histogram (HdrHistogram, nanoseconds, 3 significant figures) and its summary.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Round-trip times recorded during one measurement.
#[derive(Debug)]
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty histogram for 1 ns .. 60 s.
    pub fn new() -> Self {
        Self {
            // 60 s in ns, 3 significant figures: fixed bounds, cannot fail.
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
        }
    }

    /// `scale.warmup` untimed round trips, then up to `scale.rtt_count` timed ones, stopping
    /// `scale.rtt_cap` after the first timed one.
    pub async fn measure(
        scale: &crate::scale::Scale,
        mut round_trip: impl AsyncFnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let mut lat = Self::new();
        let mut deadline = None;
        for i in 0..scale.warmup + scale.rtt_count {
            let t = std::time::Instant::now();
            round_trip().await?;
            if i >= scale.warmup {
                lat.record(t.elapsed());
                let now = std::time::Instant::now();
                if now >= *deadline.get_or_insert(now + scale.rtt_cap) {
                    break;
                }
            }
        }
        Ok(lat)
    }

    /// Record one round trip (saturating at the upper bound).
    pub fn record(&mut self, d: Duration) {
        self.hist.saturating_record(d.as_nanos().max(1) as u64);
    }

    /// Percentiles in microseconds, or `None` when nothing was recorded.
    pub fn summary(&self) -> Option<Rtt> {
        if self.hist.is_empty() {
            return None;
        }
        let us = |q: f64| self.hist.value_at_quantile(q) as f64 / 1_000.0;
        Some(Rtt {
            count: self.hist.len(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: self.hist.max() as f64 / 1_000.0,
            mean_us: self.hist.mean() / 1_000.0,
        })
    }
}

/// Request/reply latency of one row.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rtt {
    /// Timed round trips.
    pub count: u64,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Slowest, µs.
    pub max_us: f64,
    /// Mean, µs.
    pub mean_us: f64,
}
