//! Paths of the workspace's binaries, for tests that run them as processes.
//!
//! Tests in this crate cannot use `CARGO_BIN_EXE_*` for other packages' binaries. The binaries
//! live next to the test executable's `deps/` folder. Each test process asks cargo once per
//! binary to bring it up to date (a no-op after `nextest run --workspace`, which built them), so
//! a single-package run never tests a stale binary.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The path of binary `name` of package `package`, built if missing.
pub fn binary(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let path = dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", package, "--bin", name]);
        if dir.file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build -p {package} --bin {name} failed"
        );
    }
    assert!(
        path.exists(),
        "{} is missing after building it",
        path.display()
    );
    path
}
