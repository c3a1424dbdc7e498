//! Which addresses may carry peer links, and binding the peer listener.
//!
//! Stock rule (docs/PROTOCOL.md §2.1): the plain `remote_listen` must be a private IPv4 address;
//! loopback is ignored and a public or unspecified address is fatal. commsd keeps the rule
//! and adds one switch, [`PeerConfig::allow_loopback`](crate::PeerConfig), so that a
//! whole cluster can run on one machine (127.0.0.x) for tests.

use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpListener;

use crate::error::DaemonError;

/// Why `addr` may not carry a plain peer link, if it may not.
pub(crate) fn refusal(addr: SocketAddr, allow_loopback: bool) -> Option<&'static str> {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_private() => None,
        IpAddr::V4(ip) if ip.is_loopback() => {
            (!allow_loopback).then_some("loopback peer addresses need allow_loopback_peers")
        }
        IpAddr::V6(ip) if ip.is_loopback() => {
            (!allow_loopback).then_some("loopback peer addresses need allow_loopback_peers")
        }
        _ => Some("plain peer links must use a private IPv4 address"),
    }
}

/// Binds the peer listener after checking its address.
pub(crate) async fn bind(
    addr: SocketAddr,
    allow_loopback: bool,
) -> Result<TcpListener, DaemonError> {
    if let Some(why) = refusal(addr, allow_loopback) {
        return Err(DaemonError::Config(format!("peer listener {addr}: {why}")));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind {
            what: "peer",
            addr,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap_or_else(|_| unreachable!());
        assert_eq!(refusal(a("10.0.0.1:4042"), false), None);
        assert_eq!(refusal(a("192.168.1.2:4042"), false), None);
        assert!(refusal(a("127.0.0.2:4042"), false).is_some());
        assert_eq!(refusal(a("127.0.0.2:4042"), true), None);
        assert!(refusal(a("0.0.0.0:4042"), true).is_some());
        assert!(refusal(a("8.8.8.8:4042"), true).is_some());
    }
}
