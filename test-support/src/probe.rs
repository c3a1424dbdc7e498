//! [`Probe`]: a [`LineClient`] for assertions. Every step panics with what it expected and
//! what came instead (an I/O error, a timeout, another line), so a test reads as the exchange
//! it checks. Test code only: this is the one place of the crate that panics on purpose.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use crate::LineClient;

/// A raw line client whose every step asserts (see the module docs).
#[derive(Debug)]
pub struct Probe(pub LineClient);

impl From<LineClient> for Probe {
    fn from(c: LineClient) -> Self {
        Self(c)
    }
}

impl Probe {
    /// Connects to a Unix socket.
    pub async fn unix(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        let c = LineClient::unix(path).await;
        Self(c.unwrap_or_else(|e| panic!("connect {}: {e}", path.display())))
    }

    /// Connects over TCP.
    pub async fn tcp(addr: std::net::SocketAddr) -> Self {
        let c = LineClient::tcp(addr).await;
        Self(c.unwrap_or_else(|e| panic!("connect {addr}: {e}")))
    }

    /// Sends `line` and its `\n`.
    pub async fn send(&mut self, line: &str) {
        self.0.send(line).await.expect("send a line");
    }

    /// Sends `bytes` as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.0.send_raw(bytes).await.expect("send bytes");
    }

    /// The next line, without its `\n`.
    pub async fn line(&mut self) -> String {
        self.0
            .line()
            .await
            .unwrap_or_else(|e| panic!("waiting for a line: {e}"))
    }

    /// Asserts the next line is exactly `expected` (given without `\n`).
    pub async fn expect(&mut self, expected: &str) {
        assert_eq!(self.line().await, expected);
    }

    /// Asserts the next line starts with `prefix`; returns it.
    pub async fn expect_prefix(&mut self, prefix: &str) -> String {
        let l = self.line().await;
        assert!(l.starts_with(prefix), "expected {prefix:?}..., got {l:?}");
        l
    }

    /// Skips lines until one starts with `prefix`; returns it.
    pub async fn skip_to(&mut self, prefix: &str) -> String {
        self.0
            .skip_to(prefix)
            .await
            .unwrap_or_else(|e| panic!("waiting for {prefix:?}...: {e}"))
    }

    /// Asserts nothing arrives within `ms` milliseconds.
    pub async fn silent(&mut self, ms: u64) {
        if let Some(got) = self.0.silent(Duration::from_millis(ms)).await {
            panic!("expected silence, got {got:?}");
        }
    }

    /// Asserts the peer closes the connection (possibly after some lines, returned).
    pub async fn eof(&mut self) -> Vec<String> {
        self.0
            .eof()
            .await
            .unwrap_or_else(|e| panic!("waiting for the end of the connection: {e}"))
    }
}

/// Declares a newtype over [`Probe`] that derefs to it, so a test file adds its own steps
/// (`impl Raw { async fn register(..) }`) to the shared ones:
/// `comms_test_support::probe_newtype!(pub struct Raw);`.
#[macro_export]
macro_rules! probe_newtype {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis struct $name(pub $crate::Probe);

        impl ::std::ops::Deref for $name {
            type Target = $crate::Probe;
            fn deref(&self) -> &$crate::Probe {
                &self.0
            }
        }

        impl ::std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $crate::Probe {
                &mut self.0
            }
        }
    };
}
