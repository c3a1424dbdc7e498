//! Test fixtures shared by every test crate and the bench (`publish = false`).
//!
//! One copy of each test mechanism:
//! - [`bins`]: where a workspace binary is (`commsd`, `server`, ...), built up to date when a
//!   test asks for it, `$COMMSD_BIN` honoured.
//! - [`commsd`]: the one `commsd` process launcher: spawn with arguments (Unix socket, TCP,
//!   TLS, peers, a config file), wait until every listener is bound, kill (SIGKILL), restart on
//!   the same addresses, stderr to null / the terminal / a file / captured lines; the process
//!   is killed when dropped.
//! - [`line`]: a raw `cd:` line client, as a stock Communicator service talks (connect, send a
//!   line, read a line with a timeout), over a Unix socket, TCP or any stream (TLS).
//!   [`probe::Probe`] is the same client for assertions (each step panics with what it expected).
//! - [`tansu`]: a Kafka broker (`tansu`) child process on a free port; [`rabbitmq`]: the
//!   RabbitMQ broker's URL and its start/restart via `rabbitmqctl`.
//! - [`tls`]: a throw-away PKI (`rcgen`) and a rustls client configuration, for TLS tests.
//! - [`names`]: unique names (namespaces, topics, nodes) and free loopback ports.
//! - [`fuzz_corpus`]: replays a fuzz target's corpus through its property-checking body.
//!
//! This crate depends on no comms crate, so any of them may use it as a dev-dependency.

pub mod bins;
pub mod commsd;
pub mod fuzz_corpus;
pub mod line;
pub mod names;
pub mod probe;
pub mod rabbitmq;
pub mod tansu;
pub mod tls;

pub use bins::{binary, commsd_binary};
pub use commsd::{Commsd, CommsdSpec, Listeners, Stderr};
pub use line::LineClient;
pub use names::{free_port, loopback_any, unique_name};
pub use probe::Probe;
pub use tansu::{Tansu, TansuStore};
pub use tls::{client_config, Ca, Leaf, Pki};

/// What went wrong starting or talking to a fixture.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A fixture did not come up or behave as it should.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// A fixture result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
