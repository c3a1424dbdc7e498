//! Reaching the backend: the URL resolved from `--url`, the config file and `COMMS_URL`; the
//! broker or daemon probed within `--connect-timeout`, so that an unreachable one is a clear
//! error naming it (masked URL) rather than a wait.

use std::time::Duration;

use comms::startup::Resolved;
use comms::{Config, Transport};
use comms_fleet::DEFAULT_URL;

use crate::cli::Args;

/// A connected transport and what the commands report about it.
pub struct Connected {
    pub transport: Box<dyn Transport>,
    /// The resolved configuration, `ephemeral` set.
    pub config: Config,
    pub reach: Reach,
    pub namespace: String,
}

/// Where the backend is, for errors that say so.
pub struct Reach {
    /// The URL with its password masked.
    pub masked: String,
    backend: &'static str,
    /// `--connect-timeout`.
    pub timeout: Duration,
}

impl Reach {
    /// "cannot reach the native daemon at cd:///...: why".
    pub fn unreachable(&self, why: String) -> anyhow::Error {
        let what = match self.backend {
            "native" => "daemon",
            "memory" => "transport",
            _ => "broker",
        };
        anyhow::anyhow!(
            "cannot reach the {} {what} at {}: {why}",
            self.backend,
            self.masked
        )
    }

    /// The error for a connection not made within the timeout.
    pub fn too_slow(&self) -> anyhow::Error {
        self.unreachable(format!("no connection within {} s", self.timeout.as_secs()))
    }
}

/// Connect to the backend the flags and config name, or say why not.
pub async fn connect(args: &Args, url_from_flag: bool) -> anyhow::Result<Connected> {
    let flag_url = if url_from_flag {
        args.url.as_deref()
    } else {
        None
    };
    let resolved = Resolved::at_start(args.config.as_deref(), flag_url, DEFAULT_URL)?;
    // A short-lived tool: whatever a broker keeps for its endpoint goes when it exits.
    let mut config = resolved.config.clone();
    config.transport.ephemeral = true;
    let reach = Reach {
        masked: resolved.masked_url(),
        backend: resolved.backend(),
        timeout: Duration::from_secs(args.connect_timeout.max(1)),
    };
    if let Err(e) = comms::probe(&config, reach.timeout).await {
        return Err(reach.unreachable(causes(&e)));
    }
    let transport = match tokio::time::timeout(reach.timeout, comms::connect(&config)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(reach.unreachable(causes(&e))),
        Err(_) => return Err(reach.too_slow()),
    };
    if reach.backend == "native" && !config.transport.url.starts_with("cdu:") {
        if let Err(why) = probe_native(&config.transport.url, reach.timeout).await {
            return Err(reach.unreachable(why));
        }
    }
    Ok(Connected {
        transport,
        config,
        reach,
        namespace: resolved.namespace.clone(),
    })
}

/// An error and its sources, each cause once, joined with `: `.
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let c = s.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = s.source();
    }
    text
}

/// A native URL's daemon accepts connections (the native client itself retries forever).
async fn probe_native(url: &str, within: Duration) -> Result<(), String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let attempt = async {
        if let Some(path) = rest.strip_prefix('/') {
            #[cfg(unix)]
            return tokio::net::UnixStream::connect(format!("/{path}"))
                .await
                .map(drop);
            #[cfg(not(unix))]
            return Ok::<(), std::io::Error>(());
        }
        let authority = rest.split('/').next().unwrap_or_default();
        tokio::net::TcpStream::connect(authority).await.map(drop)
    };
    match tokio::time::timeout(within, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {} s", within.as_secs())),
    }
}
