//! Learning the daemon's server name when the URL has no `node=`.
//!
//! The node of a native transport is the daemon's `server_name`: the daemon stamps every
//! line with it, and addresses (`node:svc`) must use it. Guessing it from the host name goes
//! wrong as soon as the daemon runs with `--name` (or under another host name), and a
//! destination built on the guess names a server that does not exist. So, without `node=`,
//! [`NativeTransport::with_options`](super::NativeTransport::with_options) asks the daemon
//! once: a short-lived connection (never registered) sends `SERVICE_STATUS
//! service=communicatord` and reads the stamp `<NAME:communicatord ` of the answer (stock
//! daemons and commsd both answer it with their prefix). Bounded by [`PROBE_WAIT`] per step;
//! a Unix socket or loopback port that is not there fails at once. TLS (`cds:`) targets are
//! not probed (their node is configured). When the daemon cannot be asked (not started yet),
//! the host name is kept and the client logs an error at the first `READY` naming another node.

use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::client::Target;

/// Bound on each step of the probe (connect, write, read).
pub const PROBE_WAIT: Duration = Duration::from_millis(1000);
/// The probe's line.
const PROBE: &[u8] = b"SERVICE_STATUS service=communicatord\n";
/// The longest answer read.
const MAX_ANSWER: usize = 4096;

/// The daemon's server name, asked over a `cd:` URL; `None` if it cannot be learnt.
pub fn daemon_node(url: &str) -> Option<String> {
    match Target::parse(url).ok()? {
        Target::Unix(path) => {
            let mut s = std::os::unix::net::UnixStream::connect(&path).ok()?;
            s.set_read_timeout(Some(PROBE_WAIT)).ok()?;
            s.set_write_timeout(Some(PROBE_WAIT)).ok()?;
            ask(&mut s)
        }
        Target::Tcp { host, port } => {
            let addr = (host.as_str(), port).to_socket_addrs().ok()?.next()?;
            let mut s = std::net::TcpStream::connect_timeout(&addr, PROBE_WAIT).ok()?;
            s.set_read_timeout(Some(PROBE_WAIT)).ok()?;
            s.set_write_timeout(Some(PROBE_WAIT)).ok()?;
            ask(&mut s)
        }
        Target::Tls { .. } => None,
    }
}

/// Sends the probe and returns the stamp's server of the first answer.
fn ask<S: Read + Write>(s: &mut S) -> Option<String> {
    s.write_all(PROBE).ok()?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !buf.contains(&b'\n') && buf.len() < MAX_ANSWER {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|&b| b == b'\n').next()?;
    let msg = cd_wire::parse(line).ok()?;
    let name = msg.sent_from_server;
    (msg.sent_from_service == cd_wire::DAEMON_SERVICE && cd_wire::is_valid_name(&name))
        .then_some(name)
}
