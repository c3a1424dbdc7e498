//! Is a service up? A TCP connect to the host:port of a URL, with a short timeout; the error
//! text becomes the skip reason of its rows.

use std::time::Duration;

/// `host:port` of `scheme://[user@]host:port/...`.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_owned()
}

/// Ok when something accepts TCP connections at `url`'s host:port within a second.
pub async fn tcp(url: &str) -> Result<(), String> {
    let addr = host_port(url);
    match tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(addr.as_str()),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("nothing answers at {addr}: {e}")),
        Err(_) => Err(format!("nothing answers at {addr} within 1 s")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_port_of_urls() {
        assert_eq!(
            super::host_port("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "127.0.0.1:5672"
        );
        assert_eq!(super::host_port("nats://127.0.0.1:4222"), "127.0.0.1:4222");
        assert_eq!(super::host_port("127.0.0.1:9092"), "127.0.0.1:9092");
    }
}
