//! The log set-up every comms binary shares: the level from `RUST_LOG` (else the binary's
//! default), plain text, and ANSI colour only when the stream is a terminal (a log file or a
//! pipe gets no escape codes).

use std::io::IsTerminal;

/// Where a binary writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (the long-running `server` and `agent`).
    Stdout,
    /// Standard error (`commsd`, and `commsctl`, whose stdout is its answer).
    Stderr,
}

/// Install the global `tracing` subscriber. `default` is the filter when `RUST_LOG` is unset
/// or invalid (`"info"`, `"warn"`...). Call once, first thing in `main`.
pub fn init(default: &str, stream: Stream) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match stream {
        Stream::Stdout => builder
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(std::io::stdout)
            .init(),
        Stream::Stderr => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
}
