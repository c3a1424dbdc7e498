//! Unique names and free ports: tests never use fixed ports or shared names.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use crate::{Error, Result};

/// `{base}_{10 random lowercase characters}` (the random part of a ULID): a namespace, topic
/// prefix or queue name no other run uses.
pub fn unique_name(base: &str) -> String {
    let u = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    format!("{base}_{}", &u[u.len() - 10..])
}

/// `{tag}{pid}`: a name unique to this test process (node names that must stay the same
/// across the daemons of one process).
pub fn process_name(tag: &str) -> String {
    format!("{tag}{}", std::process::id())
}

/// `127.0.0.1:0`: a loopback address the kernel gives a free port.
pub fn loopback_any() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// A loopback TCP port that was free a moment ago (for servers that cannot bind port 0 and
/// report the port they got).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind(loopback_any()).map_err(Error::io("bind 127.0.0.1:0"))?;
    Ok(l.local_addr().map_err(Error::io("local_addr"))?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lowercase() {
        let (a, b) = (unique_name("ns"), unique_name("ns"));
        assert_ne!(a, b);
        assert!(a.starts_with("ns_") && a.len() == 13, "{a}");
        assert_eq!(a, a.to_ascii_lowercase());
        assert!(process_name("k").ends_with(&std::process::id().to_string()));
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().expect("free port");
        assert_ne!(port, 0);
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
