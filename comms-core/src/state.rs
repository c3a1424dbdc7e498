//! The local state directory: what a transport keeps on the host it runs on — the attempt
//! counts of messages being retried (every backend but memory) and, on native, the dead
//! letters ([`crate::dead_letter`]).
//!
//! [`resolve`] picks, first found: `[transport] state_dir` in the config file, the environment
//! variable `COMMS_STATE_DIR`, systemd's `STATE_DIRECTORY` (set by `StateDirectory=` in a
//! unit), `$XDG_STATE_HOME/comms`, `$HOME/.local/state/comms`. With none of them (no home
//! directory), attempt counts stay in memory and native dead letters have no place (the
//! endpoint keeps retrying to put them, logging why).

use std::path::{Path, PathBuf};

/// Environment variable naming the state directory.
pub const STATE_DIR_ENV: &str = "COMMS_STATE_DIR";

/// The state directory (see the module docs); `configured` is `[transport] state_dir`.
pub fn resolve(configured: Option<&Path>) -> Option<PathBuf> {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = configured {
        return Some(dir.to_owned());
    }
    if let Some(dir) = env(STATE_DIR_ENV) {
        return Some(dir.into());
    }
    if let Some(dirs) = env("STATE_DIRECTORY") {
        // systemd lists several with ':' when the unit names several.
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        if !first.is_empty() {
            return Some(first.into());
        }
    }
    if let Some(dir) = env("XDG_STATE_HOME") {
        return Some(PathBuf::from(dir).join("comms"));
    }
    env("HOME").map(|home| PathBuf::from(home).join(".local/state/comms"))
}

/// `<state>/dead-letters`: where the native backend keeps dead letters.
pub fn dead_letter_dir(state: &Path) -> PathBuf {
    state.join("dead-letters")
}

/// `<state>/attempts`: where endpoints keep the attempt counts of messages being retried.
pub fn attempts_dir(state: &Path) -> PathBuf {
    state.join("attempts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_wins() {
        assert_eq!(
            resolve(Some(Path::new("/srv/x"))),
            Some(PathBuf::from("/srv/x"))
        );
        assert_eq!(
            dead_letter_dir(Path::new("/s")),
            PathBuf::from("/s/dead-letters")
        );
    }
}
