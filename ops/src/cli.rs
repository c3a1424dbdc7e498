//! The `main` every long-running fleet binary (`server`, `agent`) shares: log set-up, the
//! command line, the run under [`traced`](crate::traced), and one line naming the error.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

/// Runs a binary: installs the log (level `info`, to stdout), parses the command line into
/// `A` (a bad one exits with clap's message and code), then runs `serve(args, url_from_flag)`
/// under [`traced`](crate::traced) as service `name`. `url_from_flag` says whether `--url` was
/// given on the command line itself (not only through its environment variable), so that the
/// flag can win over the config file while the variable does not.
///
/// `Ok` exits 0; an error is one line `NAME: error: ...` on stderr (its whole chain, no
/// backtrace even with `RUST_BACKTRACE` set) and exit code 1.
pub async fn run_main<A, F, E>(name: &str, serve: impl FnOnce(A, bool) -> F) -> ExitCode
where
    A: CommandFactory + FromArgMatches,
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    crate::logs::init("info", crate::logs::Stream::Stdout);
    let matches = A::command().get_matches();
    let args = match A::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    let url_from_flag = matches.value_source("url") == Some(ValueSource::CommandLine);
    match crate::traced(name, serve(args, url_from_flag)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
