//! Opening the socket to the daemon: a Unix stream socket, plain TCP, or TCP with the TLS
//! handshake (`cds:`), within [`CONNECT_TIMEOUT`]; a TLS failure is told apart from an I/O
//! one, so the state can report it.

use super::config::CONNECT_TIMEOUT;
use super::target::Target;

/// An open connection to the daemon.
pub(super) enum Stream {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    Unix(tokio::net::UnixStream),
}

/// Why a connection attempt failed.
pub(super) enum ConnectFail {
    /// Unreachable, refused, timed out: retried quietly.
    Io(std::io::Error),
    /// The TLS handshake failed (e.g. the server certificate is not trusted): retried too,
    /// but reported in the state ([`ConnectionState::TlsFailed`](super::state::ConnectionState::TlsFailed)) and logged.
    Tls(String),
}

/// Open the socket `target` names (the TLS handshake included), within [`CONNECT_TIMEOUT`].
pub(super) async fn connect(
    target: &Target,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<Stream, ConnectFail> {
    let attempt = async {
        match target {
            Target::Unix(path) => tokio::net::UnixStream::connect(path)
                .await
                .map(Stream::Unix)
                .map_err(ConnectFail::Io),
            Target::Tcp { host, port } => tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map(Stream::Tcp)
                .map_err(ConnectFail::Io),
            Target::Tls {
                host,
                port,
                tls: files,
            } => {
                let name = files
                    .verify_name(host)
                    .map_err(|e| ConnectFail::Tls(e.to_string()))?;
                let config = match tls {
                    Some(c) => c,
                    None => files
                        .client_config()
                        .map_err(|e| ConnectFail::Tls(e.to_string()))?,
                };
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(ConnectFail::Io)?;
                let _ = tcp.set_nodelay(true);
                tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map(|s| Stream::Tls(Box::new(s)))
                    .map_err(|e| match crate::tls::tls_reason(&e) {
                        Some(reason) => ConnectFail::Tls(reason),
                        None => ConnectFail::Io(e),
                    })
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(ConnectFail::Io(std::io::ErrorKind::TimedOut.into())))
}
