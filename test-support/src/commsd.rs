//! The one `commsd` process launcher.
//!
//! A [`CommsdSpec`] is the command line (built with shorthands for the usual flags, or any
//! raw argument, a config file included), the environment and where stderr goes;
//! [`CommsdSpec::start`] spawns it with `--ready-file` in the daemon's own temp directory and
//! returns once that file exists: commsd writes it (atomically) after every listener is bound,
//! so from then on it accepts connections. The file's `commsd: listening KIND ADDR` lines are
//! the [`Listeners`] (ports asked as `:0` are known this way).
//!
//! A [`Commsd`] is SIGKILLed when dropped. [`Commsd::restart`] starts the same command again
//! on the same addresses: every `--tcp`, `--udp`, `--tls` and `--remote-listen` given as port
//! 0 is pinned to the port the first start got (peers and `cds:` clients keep dialing the
//! address they have; a Unix socket path is stable anyway). Listeners set in a config file
//! are not pinned.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::{Error, Result};

/// How long a start may take by default.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a daemon's stderr (its log) goes.
#[derive(Debug, Clone)]
pub enum Stderr {
    /// Discarded.
    Null,
    /// The test's or bench's own stderr.
    Inherit,
    /// A file, created (truncated) at each start.
    File(PathBuf),
    /// Captured line by line, ANSI colour codes removed: [`Commsd::stderr_line`],
    /// [`Commsd::expect_stderr`].
    Capture,
}

impl Stderr {
    /// [`Stderr::Inherit`] when `$COMMSD_LOG` is set, else [`Stderr::Null`] (the default).
    pub fn from_env() -> Self {
        if std::env::var_os("COMMSD_LOG").is_some() {
            Stderr::Inherit
        } else {
            Stderr::Null
        }
    }
}

/// A `commsd` command line to start (and restart).
#[derive(Debug, Clone)]
pub struct CommsdSpec {
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    unix_in_dir: bool,
    stderr: Stderr,
    timeout: Duration,
}

impl CommsdSpec {
    /// A command running the binary at `bin` (e.g. `env!("CARGO_BIN_EXE_commsd")`), no arguments yet.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            args: Vec::new(),
            env: Vec::new(),
            unix_in_dir: false,
            stderr: Stderr::from_env(),
            timeout: START_TIMEOUT,
        }
    }

    /// A command running [`crate::commsd_binary`].
    pub fn find() -> Result<Self> {
        Ok(Self::new(crate::commsd_binary()?))
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More arguments.
    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable of the process (e.g. `RUST_LOG`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Where stderr goes (default [`Stderr::from_env`]).
    pub fn stderr(mut self, stderr: Stderr) -> Self {
        self.stderr = stderr;
        self
    }

    /// How long a start may take (default [`START_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `--name NODE`.
    pub fn name(self, node: &str) -> Self {
        self.args(["--name", node])
    }

    /// `--no-tcp --no-udp --unix SOCKET`: the Unix socket only.
    pub fn unix_only(self, socket: impl AsRef<Path>) -> Self {
        self.args(["--no-tcp", "--no-udp", "--unix"])
            .arg(socket.as_ref())
    }

    /// `--unix DIR/commsd.sock`, DIR being the daemon's own temp directory.
    pub fn unix_in_dir(mut self) -> Self {
        self.unix_in_dir = true;
        self
    }

    /// `--no-tcp --no-udp --unix DIR/commsd.sock` (see [`CommsdSpec::unix_in_dir`]).
    pub fn unix_only_in_dir(self) -> Self {
        self.unix_in_dir().args(["--no-tcp", "--no-udp"])
    }

    /// `--tcp 127.0.0.1:0`.
    pub fn tcp_any(self) -> Self {
        self.args(["--tcp", "127.0.0.1:0"])
    }

    /// `--max-line N`.
    pub fn max_line(self, bytes: usize) -> Self {
        self.arg("--max-line").arg(bytes.to_string())
    }

    /// `--tls ADDR --tls-cert CERT --tls-key KEY [--tls-client-ca CA]`.
    pub fn tls(self, addr: SocketAddr, cert: &Path, key: &Path, client_ca: Option<&Path>) -> Self {
        let s = self
            .arg("--tls")
            .arg(addr.to_string())
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key);
        match client_ca {
            Some(ca) => s.arg("--tls-client-ca").arg(ca),
            None => s,
        }
    }

    /// `--allow-loopback-peers --insecure-peers --remote-listen LISTEN [--neighbors A,B]`: a
    /// plain (unauthenticated) test cluster on 127.0.0.1, said so explicitly as commsd requires.
    pub fn peers(self, listen: SocketAddr, neighbors: &[SocketAddr]) -> Self {
        let s = self
            .args([
                "--allow-loopback-peers",
                "--insecure-peers",
                "--remote-listen",
            ])
            .arg(listen.to_string());
        if neighbors.is_empty() {
            return s;
        }
        let list: Vec<String> = neighbors.iter().map(SocketAddr::to_string).collect();
        s.arg("--neighbors").arg(list.join(","))
    }

    /// `--config FILE`.
    pub fn config_file(self, file: &Path) -> Self {
        self.arg("--config").arg(file)
    }

    /// Spawn it and wait until every listener is bound (see the module docs).
    pub async fn start(&self) -> Result<Commsd> {
        let dir = tempfile::Builder::new()
            .prefix("commsd-")
            .tempdir()
            .map_err(Error::io("temp dir"))?;
        let mut d = Commsd {
            spec: self.clone(),
            dir,
            child: None,
            listeners: Listeners::default(),
            stderr: None,
        };
        d.spawn(&self.args).await?;
        Ok(d)
    }
}

