//! Python tools for the interop tests (`pika`, `confluent_kafka`): a module is imported, or
//! installed with pip when missing (with `--break-system-packages` where pip insists).

use std::process::Command;

/// Ok when `python3 -c "import MODULE"` works, installing `package` first if needed.
pub fn ensure_module(module: &str, package: &str) -> anyhow::Result<()> {
    let have = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()?;
    if have.success() {
        return Ok(());
    }
    let pip = |extra: &[&str]| -> anyhow::Result<std::process::Output> {
        Ok(Command::new("python3")
            .args(["-m", "pip", "install", "--quiet"])
            .args(extra)
            .arg(package)
            .output()?)
    };
    if pip(&[])?.status.success() {
        return Ok(());
    }
    let again = pip(&["--break-system-packages"])?;
    anyhow::ensure!(
        again.status.success(),
        "pip install {package} failed: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    Ok(())
}
