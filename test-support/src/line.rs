//! A raw `cd:` line client, exactly as a stock Communicator service (or a probe) talks: plain
//! lines, no comms parameters. Every read is bounded by the client's wait; a timeout is
//! [`std::io::ErrorKind::TimedOut`], a closed connection [`std::io::ErrorKind::UnexpectedEof`].

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// The default bound on one expected line.
pub const WAIT: Duration = Duration::from_secs(10);

type Reader = BufReader<Box<dyn AsyncRead + Unpin + Send>>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// A line client on one connection.
pub struct LineClient {
    r: Reader,
    w: Writer,
    wait: Duration,
}

impl std::fmt::Debug for LineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LineClient {{ wait: {:?}, .. }}", self.wait)
    }
}

impl LineClient {
    /// Connects to a Unix socket.
    pub async fn unix(path: impl AsRef<Path>) -> io::Result<Self> {
        let (r, w) = tokio::net::UnixStream::connect(path).await?.into_split();
        Ok(Self::from_halves(r, w))
    }

    /// Connects over TCP.
    pub async fn tcp(addr: impl tokio::net::ToSocketAddrs) -> io::Result<Self> {
        let (r, w) = tokio::net::TcpStream::connect(addr).await?.into_split();
        Ok(Self::from_halves(r, w))
    }

    /// TCP connect and TLS handshake with `config`, the server named `localhost` (as the
    /// client sees it: with TLS 1.3 a refused client certificate only shows on the first read).
    pub async fn tls(
        addr: std::net::SocketAddr,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> io::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls_pki_types::ServerName::try_from("localhost")
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Ok(Self::from_stream(stream))
    }

    /// A client on any stream (a TLS stream, a duplex pipe).
    pub fn from_stream<S>(stream: S) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(stream);
        Self::from_halves(r, w)
    }

    /// A client on a read half and a write half.
    pub fn from_halves(
        r: impl AsyncRead + Unpin + Send + 'static,
        w: impl AsyncWrite + Unpin + Send + 'static,
    ) -> Self {
        Self {
            r: BufReader::new(Box::new(r)),
            w: Box::new(w),
            wait: WAIT,
        }
    }

    /// Another bound on each expected line (default [`WAIT`]).
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Sends `line` and its `\n`.
    pub async fn send(&mut self, line: &str) -> io::Result<()> {
        self.w.write_all(line.as_bytes()).await?;
        self.w.write_all(b"\n").await?;
        self.w.flush().await
    }

    /// Sends `bytes` as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.w.write_all(bytes).await?;
        self.w.flush().await
    }

    /// The next line, without its `\n`, within the client's wait.
    pub async fn line(&mut self) -> io::Result<String> {
        self.line_within(self.wait).await
    }

    /// The next line, without its `\n`, within `within`.
    pub async fn line_within(&mut self, within: Duration) -> io::Result<String> {
        let mut s = String::new();
        let n = tokio::time::timeout(within, self.r.read_line(&mut s))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no line in time"))??;
        match s.strip_suffix('\n') {
            Some(line) => Ok(line.to_owned()),
            None if n == 0 => Err(io::ErrorKind::UnexpectedEof.into()),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed after a partial line {s:?}"),
            )),
        }
    }

    /// Skips lines until `matches` accepts one; returns it.
    pub async fn next_matching(&mut self, matches: impl Fn(&str) -> bool) -> io::Result<String> {
        loop {
            let l = self.line().await?;
            if matches(&l) {
                return Ok(l);
            }
        }
    }

    /// Skips lines until one starts with `prefix`; returns it.
    pub async fn skip_to(&mut self, prefix: &str) -> io::Result<String> {
        self.next_matching(|l| l.starts_with(prefix)).await
    }

    /// Sends `line`, then skips to the answer starting with `prefix`.
    pub async fn ask(&mut self, line: &str, prefix: &str) -> io::Result<String> {
        self.send(line).await?;
        self.skip_to(prefix).await
    }

    /// `REGISTER service=SERVICE;version=1`, as a stock service does; the next two lines
    /// (the daemon's HELP and READY).
    pub async fn register(&mut self, service: &str) -> io::Result<(String, String)> {
        self.send(&format!("REGISTER service={service};version=1"))
            .await?;
        Ok((self.line().await?, self.line().await?))
    }

    /// `None` when nothing arrives within `within`; else what did (`""` at EOF).
    pub async fn silent(&mut self, within: Duration) -> Option<String> {
        let mut s = String::new();
        match tokio::time::timeout(within, self.r.read_line(&mut s)).await {
            Err(_) => None,
            Ok(Ok(_)) => Some(s),
            Ok(Err(e)) => Some(format!("read error: {e}")),
        }
    }

    /// Reads until the peer closes the connection; the lines before (without `\n`). A read
    /// error counts as the end; no end within the wait is [`io::ErrorKind::TimedOut`].
    pub async fn eof(&mut self) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            match self.line().await {
                Ok(l) => lines.push(l),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(e),
                Err(_) => return Ok(lines),
            }
        }
    }
}

/// The value of parameter `name` in a line `COMMAND a=1;b=x,y` (`""` when absent).
pub fn param<'a>(line: &'a str, name: &str) -> &'a str {
    // A `<server:service ` stamp is not a parameter.
    let line = match line.strip_prefix('<') {
        Some(stamped) => stamped.split_once(' ').map_or("", |(_, rest)| rest),
        None => line,
    };
    line.split_once(' ')
        .map_or("", |(_, p)| p)
        .split(';')
        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_default()
}

/// The comma list of a parameter, without empty items, sorted.
pub fn list(line: &str, name: &str) -> Vec<String> {
    let mut v: Vec<String> = param(line, name)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_lists() {
        let l = "CLUSTER_MAP nodes=b,a;links=a-b,b-c;x=";
        assert_eq!(param(l, "links"), "a-b,b-c");
        assert_eq!(param(l, "x"), "");
        assert_eq!(param(l, "missing"), "");
        assert_eq!(list(l, "nodes"), ["a", "b"]);
        assert!(list(l, "x").is_empty());
        assert_eq!(
            param("<n1:communicatord ACCEPT server_name=n1", "server_name"),
            "n1"
        );
    }

    #[tokio::test]
    async fn lines_round_trip_with_timeouts_and_eof() {
        let (a, b) = tokio::io::duplex(1024);
        let mut a = LineClient::from_stream(a).with_wait(Duration::from_millis(200));
        let mut b = LineClient::from_stream(b);
        a.send("HELLO x=1").await.expect("send");
        b.send_raw(b"ONE\nTWO\n").await.expect("send");
        assert_eq!(b.line().await.expect("line"), "HELLO x=1");
        assert_eq!(a.skip_to("TW").await.expect("skip"), "TWO");
        assert_eq!(
            a.line().await.expect_err("nothing").kind(),
            io::ErrorKind::TimedOut
        );
        assert_eq!(a.silent(Duration::from_millis(20)).await, None);
        b.send("LAST").await.expect("send");
        drop(b);
        assert_eq!(a.eof().await.expect("eof"), ["LAST"]);
    }
}
