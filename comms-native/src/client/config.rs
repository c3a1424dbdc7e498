//! [`ClientConfig`]: what a permanent connection needs (target, service name, commands,
//! reconnect schedule, bounds).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::error::ClientError;
use super::target::{retry_from_query, Target};

/// Commands every client declares: the daemon's system messages it must be able to receive.
pub const BASE_COMMANDS: [&str; 6] = ["HELP", "INVALID", "QUITTING", "READY", "STOP", "UNKNOWN"];

/// Default bound of the outgoing command channel (lines waiting for the socket writer).
pub const DEFAULT_OUTGOING_CAPACITY: usize = 1024;
/// Default bound of the incoming channel (messages waiting for the application).
pub const DEFAULT_INCOMING_CAPACITY: usize = 1024;
/// Largest line accepted from the daemon.
pub const DEFAULT_MAX_LINE: usize = 8 * 1024 * 1024;
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything the client task needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where the daemon listens.
    pub target: Target,
    /// The service name to REGISTER.
    pub service: String,
    /// Commands declared with `COMMANDS list=` (the base set is always added).
    pub commands: BTreeSet<String>,
    /// Reconnect delays; the last one repeats; restarted after each successful registration.
    pub retry: Vec<Duration>,
    /// Bound of the outgoing channel: `send` waits when it is full.
    pub outgoing_capacity: usize,
    /// Bound of the incoming channel: the reader stops reading the socket when it is full.
    pub incoming_capacity: usize,
    /// Largest line read from the daemon (longer lines are skipped with a warning).
    pub max_line_length: usize,
    /// For a [`Target::Tls`]: the rustls configuration, built once from its files.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ClientConfig {
    /// A configuration from a `cd:` or `cds:` URL (`?retry=0.05,0.1` overrides the schedule)
    /// for `service`. For `cds:` the certificate files are read here: a missing or bad file is
    /// an error now, not a retry loop later.
    pub fn from_url(url: &str, service: impl Into<String>) -> Result<Self, ClientError> {
        let service = service.into();
        if !cd_wire::is_valid_name(&service) {
            return Err(ClientError::BadUrl {
                url: url.to_owned(),
                reason: format!("service name `{service}` breaks the name rule"),
            });
        }
        let target = Target::parse(url)?;
        let tls = match &target {
            Target::Tls { host, tls, .. } => {
                tls.verify_name(host)?;
                Some(tls.client_config()?)
            }
            _ => None,
        };
        Ok(Self {
            target,
            tls,
            service,
            commands: BTreeSet::new(),
            retry: retry_from_query(url)?,
            outgoing_capacity: DEFAULT_OUTGOING_CAPACITY,
            incoming_capacity: DEFAULT_INCOMING_CAPACITY,
            max_line_length: DEFAULT_MAX_LINE,
        })
    }

    /// Add commands to declare.
    pub fn with_commands<I, S>(mut self, commands: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.commands.extend(commands.into_iter().map(Into::into));
        self
    }

    /// Replace the reconnect schedule.
    pub fn with_retry(mut self, retry: Vec<Duration>) -> Self {
        if !retry.is_empty() {
            self.retry = retry;
        }
        self
    }
}

/// The `COMMANDS list=` value: the declared commands plus the base set, sorted, comma-joined.
pub fn commands_list(declared: &BTreeSet<String>) -> String {
    let mut all: BTreeSet<&str> = declared.iter().map(String::as_str).collect();
    all.extend(BASE_COMMANDS);
    all.into_iter().collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cds_files_are_read_when_the_config_is_made() {
        let e = ClientConfig::from_url("cds://daemon.example?ca=/nonexistent/ca.pem", "svc")
            .unwrap_err();
        assert!(matches!(e, ClientError::Tls(_)), "{e}");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let e =
            ClientConfig::from_url("cds://daemon.example?tls_name=bad%20name", "svc").unwrap_err();
        assert!(e.to_string().contains("bad name"), "{e}");
        // Plain URLs carry no TLS configuration.
        assert!(ClientConfig::from_url("cd:///x.sock", "svc")
            .unwrap()
            .tls
            .is_none());
    }

    #[test]
    fn list_is_sorted_and_complete() {
        let declared: BTreeSet<String> = ["ZED", "COMMS_ACK", "HELP"].map(String::from).into();
        assert_eq!(
            commands_list(&declared),
            "COMMS_ACK,HELP,INVALID,QUITTING,READY,STOP,UNKNOWN,ZED"
        );
    }
}
