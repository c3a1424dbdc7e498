//! The server's dispatch and result history: an embedded SQLite database
//! (`<state_dir>/server.sqlite3`, rusqlite with SQLite bundled: no system library needed).
//!
//! - `dispatches`: one row per dispatch (its [`DispatchRecord`] without results as JSON, the
//!   tasks sent and their agents, whether it is done, its deadline);
//! - `results`: one row per target (the [`TargetResult`] as JSON, full output tails included).
//!
//! A restarted server reads the unfinished dispatches back, so the `RESULT`s their agents
//! send after the restart are accepted and kept, and `RESULTS` lists the history of every run
//! of the server. Retention: the newest `retain_dispatches` dispatches no older than
//! `retain_days` days (defaults 10,000 and 30), applied at start and after each dispatch.
//!
//! The schema is versioned with `PRAGMA user_version`: [`MIGRATIONS`] are applied in order,
//! each in one transaction; a database newer than this binary is refused.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use comms_fleet::control::{DispatchRecord, TargetResult};
use rusqlite::{params, Connection, OptionalExtension, Statement};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The state directory could not be made.
    #[error("state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database was written by a newer server.
    #[error("database {path} has schema version {found}; this server knows up to {known}")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest this binary knows.
        known: i64,
    },
    /// A stored row does not decode.
    #[error("database {path}: bad row: {source}")]
    Json {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Schema migrations; `MIGRATIONS[i]` takes `user_version` from `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: dispatches and results.
    "CREATE TABLE dispatches (
        id TEXT PRIMARY KEY,
        started_unix INTEGER NOT NULL,
        deadline_unix INTEGER NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,
        record TEXT NOT NULL,
        tasks TEXT NOT NULL DEFAULT '[]'
     );
     CREATE INDEX dispatches_started ON dispatches(started_unix);
     CREATE TABLE results (
        dispatch TEXT NOT NULL REFERENCES dispatches(id) ON DELETE CASCADE,
        agent TEXT NOT NULL,
        result TEXT NOT NULL,
        PRIMARY KEY (dispatch, agent)
     );",
];

/// A dispatch that was running when the server stopped: what a restarted server needs to
/// accept its results.
#[derive(Debug, Clone)]
pub struct Unfinished {
    /// The record (without results).
    pub record: DispatchRecord,
    /// `(task, agent address)` of every target the task was sent to.
    pub tasks: Vec<(String, String)>,
    /// Unix seconds after which a target without result counts as timed out.
    pub deadline_unix: u64,
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    retain_dispatches: usize,
    retain_secs: u64,
}

impl Store {
    /// Opens (or creates) `<dir>/server.sqlite3` and migrates it.
    pub fn open(
        dir: &Path,
        retain_dispatches: usize,
        retain_days: u64,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("server.sqlite3");
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(sql)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
        .map_err(sql)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                path,
                found: version,
                known,
            });
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction().map_err(sql)?;
            tx.execute_batch(step).map_err(sql)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        let store = Store {
            path,
            conn: Mutex::new(conn),
            retain_dispatches: retain_dispatches.max(1),
            retain_secs: retain_days.saturating_mul(86_400),
        };
        store.prune(now_unix())?;
        Ok(store)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn json(&self, source: serde_json::Error) -> StoreError {
        StoreError::Json {
            path: self.path.clone(),
            source,
        }
    }

    /// Records a new dispatch (its results are added by [`Store::add_result`]).
    pub fn begin(&self, record: &DispatchRecord, deadline_unix: u64) -> Result<(), StoreError> {
        let mut bare = record.clone();
        bare.results.clear();
        let json = serde_json::to_string(&bare).map_err(|e| self.json(e))?;
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO dispatches (id, started_unix, deadline_unix, done, record)
                 VALUES (?1, ?2, ?3, 0, ?4)",
                params![
                    record.dispatch,
                    record.started_unix as i64,
                    deadline_unix as i64,
                    json
                ],
            )
            .map_err(|e| self.sql(e))?;
        self.prune(now_unix())
    }

    /// Records the tasks sent for `dispatch` (`(task, agent)`).
    pub fn set_tasks(&self, dispatch: &str, tasks: &[(String, String)]) -> Result<(), StoreError> {
        let json = serde_json::to_string(tasks).map_err(|e| self.json(e))?;
        self.conn()
            .execute(
                "UPDATE dispatches SET tasks = ?2 WHERE id = ?1",
                params![dispatch, json],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Adds (or replaces) one target's result.
    pub fn add_result(&self, result: &TargetResult) -> Result<(), StoreError> {
        let json = serde_json::to_string(result).map_err(|e| self.json(e))?;
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO results (dispatch, agent, result) VALUES (?1, ?2, ?3)",
                params![result.dispatch, result.agent, json],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Whether `dispatch` already has a result for `agent`.
    pub fn has_result(&self, dispatch: &str, agent: &str) -> Result<bool, StoreError> {
        self.conn()
            .query_row(
                "SELECT 1 FROM results WHERE dispatch = ?1 AND agent = ?2",
                params![dispatch, agent],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.sql(e))
    }

    /// Marks `dispatch` finished.
    pub fn finish(&self, dispatch: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE dispatches SET done = 1 WHERE id = ?1",
                params![dispatch],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// The newest `limit` dispatches, oldest first, with their results.
    pub fn recent(&self, limit: usize) -> Result<Vec<DispatchRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, record, done FROM
                   (SELECT id, record, done, started_unix, rowid AS r FROM dispatches
                    ORDER BY started_unix DESC, r DESC LIMIT ?1)
                 ORDER BY started_unix, r",
            )
            .map_err(|e| self.sql(e))?;
        let rows: Vec<(String, String, bool)> = stmt
            .query_map(params![limit.min(i64::MAX as usize) as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .and_then(Iterator::collect)
            .map_err(|e| self.sql(e))?;
        let mut results = self.results_query(&conn)?;
        rows.into_iter()
            .map(|(id, json, done)| self.record(&mut results, &id, &json, done))
            .collect()
    }

    /// One dispatch with its results, if the history has it.
    pub fn recent_one(&self, dispatch: &str) -> Result<Option<DispatchRecord>, StoreError> {
        let conn = self.conn();
        let row: Option<(String, bool)> = conn
            .query_row(
                "SELECT record, done FROM dispatches WHERE id = ?1",
                params![dispatch],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let Some((json, done)) = row else {
            return Ok(None);
        };
        let mut results = self.results_query(&conn)?;
        self.record(&mut results, dispatch, &json, done).map(Some)
    }

    /// The query of a dispatch's results, in the order they came ([`Self::record`]).
    fn results_query<'c>(&self, conn: &'c Connection) -> Result<Statement<'c>, StoreError> {
        conn.prepare("SELECT result FROM results WHERE dispatch = ?1 ORDER BY rowid")
            .map_err(|e| self.sql(e))
    }

    /// Dispatch `id` from its stored `json` and `done` flag, with its results read by
    /// `results` ([`Self::results_query`]).
    fn record(
        &self,
        results: &mut Statement<'_>,
        id: &str,
        json: &str,
        done: bool,
    ) -> Result<DispatchRecord, StoreError> {
        let mut record: DispatchRecord = serde_json::from_str(json).map_err(|e| self.json(e))?;
        record.done = done;
        let texts: Vec<String> = results
            .query_map(params![id], |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(|e| self.sql(e))?;
        for t in texts {
            record
                .results
                .push(serde_json::from_str(&t).map_err(|e| self.json(e))?);
        }
        Ok(record)
    }

    /// Dispatches not finished (the server stopped while they ran).
    pub fn unfinished(&self) -> Result<Vec<Unfinished>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT record, tasks, deadline_unix FROM dispatches WHERE done = 0")
            .map_err(|e| self.sql(e))?;
        let rows: Vec<(String, String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(Iterator::collect)
            .map_err(|e| self.sql(e))?;
        rows.into_iter()
            .map(|(record, tasks, deadline)| {
                Ok(Unfinished {
                    record: serde_json::from_str(&record).map_err(|e| self.json(e))?,
                    tasks: serde_json::from_str(&tasks).map_err(|e| self.json(e))?,
                    deadline_unix: deadline.max(0) as u64,
                })
            })
            .collect()
    }

    /// Drops dispatches past the retention (count or age), with their results.
    pub fn prune(&self, now_unix: u64) -> Result<(), StoreError> {
        let oldest = now_unix.saturating_sub(self.retain_secs) as i64;
        self.conn()
            .execute_batch(&format!(
                "DELETE FROM dispatches WHERE started_unix < {oldest} OR id NOT IN
                   (SELECT id FROM dispatches ORDER BY started_unix DESC, rowid DESC LIMIT {});",
                self.retain_dispatches
            ))
            .map_err(|e| self.sql(e))
    }
}

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use comms_fleet::control::Outcome;

    fn record(id: &str, started: u64) -> DispatchRecord {
        DispatchRecord {
            dispatch: id.into(),
            argv: vec!["true".into()],
            started_unix: started,
            done: false,
            outcomes: Default::default(),
            results: Vec::new(),
            requester: None,
            requested_by: Some("alice@host".into()),
        }
    }

    #[test]
    fn history_survives_reopening_and_is_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_unix();
        {
            let store = Store::open(dir.path(), 3, 30).unwrap();
            for i in 0..5 {
                store
                    .begin(&record(&format!("d{i}"), now + i), now + 60)
                    .unwrap();
            }
            store
                .set_tasks("d4", &[("d4_0".into(), "n:agent_a".into())])
                .unwrap();
            store
                .add_result(&TargetResult {
                    dispatch: "d4".into(),
                    agent: "n:agent_a".into(),
                    outcome: Outcome::Ok,
                    result: None,
                })
                .unwrap();
            store.finish("d3").unwrap();
        }
        let store = Store::open(dir.path(), 3, 30).unwrap();
        let recent = store.recent(100).unwrap();
        let ids: Vec<&str> = recent.iter().map(|r| r.dispatch.as_str()).collect();
        assert_eq!(ids, ["d2", "d3", "d4"]);
        assert!(recent[1].done);
        assert_eq!(recent[2].results.len(), 1);
        assert_eq!(recent[2].requested_by.as_deref(), Some("alice@host"));
        let open = store.unfinished().unwrap();
        assert_eq!(open.len(), 2);
        assert!(store.has_result("d4", "n:agent_a").unwrap());
        // Age: everything older than 30 days goes.
        store.prune(now + 31 * 86_400 + 10).unwrap();
        assert!(store.recent(100).unwrap().is_empty());
        let version: i64 = store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}
