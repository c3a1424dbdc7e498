//! `comms-conformance`: the conformance suite, one body of tests run against every backend
//! through the [`comms_core::Transport`] contract (its own crate: only test crates depend on it).
//!
//! A backend implements [`Backend`] (a factory of connected transports, its capabilities, and a
//! kill-and-restart hook where it has a daemon or broker) and calls [`run`]:
//!
//! ```no_run
//! # async fn demo(backend: &dyn comms_conformance::Backend) {
//! let report = comms_conformance::run(backend).await;
//! assert!(report.is_ok(), "{report}");
//! # }
//! ```
//!
//! The report prints one line per case — pass, FAIL with the reason, or skipped with the reason
//! (a case that does not apply is never counted as passed) — and a total line
//! `conformance[backend]: N passed, N failed, N skipped`. The cases are those of
//! `docs/CONFORMANCE.md`, numbered the same. Every case runs in a fresh namespace with fresh names.
//!
//! Environment: `COMMS_CONFORMANCE_ONLY=name,name` runs only those cases;
//! `COMMS_CONFORMANCE_TIMEOUT_SECS` changes the per-case limit (default 120 s, faults 300 s).
//!
//! # Layout
//! - this file: [`Backend`], the case table, [`run`] / [`run_only`] and the [`Report`];
//! - `harness`: the per-case context ([`Ctx`]: fresh namespace and names, endpoints), the
//!   [`Recorder`] and the order / duplicate checks;
//! - one module per group of cases: `addressing`, `ordering`, `requests`, `delivery`,
//!   `directory`, `forwarding`, `faults`, `isolation`, `poison`.

mod addressing;
mod batch;
mod delivery;
mod directory;
mod faults;
mod forwarding;
mod harness;
mod isolation;
mod ordering;
mod poison;
mod requests;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use comms_core::capabilities::Capabilities;
use comms_core::error::Result;
use comms_core::transport::Transport;

pub use harness::{
    check_increasing, check_no_duplicates, ensure, CaseResult, Ctx, OrFail, Recorder, Stop, WAIT,
};

/// What the suite needs from a backend.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Name printed in the report (`memory`, `native-line`, `rabbitmq`...).
    fn name(&self) -> String;

    /// A new transport in deployment `namespace` at `slot`. Slots let a backend place endpoints
    /// on different nodes or daemons: the suite puts senders at slot 0 and receivers at 1 and 2.
    /// Two endpoints of one service are placed at different slots.
    async fn connect(&self, namespace: &str, slot: usize) -> Result<Box<dyn Transport>>;

    /// The capabilities of the transports this backend makes.
    fn capabilities(&self) -> Capabilities;

    /// `None` when [`Backend::kill_and_restart`] works; otherwise why this backend has nothing
    /// to restart (printed as the reason the fault cases are skipped).
    fn restart_unsupported(&self) -> Option<String>;

    /// Kill the daemon or broker with SIGKILL and start it again; return once it accepts
    /// connections.
    async fn kill_and_restart(&self) -> Result<()>;

    /// `Some(why)` when every slot is the same node (e.g. one daemon without peering): two
    /// instances of one service would then share one address, so `service_anycast` is skipped
    /// with this reason and `lookup` uses one instance per service.
    fn single_node(&self) -> Option<String> {
        None
    }
}

type CaseFn = for<'a> fn(&'a Ctx<'a>) -> Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

struct Case {
    number: u8,
    name: &'static str,
    fault: bool,
    run: CaseFn,
}

macro_rules! cases {
    ($( $n:literal $name:ident $module:ident $($fault:ident)? ),* $(,)?) => {
        &[$(Case {
            number: $n,
            name: stringify!($name),
            fault: cases!(@fault $($fault)?),
            run: |ctx| Box::pin($module::$name(ctx)),
        }),*]
    };
    (@fault fault) => { true };
    (@fault) => { false };
}

const CASES: &[Case] = cases![
    1 instance_unicast addressing,
    2 service_anycast addressing,
    3 broadcast_to_declared addressing,
    4 namespace_isolation addressing,
    5 pair_order ordering,
    6 many_senders ordering,
    7 large_payload ordering,
    8 request_reply requests,
    9 request_timeout requests,
    10 unknown_command requests,
    11 invalid_message requests,
    12 redelivery_after_nack delivery,
    13 dedup delivery,
    14 receiver_restart delivery,
    15 close_flushes delivery,
    16 waiting_for_service delivery,
    17 backpressure delivery,
    18 at_most_once delivery,
    19 advertise_and_expire directory,
    20 lookup directory,
    21 forward_keeps_origin forwarding,
    22 hop_limit forwarding,
    23 kill_and_restart faults fault,
    24 reconnect_state faults fault,
    25 handler_panic isolation,
    26 hung_handler isolation,
    27 pipelined_restart faults fault,
    28 retry_in_place poison,
    29 poison_to_dead_letter poison,
    30 attempts_survive_restart poison,
    31 batch_handler batch,
];

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held.
    Pass,
    /// A check failed; the reason.
    Fail(String),
    /// Not applicable to this backend; the reason.
    Skipped(String),
}