/// The bound listeners a daemon announced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listeners {
    /// Unix socket path.
    pub unix: Option<PathBuf>,
    /// Loopback TCP address.
    pub tcp: Option<SocketAddr>,
    /// UDP address.
    pub udp: Option<SocketAddr>,
    /// TLS (`cds:`) address.
    pub tls: Option<SocketAddr>,
    /// Peer (cluster) address.
    pub peer: Option<SocketAddr>,
    /// The operator's HTTP endpoint (`--http`).
    pub http: Option<SocketAddr>,
}

impl Listeners {
    /// Parses `commsd: listening KIND ADDR` lines (others are ignored).
    pub fn parse(text: &str) -> Result<Self> {
        let mut l = Self::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("commsd: listening ") else {
                continue;
            };
            let (kind, addr) = rest.split_once(' ').unwrap_or((rest, ""));
            let sock = || {
                addr.parse::<SocketAddr>()
                    .map_err(|_| Error::Failed(format!("bad listener line {line:?}")))
            };
            match kind {
                "unix" => l.unix = Some(PathBuf::from(addr)),
                "tcp" => l.tcp = Some(sock()?),
                "udp" => l.udp = Some(sock()?),
                "tls" => l.tls = Some(sock()?),
                "peer" => l.peer = Some(sock()?),
                "http" => l.http = Some(sock()?),
                _ => {}
            }
        }
        Ok(l)
    }

    /// The bound address of the listener set by `flag` (`--tcp`, `--udp`, `--tls`, `--remote-listen`).
    fn for_flag(&self, flag: &OsStr) -> Option<SocketAddr> {
        match flag.to_str()? {
            "--tcp" => self.tcp,
            "--udp" => self.udp,
            "--tls" => self.tls,
            "--remote-listen" => self.peer,
            _ => None,
        }
    }
}

/// A running `commsd` child process (killed on drop).
#[derive(Debug)]
pub struct Commsd {
    spec: CommsdSpec,
    dir: tempfile::TempDir,
    child: Option<Child>,
    listeners: Listeners,
    stderr: Option<mpsc::UnboundedReceiver<String>>,
}

