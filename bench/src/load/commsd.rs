//! The daemon under load: a `commsd` child process on a Unix socket, sized for load; killed
//! on drop.

use anyhow::Context;
use comms_test_support::{Commsd, CommsdSpec, Stderr};

/// `commsd --name load --no-tcp --no-udp --unix SOCK --max-connections N` (and
/// `--outbound-queue` left at its default), ready when it accepts; its log (warnings) on
/// stderr.
pub async fn start(max_connections: usize) -> anyhow::Result<Commsd> {
    Ok(CommsdSpec::find()?
        .name("load")
        .unix_only_in_dir()
        .arg("--max-connections")
        .arg(max_connections.to_string())
        .env("RUST_LOG", "warn")
        .stderr(Stderr::Inherit)
        .start()
        .await?)
}

/// The daemon's pid.
pub fn pid(daemon: &Commsd) -> anyhow::Result<u32> {
    daemon.pid().context("commsd has exited")
}

/// Its Unix socket.
pub fn socket(daemon: &Commsd) -> anyhow::Result<&std::path::Path> {
    daemon.socket().context("commsd announced no unix socket")
}
