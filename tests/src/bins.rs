//! Paths of the workspace's binaries, for tests that run them as processes.
//!
//! Tests in this crate cannot use `CARGO_BIN_EXE_*` for other packages' binaries. The binaries
//! live in `<target>/<profile>/`, the folder above this test executable's `deps/`. Each test
//! process asks cargo once per binary to bring it up to date (same target dir and profile; a
//! no-op after `nextest run --workspace`, which built them), so a single-package run never
//! tests a stale binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The path of binary `name` of package `package`, built if needed.
pub fn try_binary(package: &str, name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the target directory from the test executable")?
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .ok_or("cannot find the target directory")?;
    let path = profile_dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", package, "--bin", name])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .map_err(|e| format!("running cargo build: {e}"))?;
        if !status.success() {
            return Err(format!(
                "cargo build -p {package} --bin {name} failed: {status}"
            ));
        }
        built.push(name.to_owned());
    }
    if !path.exists() {
        return Err(format!("{} is missing after building it", path.display()));
    }
    Ok(path)
}

/// [`try_binary`], panicking with the reason (for test bodies).
pub fn binary(package: &str, name: &str) -> PathBuf {
    try_binary(package, name).unwrap_or_else(|e| panic!("{e}"))
}
