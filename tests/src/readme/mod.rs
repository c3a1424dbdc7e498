//! The README tour as a test: every ```` ```sh ```` block of `README.md`, command by command, as
//! written, against real processes (`tests/tests/readme_tour.rs`).
//!
//! What the runner does, and the only liberties it takes (README.md says the same in its
//! "Set up" note):
//! - every command runs through `bash` in a fresh directory inside the workspace (so `cargo run`
//!   finds the workspace and `./web1`, `./server-state` (the history and the fleet key the
//!   server creates) land in that directory, not in the checkout);
//!   the environment a block exports carries over to the next block, as in one terminal;
//! - the environment starts without `COMMS_*` and `RUST_LOG`, plus what the test substitutes:
//!   `COMMS_URL` pointing at a daemon on a free port instead of 4040, or at a broker of the
//!   test's own (another port than 5672/9092, a namespace of its own), given to
//!   [`Tour::substitute`] as text replacements;
//! - `cargo run ... -p server` (without `--bin`) and `cargo run ... -p agent` are long-running:
//!   they start in the background (own process group, output in a log file), the runner waits
//!   for their "up" log line, and for the server to list every started agent as up, before the
//!   next block; they are stopped (SIGTERM, then SIGKILL after 10 s) at the end of each `##`
//!   section and before a block that exports a new `COMMS_URL` ("stop the three processes,
//!   change one URL");
//! - a block whose first line is `# not run by the README test: <why>` is not run; the caller
//!   checks it another way;
//! - a command's expected exit status is 0 unless its line says `# exit status N`;
//! - while a `sniff` command runs, the runner makes traffic (`commsctl run --all -- true` in a
//!   loop), as the rest of a live fleet would.

mod tour;

pub use tour::{user_env, Ran, Tour};

use anyhow::{ensure, Context};

/// The marker that keeps a block from being run.
pub const NOT_RUN: &str = "# not run by the README test:";

/// One ```` ```sh ```` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The `##` section it is in.
    pub section: String,
    /// Its lines, as written (blank lines dropped).
    pub lines: Vec<String>,
}

impl Block {
    /// The reason given by a [`NOT_RUN`] marker on the first line.
    pub fn not_run(&self) -> Option<&str> {
        self.lines
            .first()
            .and_then(|l| l.trim().strip_prefix(NOT_RUN))
            .map(str::trim)
    }

    /// The commands: the lines that are not comments.
    pub fn commands(&self) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .map(|l| l.as_str())
            .filter(|l| !l.trim_start().starts_with('#'))
    }
}

/// The ```` ```sh ```` blocks of a markdown text, in order.
pub fn sh_blocks(markdown: &str) -> anyhow::Result<Vec<Block>> {
    let mut blocks = Vec::new();
    let mut section = String::new();
    let mut current: Option<Vec<String>> = None;
    for (n, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim() == "```sh" => current = Some(Vec::new()),
            None => {
                if let Some(h) = line.strip_prefix("## ") {
                    section = h.trim().to_owned();
                }
            }
            Some(_) if line.trim() == "```" => {
                let lines = current.take().unwrap_or_default();
                blocks.push(Block {
                    section: section.clone(),
                    lines,
                });
            }
            Some(lines) => {
                ensure!(
                    !line.trim_end().ends_with('\\'),
                    "README line {}: continuation lines are not supported by the tour test",
                    n + 1
                );
                if !line.trim().is_empty() {
                    lines.push(line.to_owned());
                }
            }
        }
    }
    ensure!(current.is_none(), "README ends inside a ```sh block");
    Ok(blocks)
}

/// The exit status a command line announces with `# exit status N` (0 without it).
pub fn expected_status(line: &str) -> anyhow::Result<i32> {
    match line.split_once("# exit status ") {
        None => Ok(0),
        Some((_, rest)) => {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits
                .parse()
                .with_context(|| format!("bad `# exit status` in {line:?}"))
        }
    }
}

/// What a long-running command is, or `None` for a command that runs to its end.
pub(crate) fn long_running(line: &str) -> Option<Kind> {
    let words: Vec<&str> = line
        .split('#')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    if words.first() != Some(&"cargo") || words.get(1) != Some(&"run") || words.contains(&"--bin") {
        return None;
    }
    let package = words
        .windows(2)
        .find(|w| w[0] == "-p")
        .map(|w| w[1])
        .unwrap_or("");
    match package {
        "server" => Some(Kind::Server),
        "agent" => {
            let name = words.windows(2).find(|w| w[0] == "--name").map(|w| w[1]);
            Some(Kind::Agent(name.unwrap_or("agent").to_owned()))
        }
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Server,
    Agent(String),
}
