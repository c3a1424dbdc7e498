//! The agent's stable id: made once, kept on disk, the same after every restart.

use std::io::Write;
use std::path::Path;

use crate::AgentError;

const FILE: &str = "agent-id";

/// Read the id from `state_dir/agent-id`, or make one and store it (atomically).
pub fn load_or_create(state_dir: &Path) -> Result<String, AgentError> {
    let path = state_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_owned();
            if id.len() >= 8 && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Ok(id);
            }
            Err(AgentError::State(format!(
                "{} does not hold a valid agent id (8-64 letters and digits); remove it to make a new one",
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(state_dir).map_err(|e| {
                AgentError::State(format!("cannot create {}: {e}", state_dir.display()))
            })?;
            let id = ulid::Ulid::generate().to_string().to_ascii_lowercase();
            let tmp = state_dir.join(format!("{FILE}.tmp"));
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(id.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)
            };
            write()
                .map_err(|e| AgentError::State(format!("cannot write {}: {e}", path.display())))?;
            Ok(id)
        }
        Err(e) => Err(AgentError::State(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a, b);
        std::fs::write(dir.path().join(FILE), "not valid!").unwrap();
        assert!(load_or_create(dir.path()).is_err());
    }
}
