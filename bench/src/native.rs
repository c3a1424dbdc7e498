//! Backend `native`: `NativeTransport` (`cd://` Unix socket) to a real `commsd` child process
//! (the product binary, single-threaded runtime). The `native-relay` rows (three peered
//! daemons) are in [`crate::native_relay`].

use comms_core::Connect;
use std::sync::Arc;

use comms_core::Transport;
use comms_native::transport::NativeTransport;
use comms_test_support::{Commsd, CommsdSpec};
use futures_util::future::BoxFuture;

use crate::endpoint_driver::{self, Connector};
use crate::report::{Mode, Progress, Row};
use crate::scale::{Scale, PAYLOADS};

/// Node name of the bench daemon.
const NODE: &str = "bench";

/// Start `commsd --name bench --no-tcp --no-udp --unix SOCK` (SOCK in its own temp dir) and
/// wait until it accepts; killed on drop.
pub async fn start_commsd() -> anyhow::Result<Commsd> {
    Ok(CommsdSpec::find()?
        .name(NODE)
        .unix_only_in_dir()
        .start()
        .await?)
}

/// Native transports: the sending side on `send`, the receiving side on `receive` (the same
/// daemon, or the far end of a relay).
pub struct Native {
    pub send: String,
    pub receive: String,
}

async fn native(url: &str) -> anyhow::Result<Arc<dyn Transport>> {
    Ok(Arc::new(NativeTransport::connect_url(url).await?))
}

impl Connector for Native {
    fn connect(&self) -> BoxFuture<'_, anyhow::Result<Arc<dyn Transport>>> {
        Box::pin(async { native(&self.send).await })
    }

    fn connect_receiver(&self) -> BoxFuture<'_, anyhow::Result<Arc<dyn Transport>>> {
        Box::pin(async { native(&self.receive).await })
    }
}

/// The native rows (one daemon for all of them).
pub async fn run(scale: &Scale, progress: &Progress) -> Vec<Row> {
    progress.step("native: start commsd");
    let daemon = match start_commsd().await {
        Ok(d) => d,
        Err(e) => return skip_all("native", &format!("{e:#}")),
    };
    if let Some(pid) = daemon.pid() {
        eprintln!("           commsd pid {pid}");
    }
    let Some(socket) = daemon.socket() else {
        return skip_all("native", "commsd announced no unix socket");
    };
    let url = format!("cd://{}?node={NODE}", socket.display());
    let c = Native {
        send: url.clone(),
        receive: url,
    };
    endpoint_driver::rows("native", &c, scale, progress).await
}

/// The rows of a reference client (`raw-lapin`, `raw-rdkafka`): every payload in both modes,
/// one-way then request/reply.
pub async fn mode_rows(
    backend: &str,
    progress: &Progress,
    oneway: impl AsyncFn(usize, Mode) -> anyhow::Result<crate::report::OneWay>,
    rtt: impl AsyncFn(usize, Mode) -> anyhow::Result<crate::latency::Latencies>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for payload in PAYLOADS {
        for mode in [Mode::AtMostOnce, Mode::AtLeastOnce] {
            progress.step(&format!("{backend} {payload} B {}", mode.label()));
            let mut row = Row::new(backend, payload, mode);
            row.record_oneway(oneway(payload, mode).await);
            row.record_rtt(rtt(payload, mode).await);
            progress.done(&row);
            rows.push(row);
        }
    }
    rows
}

/// Every (payload, mode) row of `backend`, skipped with `reason`.
pub fn skip_all(backend: &str, reason: &str) -> Vec<Row> {
    PAYLOADS
        .iter()
        .flat_map(|&p| {
            [Mode::AtMostOnce, Mode::AtLeastOnce].map(|m| Row::skipped(backend, p, m, reason))
        })
        .collect()
}
