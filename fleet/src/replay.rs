//! [`ReplayGuard`]: the ids of accepted signed messages, remembered for twice [`MAX_SKEW`] so
//! that a captured message cannot be played again (see [`crate::auth`]); bounded by
//! [`REPLAY_CAPACITY`], and kept in an append-only file by a persistent guard so that a
//! restart does not reopen the window.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use comms_core::Message;

use crate::auth::{now_ms, AuthError, FleetKey, MAX_SKEW, REPLAY_CAPACITY};

/// Remembers accepted message ids for [`MAX_SKEW`] so that a captured signed message cannot
/// be played again. Bounded by [`REPLAY_CAPACITY`]. With a file ([`ReplayGuard::persistent`])
/// it also survives a restart of its process.
#[derive(Debug)]
pub struct ReplayGuard {
    pub(crate) seen: HashMap<String, u64>,
    pub(crate) order: VecDeque<(u64, String)>,
    capacity: usize,
    file: Option<GuardFile>,
}

/// The append-only file of a persistent guard: one `<accepted unix ms> <id>` line per id.
#[derive(Debug)]
struct GuardFile {
    path: PathBuf,
    out: std::fs::File,
    /// Lines appended since the file was last rewritten with the live ids only.
    appended: usize,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::with_capacity(REPLAY_CAPACITY)
    }
}

/// How long an accepted id is remembered: past it the message is stale anyway.
fn horizon(now: u64) -> u64 {
    now.saturating_sub(2 * MAX_SKEW.as_millis() as u64)
}

impl ReplayGuard {
    /// A guard that remembers at most `capacity` ids, in memory only.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            file: None,
        }
    }

    /// A guard kept in `path` as well: the ids accepted within the last 2 × [`MAX_SKEW`] (at
    /// most `capacity`, the newest) are read back, the file is rewritten with them only, and
    /// every id accepted from now on is appended (and synced) before it is admitted. Lines
    /// that do not parse are skipped. The directory is created if missing.
    pub fn persistent(path: &Path, capacity: usize) -> Result<Self, AuthError> {
        let err = |reason: String| AuthError::Guard {
            path: path.display().to_string(),
            reason,
        };
        let mut guard = Self::with_capacity(capacity);
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err(e.to_string())),
        };
        let oldest = horizon(now_ms());
        let mut entries: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let (t, id) = l.split_once(' ')?;
                let t: u64 = t.parse().ok()?;
                (t >= oldest && !id.is_empty() && !id.contains(' ')).then(|| (t, id.to_owned()))
            })
            .collect();
        entries.sort();
        let skip = entries.len().saturating_sub(guard.capacity);
        for (t, id) in entries.into_iter().skip(skip) {
            if guard.seen.insert(id.clone(), t).is_none() {
                guard.order.push_back((t, id));
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        guard.file = Some(guard.rewrite(path).map_err(|e| err(e.to_string()))?);
        Ok(guard)
    }

    /// Writes the live ids to `path` (atomically) and opens it for appending.
    fn rewrite(&self, path: &Path) -> std::io::Result<GuardFile> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let tmp = path.with_file_name(name);
        let mut text = String::new();
        for (t, id) in &self.order {
            text.push_str(&format!("{t} {id}\n"));
        }
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        let out = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok(GuardFile {
            path: path.to_path_buf(),
            out,
            appended: 0,
        })
    }

    /// Verifies `msg` with `key` for `me`, then records its id; a second time is `Replayed`
    /// (also after a restart, for a persistent guard).
    pub fn check(&mut self, key: &FleetKey, msg: &Message, me: &str) -> Result<(), AuthError> {
        let now = now_ms();
        key.verify(msg, me, now)?;
        let horizon = horizon(now);
        while let Some((t, _)) = self.order.front() {
            if *t >= horizon && self.order.len() < self.capacity {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.seen.remove(&id);
            }
        }
        let id = msg.id().to_string();
        if self.seen.contains_key(&id) {
            return Err(AuthError::Replayed);
        }
        self.record(now, &id)?;
        self.seen.insert(id.clone(), now);
        self.order.push_back((now, id));
        Ok(())
    }

    /// Appends `id` to the file, if any; rewrites the file when it grew past the capacity.
    fn record(&mut self, now: u64, id: &str) -> Result<(), AuthError> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        if id.contains(['\n', ' ']) {
            return Err(AuthError::Malformed);
        }
        let path = file.path.clone();
        let err = |e: std::io::Error| AuthError::Guard {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        file.out
            .write_all(format!("{now} {id}\n").as_bytes())
            .and_then(|()| file.out.sync_data())
            .map_err(err)?;
        file.appended += 1;
        if file.appended > self.capacity {
            // The ids recorded above stay in the file until this rewrite has replaced it.
            let mut live = self.order.clone();
            live.push_back((now, id.to_owned()));
            let snapshot = Self {
                seen: HashMap::new(),
                order: live,
                capacity: self.capacity,
                file: None,
            };
            self.file = Some(snapshot.rewrite(&path).map_err(err)?);
        }
        Ok(())
    }
}