/// One case's line in the report.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// Number in docs/CONFORMANCE.md.
    pub number: u8,
    /// Name.
    pub name: &'static str,
    /// Result.
    pub verdict: Verdict,
    /// How long it took.
    pub elapsed: Duration,
}

/// The whole matrix for one backend.
#[derive(Debug, Clone)]
pub struct Report {
    /// Backend name.
    pub backend: String,
    /// One entry per case run.
    pub cases: Vec<CaseReport>,
}

impl Report {
    fn count(&self, f: impl Fn(&Verdict) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.verdict)).count()
    }
    /// Cases passed.
    pub fn passed(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Pass))
    }
    /// Cases failed.
    pub fn failed(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Fail(_)))
    }
    /// Cases skipped (with reasons).
    pub fn skipped(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Skipped(_)))
    }
    /// True when nothing failed and something ran.
    pub fn is_ok(&self) -> bool {
        self.failed() == 0 && self.passed() > 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.cases {
            let (word, why) = match &c.verdict {
                Verdict::Pass => ("pass", String::new()),
                Verdict::Fail(r) => ("FAIL", format!(": {r}")),
                Verdict::Skipped(r) => ("skipped", format!(": {r}")),
            };
            writeln!(
                f,
                "conformance[{}] {:>2} {:<24} {word} ({:.2}s){why}",
                self.backend,
                c.number,
                c.name,
                c.elapsed.as_secs_f64()
            )?;
        }
        write!(
            f,
            "conformance[{}]: {} passed, {} failed, {} skipped",
            self.backend,
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }
}

/// Names of every case, in order.
pub fn case_names() -> Vec<&'static str> {
    CASES.iter().map(|c| c.name).collect()
}

/// Run every case (or those named in `COMMS_CONFORMANCE_ONLY`) against `backend`, one after the
/// other, printing each line as it completes; return the report.
pub async fn run(backend: &dyn Backend) -> Report {
    let only: Option<Vec<String>> = std::env::var("COMMS_CONFORMANCE_ONLY")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split(',').map(|n| n.trim().to_owned()).collect());
    run_selected(backend, only).await
}

/// Run only the named cases (see [`case_names`]; unknown names are ignored), each limited to
/// `case_timeout`.
pub async fn run_only(backend: &dyn Backend, names: &[&str], case_timeout: Duration) -> Report {
    let only = Some(names.iter().map(|n| (*n).to_owned()).collect());
    run_selected_with(backend, only, Some(case_timeout.as_secs().max(1))).await
}

async fn run_selected(backend: &dyn Backend, only: Option<Vec<String>>) -> Report {
    let limit = std::env::var("COMMS_CONFORMANCE_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    run_selected_with(backend, only, limit).await
}

async fn run_selected_with(
    backend: &dyn Backend,
    only: Option<Vec<String>>,
    limit: Option<u64>,
) -> Report {
    let mut report = Report {
        backend: backend.name(),
        cases: Vec::new(),
    };
    for case in CASES {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == case.name))
        {
            continue;
        }
        let started = Instant::now();
        let verdict = run_case(backend, case, limit).await;
        let line = CaseReport {
            number: case.number,
            name: case.name,
            verdict,
            elapsed: started.elapsed(),
        };
        let single = Report {
            backend: report.backend.clone(),
            cases: vec![line.clone()],
        };
        if let Some(first) = single.to_string().lines().next() {
            println!("{first}");
        }
        report.cases.push(line);
    }
    println!(
        "conformance[{}]: {} passed, {} failed, {} skipped",
        report.backend,
        report.passed(),
        report.failed(),
        report.skipped()
    );
    report
}

async fn run_case(backend: &dyn Backend, case: &Case, limit: Option<u64>) -> Verdict {
    if case.fault {
        if let Some(reason) = backend.restart_unsupported() {
            return Verdict::Skipped(reason);
        }
    }
    let uniq = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    let uniq = uniq[uniq.len() - 10..].to_owned();
    let ctx = Ctx {
        backend,
        caps: backend.capabilities(),
        ns: format!("c{}_{uniq}", case.number),
        uniq,
    };
    let limit = Duration::from_secs(limit.unwrap_or(if case.fault { 300 } else { 120 }));
    match tokio::time::timeout(limit, (case.run)(&ctx)).await {
        Err(_) => Verdict::Fail(format!("did not finish within {limit:?}")),
        Ok(Ok(())) => Verdict::Pass,
        Ok(Err(Stop::Fail(why))) => Verdict::Fail(why),
        Ok(Err(Stop::Skip(why))) => Verdict::Skipped(why),
    }
}
