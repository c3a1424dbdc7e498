//! Where the `commsd` binary is, for the bench and load binaries (both start real daemons).

use std::path::PathBuf;

use anyhow::{bail, Context as _};

/// Where `commsd` is: `$COMMSD_BIN`, else beside this executable (same target dir and
/// profile: `cargo build --release -p comms-native -p comms-bench --bins` builds both).
pub fn commsd_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("COMMSD_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let beside = exe.with_file_name("commsd");
    if beside.exists() {
        return Ok(beside);
    }
    bail!(
        "commsd not found beside {} (build it: cargo build --release -p comms-native --bin commsd, \
         or set COMMSD_BIN)",
        exe.display()
    )
}

/// Where a started `commsd` writes its log: inherited with `COMMSD_LOG` set, else nowhere.
pub fn commsd_stderr() -> std::process::Stdio {
    if std::env::var_os("COMMSD_LOG").is_some() {
        std::process::Stdio::inherit()
    } else {
        std::process::Stdio::null()
    }
}
