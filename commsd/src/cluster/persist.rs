//! The persisted cluster state, as the stock daemon keeps it in its data path
//! (`PeerConfig::state_dir`; nothing is written when it is not set):
//! - `neighbors.txt`: the neighbour set, one `ip:port` a line, rewritten whenever it
//!   changes (learned, forgotten) and read back at start (merged with `neighbors`), so a
//!   restarted daemon finds the neighbours it had learned;
//! - `cluster-status.txt`: the last cluster status told to local services, one line
//!   `CLUSTER_UP|CLUSTER_DOWN CLUSTER_COMPLETE|CLUSTER_INCOMPLETE neighbors_count=N`.
//!
//! Files are written to a temporary name and renamed (never half written); errors are logged,
//! never fatal: the cluster works without its files.

use std::net::SocketAddr;
use std::path::Path;

use crate::router::Router;

/// File of the neighbour set, in the state directory.
pub(crate) const NEIGHBORS_FILE: &str = "neighbors.txt";
/// File of the cluster status, in the state directory.
pub(crate) const STATUS_FILE: &str = "cluster-status.txt";

/// The neighbours saved in `dir` (empty when absent or unreadable); entries separated by
/// new lines or commas, `#` comments and unparseable entries skipped.
pub(crate) fn load_neighbors(dir: &Path) -> Vec<SocketAddr> {
    let Ok(text) = std::fs::read_to_string(dir.join(NEIGHBORS_FILE)) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

fn write_atomic(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    let r = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, text))
        .and_then(|()| std::fs::rename(&tmp, dir.join(name)));
    if let Err(e) = r {
        tracing::warn!(dir = %dir.display(), file = name, error = %e, "cluster state not saved");
    }
}

impl Router {
    /// Rewrites `neighbors.txt` (when a state directory is configured).
    pub(crate) fn save_neighbors(&self) {
        let Some(dir) = self.cluster.state_dir.as_deref() else {
            return;
        };
        let text: String = self
            .cluster
            .neighbors
            .iter()
            .map(|a| format!("{a}\n"))
            .collect();
        write_atomic(dir, NEIGHBORS_FILE, &text);
    }

    /// Rewrites `cluster-status.txt` (when a state directory is configured).
    pub(crate) fn save_status(&self, up: bool, complete: bool, total: usize) {
        let Some(dir) = self.cluster.state_dir.as_deref() else {
            return;
        };
        let text = format!(
            "{} {} neighbors_count={total}\n",
            if up { "CLUSTER_UP" } else { "CLUSTER_DOWN" },
            if complete {
                "CLUSTER_COMPLETE"
            } else {
                "CLUSTER_INCOMPLETE"
            }
        );
        write_atomic(dir, STATUS_FILE, &text);
    }
}
