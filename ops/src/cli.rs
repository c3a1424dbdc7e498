//! What every long-running fleet binary (`server`, `agent`) shares at start: its `main` (log
//! set-up, the command line, the run under [`traced`](crate::traced), one line naming the
//! error) and the range check of its config section ([`over_maximum`]).

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

/// The first of `values` (key, value, maximum) that is over its maximum, named with its
/// bound (`KEY = V is over the maximum MAX`); `Ok` when every value is in range.
pub fn over_maximum(values: &[(&str, u64, u64)]) -> Result<(), String> {
    match values.iter().find(|(_, v, max)| v > max) {
        Some((key, v, max)) => Err(format!("{key} = {v} is over the maximum {max}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::over_maximum;

    #[test]
    fn the_first_value_over_its_maximum_is_named() {
        assert_eq!(over_maximum(&[("a", 1, 1), ("b", 0, 9)]), Ok(()));
        assert_eq!(
            over_maximum(&[("a", 1, 1), ("b", 10, 9), ("c", 99, 9)]),
            Err("b = 10 is over the maximum 9".to_owned())
        );
    }
}
