//! [`Target`]: where a `cd:` / `cds:` URL points (Unix socket, TCP, or TLS over TCP), and the
//! client options a URL may carry in its query.
//!
//! `cds://host[:port]?ca=PATH&cert=PATH&key=PATH&tls_name=NAME` (port default 4043): the
//! server certificate is verified against `ca` (PEM) or, without it, the system roots, for
//! the name `tls_name` or else the URL host; `cert` + `key` present a client certificate
//! (mutual TLS). The option names are those of `[rabbitmq.tls]` for `amqps:`.

use std::path::PathBuf;
use std::time::Duration;

use super::error::ClientError;
use crate::tls::ClientTls;

/// The daemon's default local TCP port.
pub const DEFAULT_PORT: u16 = 4040;
/// The daemon's default secure (TLS) port.
pub const DEFAULT_TLS_PORT: u16 = 4043;

/// The default reconnect schedule (seconds); the last value repeats. Unlike the stock
/// Communicator's `1,1,1,3,5,10,20,30,60`, it never waits more than 2 s, so a client is back
/// within a few seconds of its daemon's return; each pause is shortened by up to a quarter at
/// random ([`jittered`]) so that many clients do not reconnect in step.
pub const DEFAULT_RETRY: [f64; 3] = [0.5, 1.0, 2.0];

/// `pause` shortened by a random 0–25 % (never lengthened: a schedule's values are upper
/// bounds).
pub fn jittered(pause: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // A cheap varying fraction in [0, 0.25): enough to spread clients apart.
    let fraction = f64::from(nanos % 1_000_000) / 4_000_000.0;
    pause.mul_f64(1.0 - fraction)
}

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `cd:///abs/path.sock`: a Unix stream socket.
    Unix(PathBuf),
    /// `cd://host:port` (port default 4040): plain TCP.
    Tcp {
        /// Host name or IP.
        host: String,
        /// Port.
        port: u16,
    },
    /// `cds://host:port` (port default 4043): TLS over TCP.
    Tls {
        /// Host name or IP (also the name verified, unless `tls.server_name` is set).
        host: String,
        /// Port.
        port: u16,
        /// Trust, client certificate and verified name.
        tls: ClientTls,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "cd://{}", p.display()),
            Target::Tcp { host, port } => write!(f, "cd://{host}:{port}"),
            Target::Tls { host, port, .. } => write!(f, "cds://{host}:{port}"),
        }
    }
}

impl Target {
    /// Parse a `cd:` or `cds:` URL (besides the TLS options of `cds:`, the query is ignored
    /// here; see [`retry_from_query`]).
    pub fn parse(raw: &str) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: raw.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned());
        match url.scheme() {
            "cd" => {}
            "cds" => {
                let host = host.ok_or_else(|| bad("cds: needs a host: cds://host:port"))?;
                let query = |name: &str| {
                    url.query_pairs()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.into_owned())
                        .filter(|v| !v.is_empty())
                };
                let tls = ClientTls {
                    ca: query("ca").map(PathBuf::from),
                    cert: query("cert").map(PathBuf::from),
                    key: query("key").map(PathBuf::from),
                    server_name: query("tls_name"),
                };
                if tls.cert.is_some() != tls.key.is_some() {
                    return Err(bad("cert= and key= must be given together"));
                }
                return Ok(Target::Tls {
                    host,
                    port: url.port().unwrap_or(DEFAULT_TLS_PORT),
                    tls,
                });
            }
            "cdu" => {
                return Err(bad(
                    "cdu: (UDP) is send-only: one datagram per message, no connection; \
                     use transport::DatagramTransport (comms::connect does), or cd:/cds: to receive",
                ))
            }
            _ => return Err(bad("expected a cd: or cds: URL")),
        }
        match host {
            Some(host) => Ok(Target::Tcp {
                host,
                port: url.port().unwrap_or(DEFAULT_PORT),
            }),
            None => {
                let path = url.path();
                if path.len() < 2 || !path.starts_with('/') {
                    return Err(bad("expected cd:///absolute/socket/path or cd://host:port"));
                }
                Ok(Target::Unix(PathBuf::from(path)))
            }
        }
    }
}

/// Parse a retry schedule written as comma-separated seconds (`0.05,0.1,1`).
pub fn parse_retry(text: &str) -> Result<Vec<Duration>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let secs: f64 = part
            .trim()
            .parse()
            .map_err(|_| format!("retry: `{part}` is not a number of seconds"))?;
        if !(0.0..=3600.0).contains(&secs) {
            return Err(format!(
                "retry: `{part}` must be between 0 and 3600 seconds"
            ));
        }
        out.push(Duration::from_secs_f64(secs));
    }
    if out.is_empty() {
        return Err("retry: empty schedule".into());
    }
    Ok(out)
}

/// The default schedule as durations.
pub fn default_retry() -> Vec<Duration> {
    DEFAULT_RETRY
        .iter()
        .map(|s| Duration::from_secs_f64(*s))
        .collect()
}

/// The `retry` query parameter of a URL, or the default schedule.
pub fn retry_from_query(raw: &str) -> Result<Vec<Duration>, ClientError> {
    let url = url::Url::parse(raw).map_err(|e| ClientError::BadUrl {
        url: raw.to_owned(),
        reason: e.to_string(),
    })?;
    match url.query_pairs().find(|(k, _)| k == "retry") {
        None => Ok(default_retry()),
        Some((_, v)) => parse_retry(&v).map_err(|reason| ClientError::BadUrl {
            url: raw.to_owned(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pauses_stay_within_two_seconds_and_jitter_only_shortens() {
        let schedule = default_retry();
        assert!(schedule.iter().all(|d| *d <= Duration::from_secs(2)));
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(2));
            assert!(
                d <= Duration::from_secs(2) && d >= Duration::from_millis(1500),
                "{d:?}"
            );
        }
    }

    #[test]
    fn targets() {
        assert_eq!(
            Target::parse("cd:///run/x.sock?node=a").unwrap(),
            Target::Unix("/run/x.sock".into())
        );
        assert_eq!(
            Target::parse("cd://127.0.0.1").unwrap(),
            Target::Tcp {
                host: "127.0.0.1".into(),
                port: 4040
            }
        );
        assert_eq!(
            Target::parse("cd://localhost:5000").unwrap(),
            Target::Tcp {
                host: "localhost".into(),
                port: 5000
            }
        );
        assert_eq!(
            Target::parse("cds://node1.example?ca=/etc/ca.pem&cert=/c.pem&key=/k.pem&tls_name=n1")
                .unwrap(),
            Target::Tls {
                host: "node1.example".into(),
                port: 4043,
                tls: ClientTls {
                    ca: Some("/etc/ca.pem".into()),
                    cert: Some("/c.pem".into()),
                    key: Some("/k.pem".into()),
                    server_name: Some("n1".into()),
                },
            }
        );
        assert!(Target::parse("cds://h:1?cert=/c.pem").is_err());
        assert!(Target::parse("cds:///no/host").is_err());
        assert!(Target::parse("cdu://127.0.0.1:4041").is_err());
        assert!(Target::parse("cd:").is_err());
    }

    #[test]
    fn retry_schedule() {
        assert_eq!(
            retry_from_query("cd:///x").unwrap().len(),
            DEFAULT_RETRY.len()
        );
        let r = retry_from_query("cd:///x?retry=0.05,2").unwrap();
        assert_eq!(r, vec![Duration::from_millis(50), Duration::from_secs(2)]);
        assert!(retry_from_query("cd:///x?retry=a").is_err());
        assert!(retry_from_query("cd:///x?retry=-1").is_err());
    }
}
