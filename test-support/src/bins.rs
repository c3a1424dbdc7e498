//! Where the workspace's binaries are, for tests and the bench that run them as processes.
//!
//! One rule for every caller:
//! - `$COMMSD_BIN` (for `commsd` only) wins when set.
//! - Otherwise the binary is in the profile folder (`<target>/<profile>/`) of the running
//!   executable: the folder of a binary (`comms-bench`), or the folder above a test's
//!   `deps/`. A test crate can use `env!("CARGO_BIN_EXE_x")` only for its own package's
//!   binaries, so when the running executable is a test (it lives in `deps/`), cargo is asked
//!   once per binary and process to bring it up to date (same target dir and profile; a no-op
//!   after a workspace build), so a single-package run never tests a stale binary.
//! - A caller that has the path (`env!("CARGO_BIN_EXE_commsd")` in the package that owns
//!   `commsd`) passes it to [`crate::CommsdSpec::new`] and needs none of this.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::{Error, Result};

/// The package that builds `commsd`.
pub const COMMSD_PACKAGE: &str = "commsd";

static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The `commsd` executable: `$COMMSD_BIN`, else [`binary`]`(COMMSD_PACKAGE, "commsd")`.
pub fn commsd_binary() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("COMMSD_BIN") {
        Some(p) => Ok(PathBuf::from(p)),
        None => binary(COMMSD_PACKAGE, "commsd").map_err(|e| e.to_string()),
    })
    .clone()
    .map_err(|e| Error::Failed(format!("{e} (or set COMMSD_BIN)")))
}

/// The path of binary `name` of package `package` (see the module docs; built if the running
/// executable is a test).
pub fn binary(package: &str, name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(Error::io("current_exe"))?;
    let here = exe
        .parent()
        .ok_or_else(|| Error::Failed(format!("{} has no folder", exe.display())))?;
    let is_test = here.file_name().is_some_and(|n| n == "deps");
    let profile_dir = if is_test {
        here.parent()
            .ok_or_else(|| Error::Failed("cannot find the target directory".into()))?
    } else {
        here
    };
    if is_test {
        build(package, name, profile_dir)?;
    }
    let path = profile_dir.join(name);
    if !path.exists() {
        return Err(Error::Failed(format!(
            "{name} not found beside {} (build it: cargo build -p {package} --bin {name})",
            exe.display()
        )));
    }
    Ok(path)
}

/// `cargo build -p PACKAGE --bin NAME` into `profile_dir`, once per process.
fn build(package: &str, name: &str, profile_dir: &Path) -> Result<()> {
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if built.iter().any(|b| b == name) {
        return Ok(());
    }
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| Error::Failed("cannot find the target directory".into()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", name])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(Error::io("running cargo build"))?;
    if !status.success() {
        return Err(Error::Failed(format!(
            "cargo build -p {package} --bin {name} failed: {status}"
        )));
    }
    built.push(name.to_owned());
    Ok(())
}