impl Commsd {
    async fn spawn(&mut self, args: &[OsString]) -> Result<()> {
        let ready = self.dir.path().join("ready");
        let _ = std::fs::remove_file(&ready);
        let mut cmd = Command::new(&self.spec.bin);
        cmd.args(args);
        if self.spec.unix_in_dir {
            cmd.arg("--unix").arg(self.dir.path().join("commsd.sock"));
        }
        cmd.arg("--ready-file").arg(&ready);
        for (k, v) in &self.spec.env {
            cmd.env(k, v);
        }
        let stderr = match &self.spec.stderr {
            Stderr::Null => Stdio::null(),
            Stderr::Inherit => Stdio::inherit(),
            Stderr::Capture => Stdio::piped(),
            Stderr::File(path) => Stdio::from(
                std::fs::File::create(path).map_err(Error::io(path.display().to_string()))?,
            ),
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(Error::io(format!("spawn {}", self.spec.bin.display())))?;
        self.stderr = child.stderr.take().map(|err| {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut lines = BufReader::new(err).lines();
            tokio::spawn(async move {
                while let Ok(Some(l)) = lines.next_line().await {
                    let _ = tx.send(strip_ansi(&l));
                }
            });
            rx
        });
        let deadline = tokio::time::Instant::now() + self.spec.timeout;
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                break text;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::Failed(format!("commsd exited on start: {status}")));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Failed(format!(
                    "commsd was not ready within {:?}",
                    self.spec.timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        self.listeners = Listeners::parse(&text)?;
        self.child = Some(child);
        Ok(())
    }

    /// The listeners it announced.
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// Its Unix socket, if it listens on one.
    pub fn socket(&self) -> Option<&Path> {
        self.listeners.unix.as_deref()
    }

    /// Its own temp directory (ready file; the socket of [`CommsdSpec::unix_only_in_dir`]).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the process runs (started and not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL (no goodbye, no flush) and reap it; nothing if it is not running.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill().map_err(Error::io("SIGKILL commsd"))?;
            child.wait().await.map_err(Error::io("wait for commsd"))?;
        }
        Ok(())
    }

    /// [`Commsd::kill`] if running, then start the same command on the same addresses (see
    /// the module docs); returns once it is ready again.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await?;
        let mut args = self.spec.args.clone();
        for i in 1..args.len() {
            let any = args[i]
                .to_str()
                .and_then(|a| a.parse::<SocketAddr>().ok())
                .is_some_and(|a| a.port() == 0);
            if let Some(bound) = self.listeners.for_flag(&args[i - 1]).filter(|_| any) {
                args[i] = bound.to_string().into();
            }
        }
        self.spawn(&args).await
    }

    /// The next captured stderr line within `within` (`None`: none in time, or the log ended).
    /// Only with [`Stderr::Capture`].
    pub async fn stderr_line(&mut self, within: Duration) -> Option<String> {
        let rx = self.stderr.as_mut()?;
        tokio::time::timeout(within, rx.recv()).await.ok().flatten()
    }

    /// Skips captured stderr lines until one contains every one of `parts`; returns it.
    pub async fn expect_stderr(&mut self, parts: &[&str], within: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.stderr_line(left).await {
                Some(l) if parts.iter().all(|p| l.contains(p)) => return Ok(l),
                Some(_) => {}
                None => {
                    return Err(Error::Failed(format!(
                        "no commsd log line with {parts:?} within {within:?}"
                    )))
                }
            }
        }
    }
}

/// `s` without ANSI escape sequences (a coloured log line as plain text).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_lines_are_parsed() {
        let l = Listeners::parse(
            "commsd: listening unix /tmp/x.sock\ncommsd: listening tcp 127.0.0.1:4040\n\
             commsd: listening peer 127.0.0.1:7\nnoise\n",
        )
        .expect("parse");
        assert_eq!(l.unix.as_deref(), Some(Path::new("/tmp/x.sock")));
        assert_eq!(l.tcp, "127.0.0.1:4040".parse().ok());
        assert_eq!(l.peer, "127.0.0.1:7".parse().ok());
        assert_eq!((l.udp, l.tls), (None, None));
        assert!(Listeners::parse("commsd: listening tcp nope").is_err());
        assert_eq!(strip_ansi("\x1b[2mat\x1b[0m x=1"), "at x=1");
    }
}
