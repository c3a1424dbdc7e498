//! The attempt counts of messages whose handler failed and that are being retried.
//!
//! Kept in memory, and — when the transport has a local state directory
//! ([`Transport::state_dir`](crate::Transport::state_dir)) — in one small file per message under
//! `<state>/attempts/<node>_<service>/`, written on each failed attempt and removed once the
//! message is settled. A receiver restarted on the same host reads them back at start, so a
//! message redelivered after the restart goes on from its count instead of starting over:
//! a message is never retried for ever, however often its receiver restarts. Only failures
//! touch the disk; a message handled at its first attempt costs one map check.
//!
//! A count left behind (its message was handled by another instance meanwhile) is removed when
//! older than [`STALE_AFTER`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::dead_letter::file::{create_private_dir, file_safe, write_atomically};
use crate::message::MessageId;

/// Counts older than this are dropped when an endpoint starts.
pub const STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Serialize, Deserialize)]
struct Stored {
    id: MessageId,
    attempts: u32,
}

pub(crate) struct Attempts {
    dir: Option<PathBuf>,
    counts: Mutex<HashMap<MessageId, u32>>,
}

impl Attempts {
    /// The counts of `address`, read back from `state` when there is one.
    pub(crate) fn open(state: Option<&Path>, address: &Address) -> Self {
        let dir = state.map(|s| {
            crate::state::attempts_dir(s).join(file_safe(&format!(
                "{}_{}",
                address.node(),
                address.service()
            )))
        });
        let counts = dir.as_deref().map(load).unwrap_or_default();
        if !counts.is_empty() {
            tracing::info!(%address, messages = counts.len(), "attempt counts read back from the last run");
        }
        Self {
            dir,
            counts: Mutex::new(counts),
        }
    }

    /// The file of `id`'s count in `dir`.
    fn file(dir: &Path, id: &MessageId) -> PathBuf {
        dir.join(format!("{}.json", file_safe(id.as_str())))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MessageId, u32>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one more failed attempt of `id`; the count so far.
    pub(crate) async fn failed(&self, id: &MessageId) -> u32 {
        let n = {
            let mut counts = self.lock();
            let n = counts.entry(id.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if let Some(dir) = self.dir.clone() {
            let (id, path) = (id.clone(), Self::file(&dir, id));
            let written = tokio::task::spawn_blocking(move || {
                let bytes = serde_json::to_vec(&Stored { id, attempts: n })?;
                create_private_dir(&dir)?;
                // Not fsync'd: a count must outlive the process, not the host (a host
                // crash loses at most the last counts; each failure stays cheap).
                write_atomically(&path, &bytes, false)
            })
            .await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(
                    "could not keep an attempt count on disk; a restart would count this message from 0"
                );
            }
        }
        n
    }

    /// Forget `id` (settled).
    pub(crate) fn clear(&self, id: &MessageId) {
        {
            let mut counts = self.lock();
            if counts.is_empty() || counts.remove(id).is_none() {
                return;
            }
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_file(Self::file(dir, id));
        }
    }
}

fn load(dir: &Path) -> HashMap<MessageId, u32> {
    let mut counts = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return counts;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        let stored = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Stored>(&b).ok());
        match stored {
            Some(s) if !stale => {
                counts.insert(s.id, s.attempts);
            }
            _ => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_outlive_the_endpoint() {
        let state = std::env::temp_dir().join(format!("comms-attempts-{}", MessageId::new()));
        let me = Address::new("n1", "svc").unwrap();
        let (a, b) = (MessageId::new(), MessageId::new());
        let first = Attempts::open(Some(&state), &me);
        assert_eq!(first.failed(&a).await, 1);
        assert_eq!(first.failed(&a).await, 2);
        assert_eq!(first.failed(&b).await, 1);
        first.clear(&b);
        drop(first);
        let second = Attempts::open(Some(&state), &me);
        assert_eq!(
            second.failed(&a).await,
            3,
            "counting goes on after a restart"
        );
        assert_eq!(second.failed(&b).await, 1, "a settled message starts over");
        let other = Attempts::open(Some(&state), &Address::new("n1", "other").unwrap());
        assert_eq!(other.failed(&a).await, 1, "counts are per endpoint");
        let memory = Attempts::open(None, &me);
        assert_eq!(memory.failed(&a).await, 1);
        std::fs::remove_dir_all(state).unwrap();
    }
}
