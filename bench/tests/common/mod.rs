//! Shared by the bench crate's tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Build `commsd` in the target dir and profile of `exe` (one of this package's binaries;
/// cargo builds only this package's binaries for its tests), as `tests/src/bins.rs` does; its
/// path.
pub fn commsd_beside(exe: &Path) -> PathBuf {
    let profile_dir = exe.parent().expect("profile dir").to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "comms-native", "--bin", "commsd"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    assert!(cmd.status().expect("run cargo").success(), "build commsd");
    profile_dir.join("commsd")
}
