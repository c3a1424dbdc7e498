//! The command line of `commsctl` (clap definitions, help texts).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub const ENV_AND_EXIT: &str = "\
Environment:
  COMMS_URL             transport URL (like --url; --url wins, then COMMS_URL, then the
                        [transport] url of --config, then cd://127.0.0.1:4040)
  COMMS_FLEET_KEY_FILE    fleet key file (like --key-file)
  COMMS_SERVER_STATE_DIR  the server's state directory, where its fleet.key is looked for
  COMMSD_ADMIN_TOKEN      sniff: the daemon's admin token (default: derived from the fleet key)
  RUST_LOG                log filter for stderr (default: warn)

Fleet key: requests to the server are signed with --key-file (or COMMS_FLEET_KEY_FILE), else
with the key the server created on this host: $COMMS_SERVER_STATE_DIR/fleet.key, else
./server-state/fleet.key. With none found, server commands fail (exit 2) unless --insecure.
On the native backend, sniff sends the daemon the admin token derived from that key (commsd
lets only admins sniff; the server's embedded daemon takes that token).

Exit codes:
  0    success
  1    a target did not succeed, or no agent matched (run)
  2    error: bad usage, unknown dispatch id, daemon, broker or server not reachable
  3    run incomplete: the server went away or the --deadline passed (fetch the results
       later with `commsctl results ID`)
  130  run interrupted by Ctrl-C (the server was asked to cancel the dispatch)";

const EXAMPLES: &str = "\
Examples:
  commsctl agents
  commsctl run --all -- uname -a
  commsctl --url amqp://guest:guest@127.0.0.1:5672/%2f status
  commsctl --json run --group web --timeout 5 -- sh -c 'echo hi'
  commsctl sniff --service web1 --count 20
  commsctl completions bash > /etc/bash_completion.d/commsctl";

/// Control a comms fleet: list agents, run commands on them, send messages, watch the
/// transport. Talks to the `server` over the transport of --url (default
/// cd://127.0.0.1:4040).
#[derive(Debug, Parser)]
#[command(name = "commsctl", version, about, long_about = None, after_help = format!("{EXAMPLES}\n\n{ENV_AND_EXIT}"))]
pub struct Args {
    /// TOML config file ([transport] section).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Transport URL [default: cd://127.0.0.1:4040].
    #[arg(long, env = "COMMS_URL", global = true)]
    pub url: Option<String>,
    /// Machine-readable output: one JSON object per line, each with an `event` field;
    /// errors as JSON on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Fleet key file: sign requests with it; sniff derives the daemon's admin token from it
    /// (not used by keygen, completions, man)
    /// [default: the server's, $COMMS_SERVER_STATE_DIR/fleet.key or ./server-state/fleet.key].
    #[arg(long, env = "COMMS_FLEET_KEY_FILE", global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Send unsigned requests, for a server started with --insecure. Logged as INSECURE.
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Seconds to wait for each answer of the server (not used by sniff).
    #[arg(long, global = true, default_value_t = 10, value_name = "SECS")]
    pub wait: u64,
    /// Seconds to reach the daemon or broker before giving up.
    #[arg(long, global = true, default_value_t = 10, value_name = "SECS")]
    pub connect_timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the agents the server knows (up and down).
    #[command(after_help = "Examples:\n  commsctl agents\n  commsctl --json agents")]
    Agents,
    /// Run a command on agents and print their output and results.
    ///
    /// Waits until every target has a result, the server goes away (reported within a few
    /// seconds, exit 3), or --deadline passes (exit 3). Ctrl-C asks the server to cancel the
    /// dispatch, waits up to 5 s for the cancelled results, and exits 130.
    #[command(after_help = "Examples:\n  commsctl run --all -- uname -a\n  \
        commsctl run --group web --timeout 5 -- sh -c 'echo hi; exit 3'\n  \
        commsctl run --label env=prod --deadline 120 -- systemctl restart app\n  \
        commsctl run --all --secret-env TOKEN=s3cret -- sh -c 'deploy --token \"$TOKEN\"'\n\n\
        Exit codes: 0 all ok, 1 a target failed or none matched, 2 error, 3 incomplete \
        (server gone or deadline), 130 Ctrl-C.")]
    Run {
        /// One agent (id, id prefix, service name or node:service).
        #[arg(long, group = "target")]
        agent: Option<String>,
        /// Every agent in a group.
        #[arg(long, group = "target")]
        group: Option<String>,
        /// Every agent with this label (`key=value`).
        #[arg(long, group = "target")]
        label: Option<String>,
        /// Every live agent.
        #[arg(long, group = "target")]
        all: bool,
        /// Task timeout in seconds (on the agents).
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
        /// Seconds commsctl waits for all results [default: --timeout + 15].
        #[arg(long, value_name = "SECS")]
        deadline: Option<u64>,
        /// Output kept per stream per agent, in bytes.
        #[arg(long, default_value_t = 1024 * 1024)]
        output_cap: u64,
        /// Environment `KEY=VALUE` (repeatable).
        #[arg(long = "env")]
        env: Vec<String>,
        /// Secret environment `KEY=VALUE` (repeatable): sealed with the fleet key, so only
        /// the agents can read it (not the server's history, not a sniffer).
        #[arg(long = "secret-env", value_name = "KEY=VALUE")]
        secret_env: Vec<String>,
        /// Working directory on the agents.
        #[arg(long)]
        cwd: Option<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Send one message: `commsctl send [node:]service/CMD key=value...`.
    #[command(after_help = "Examples:\n  commsctl send web1/PING\n  \
        commsctl send --reply vm:server/SERVER_STATUS")]
    Send {
        /// `[node:]service/CMD`.
        target: String,
        /// Parameters `key=value`.
        params: Vec<String>,
        /// Wait for a reply (up to --wait seconds) and print it.
        #[arg(long)]
        reply: bool,
    },
    /// Cancel the running tasks of a dispatch (exit 2 if the server does not know the id).
    #[command(after_help = "Examples:\n  commsctl cancel 01J9Z8K3Q4XW6V3N2M1B0C9D8E")]
    Cancel {
        /// Dispatch id (printed by `run`).
        dispatch: String,
    },
    /// The server's status.
    #[command(after_help = "Examples:\n  commsctl status\n  commsctl --json status")]
    Status,
    /// Recent dispatches and their results; with an ID, that dispatch only.
    #[command(after_help = "Examples:\n  commsctl results\n  \
        commsctl results 01J9Z8K3Q4XW6V3N2M1B0C9D8E\n\nExit codes: 2 if ID is unknown.")]
    Results {
        /// Dispatch id.
        dispatch: Option<String>,
    },
    /// Print every message on the transport as it passes (`time from -> to COMMAND k=v...`,
    /// or JSON lines with --json), until --count messages or Ctrl-C. Needs no server;
    /// rejects --wait. On native commsd, only admins sniff: commsctl sends the admin token
    /// derived from the fleet key (--key-file, else the server's), or COMMSD_ADMIN_TOKEN.
    #[command(after_help = "Examples:\n  commsctl sniff --count 20\n  \
        commsctl --json sniff --command TASK_RESULT")]
    Sniff {
        /// Only this command (repeatable).
        #[arg(long = "command", value_name = "CMD")]
        commands: Vec<String>,
        /// Only messages from or to this service, `name` or `node:name` (repeatable).
        #[arg(long = "service", value_name = "NAME")]
        services: Vec<String>,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// The dead letters: messages a service gave up after its handler failed for the last
    /// time (retries exhausted, panics, timeouts), kept with the reason and the attempt count.
    /// Needs no server. RabbitMQ: the queue comms.<ns>.dead-letters; Kafka: the topic
    /// comms.<ns>.dead-letters; native: files in the state directory of the receiving host
    /// ($COMMS_STATE_DIR, [transport] state_dir, $STATE_DIRECTORY, ~/.local/state/comms).
    #[command(after_help = "Examples:\n  commsctl dlq list\n  \
        commsctl dlq list --service billing\n  \
        commsctl dlq show 01J9Z8K3Q4XW6V3N2M1B0C9D8E\n  \
        commsctl dlq replay 01J9Z8K3Q4XW6V3N2M1B0C9D8E\n  \
        commsctl dlq replay --all --service billing\n  \
        commsctl dlq purge --all\n\n\
        Replay sends the message again to where it was going, from its original sender (a \
        reply reaches that sender), and waits up to --wait seconds for it to be confirmed \
        (on native: acknowledged by the running receiver); unconfirmed, the letter is put \
        back (exit 1). Exit codes: 2 if an ID is unknown.")]
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Write a fresh fleet key (32 random bytes, hex) to PATH with mode 0600; needs no
    /// server. The server makes its own on its first start; keygen is for a key made ahead
    /// (give it to server, agents and commsctl: --key-file, COMMS_FLEET_KEY_FILE). To rotate,
    /// put the new key's line above the old one in each file; drop the old line at the end.
    #[command(after_help = "Examples:\n  commsctl keygen fleet.key\n  \
        export COMMS_FLEET_KEY_FILE=$PWD/fleet.key")]
    Keygen {
        /// Where to write the key.
        #[arg(default_value = "fleet.key")]
        path: PathBuf,
        /// Replace an existing file (by default it is kept and keygen fails).
        #[arg(long)]
        force: bool,
    },
    /// Print the token of the server's web view (served off loopback over TLS only to its
    /// holders), derived from the fleet key commsctl finds (--key-file, COMMS_FLEET_KEY_FILE,
    /// the server's state directory). Open https://HOST:PORT/?token=<it> once; a cookie keeps it.
    #[command(after_help = "Examples:\n  commsctl web-token\n  \
        commsctl --key-file /etc/comms/fleet.key web-token")]
    WebToken,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    #[command(
        after_help = "Examples:\n  commsctl completions bash > ~/.local/share/bash-completion/completions/commsctl\n  \
        commsctl completions zsh > ~/.zfunc/_commsctl"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    #[command(after_help = "Examples:\n  commsctl man > commsctl.1 && man ./commsctl.1")]
    Man,
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// One line per dead letter, oldest first: id, age, sender -> receiver, command,
    /// attempts, reason.
    #[command(
        after_help = "Examples:\n  commsctl dlq list\n  commsctl --json dlq list --service billing --limit 10"
    )]
    List {
        /// Only the letters given up by this service (`name` or `node:name`).
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One dead letter whole: the message's parameters, the reason, the attempts.
    #[command(
        after_help = "Examples:\n  commsctl dlq show 01J9Z8K3Q4XW6V3N2M1B0C9D8E\n\nExit codes: 2 if ID is unknown."
    )]
    Show {
        /// The letter's id (the message id, from `dlq list`).
        id: String,
    },
    /// Send dead letters again and remove them (put back if the send fails or is not
    /// confirmed within --wait seconds).
    #[command(
        after_help = "Examples:\n  commsctl dlq replay 01J9Z8K3Q4XW6V3N2M1B0C9D8E\n  commsctl dlq replay --all --service billing\n\nExit codes: 1 not confirmed (letters put back), 2 if ID is unknown."
    )]
    Replay {
        /// The letter's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every letter (with --service: that service's).
        #[arg(long)]
        all: bool,
        /// With --all: only this service's letters.
        #[arg(long, value_name = "NAME", requires = "all")]
        service: Option<String>,
    },
    /// Remove dead letters for good.
    #[command(
        after_help = "Examples:\n  commsctl dlq purge 01J9Z8K3Q4XW6V3N2M1B0C9D8E\n  commsctl dlq purge --all\n\nExit codes: 2 if ID is unknown."
    )]
    Purge {
        /// The letter's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every letter.
        #[arg(long)]
        all: bool,
    },
}
