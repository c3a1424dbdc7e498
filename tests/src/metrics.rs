//! Scraping a process's `/metrics`, `/healthz` and `/readyz` as a monitoring system would: over
//! HTTP with Python's `urllib`, the text parsed by the Prometheus project's own parser
//! (`prometheus_client.openmetrics.parser`, installed with pip when missing).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test helper: failures should be loud

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

const SCRAPE: &str = r#"
import json, sys, urllib.request, urllib.error
from prometheus_client.openmetrics.parser import text_string_to_metric_families
base = sys.argv[1]
def get(path):
    try:
        with urllib.request.urlopen(base + path, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()
status, ctype, text = get("/metrics")
samples = []
for family in text_string_to_metric_families(text):
    for s in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": s.name,
                        "labels": s.labels, "value": s.value})
health = get("/healthz")
ready = get("/readyz")
print(json.dumps({"status": status, "content_type": ctype, "samples": samples,
                  "healthz": [health[0], health[2]], "readyz": [ready[0], ready[2]]}))
"#;

/// One scrape: the parsed samples and the health answers.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The whole answer (see [`SCRAPE`]).
    pub json: Value,
}

impl Scrape {
    /// The value of sample `name` whose labels include every pair of `labels`; `None` when
    /// no sample matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.json["samples"]
            .as_array()?
            .iter()
            .find(|s| {
                s["name"] == name
                    && labels
                        .iter()
                        .all(|(k, v)| s["labels"][*k].as_str() == Some(*v))
            })
            .and_then(|s| s["value"].as_f64())
    }

    /// [`Scrape::value`] that must exist.
    pub fn must(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {}", self.json))
    }

    /// `/readyz`'s status code.
    pub fn ready_status(&self) -> i64 {
        self.json["readyz"][0].as_i64().unwrap_or(0)
    }
}

/// Scrapes `http://ADDR` (metrics parsed, health and readiness asked).
pub fn scrape(addr: SocketAddr) -> anyhow::Result<Scrape> {
    crate::python::ensure_module("prometheus_client", "prometheus-client")?;
    let out = std::process::Command::new("python3")
        .args(["-c", SCRAPE, &format!("http://{addr}")])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "scraping {addr} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout)?;
    anyhow::ensure!(json["status"] == 200, "GET /metrics: {}", json["status"]);
    Ok(Scrape { json })
}

/// The address a process logged for its HTTP endpoint (`http endpoint: ... local_addr=ADDR`),
/// waiting up to `timeout` for the line.
pub fn logged_http_addr(log: &Path, timeout: Duration) -> SocketAddr {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter(|l| l.contains("http endpoint"))
            .find_map(|l| l.split("local_addr=").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            started.elapsed() < timeout,
            "no http endpoint line in {} within {timeout:?}:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
