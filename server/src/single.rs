//! One active server per namespace.
//!
//! On `cd:`/`cds:` the daemon enforces it: it refuses a second `REGISTER` of the `server`
//! name (and the embedded daemon cannot bind a port already in use). The brokers have no such
//! rule (RabbitMQ and Kafka share a service's queue or topic between its instances), so before
//! it starts, a server asks: [`ensure_alone`] sends `SERVER_STATUS` to `server` from a
//! throw-away probe endpoint (signed with the fleet key when there is one) and waits
//! [`PROBE_WAIT`]. Any answer — a status, or an error reply such as "not authorized" — is a
//! running server, and the new one refuses to start, naming it. The request carries a TTL of
//! the same length, so when nobody answers it expires instead of reaching the new server.
//!
//! A race remains: two servers started within the same probe window both find none.

use std::path::Path;
use std::time::Duration;

use comms::{Destination, Endpoint, Message, Transport};
use comms_fleet::auth::{FleetAuth, FleetKey};
use comms_fleet::control::{cmd, ServerStatus, SERVER_SERVICE};

/// How long the probe waits for a running server's answer.
pub const PROBE_WAIT: Duration = Duration::from_secs(3);

/// Why the server must not start.
#[derive(Debug, thiserror::Error)]
pub enum SingleError {
    /// Another server answers on this namespace.
    #[error(
        "another server is already running on this namespace: {0} (stop it first, or use another namespace)"
    )]
    Running(String),
    /// The probe could not run.
    #[error("could not check for a running server: {0}")]
    Probe(#[from] comms::Error),
    /// The fleet key could not be read.
    #[error("fleet key: {0}")]
    Key(String),
}

/// Fails with [`SingleError::Running`] when a server already answers `SERVER_STATUS` on the
/// namespace of `transport` (which the probe consumes and closes).
pub async fn ensure_alone(
    transport: Box<dyn Transport>,
    key_file: Option<&Path>,
) -> Result<(), SingleError> {
    let auth = match key_file {
        Some(path) => Some(FleetAuth::new(
            FleetKey::from_file(path).map_err(|e| SingleError::Key(e.to_string()))?,
        )),
        None => None,
    };
    let name = format!(
        "server_probe_{}_{}",
        std::process::id(),
        ulid::Ulid::generate().to_string().to_ascii_lowercase()
    );
    let probe = Endpoint::builder(transport, name).start().await?;
    let mut msg = Message::new(
        cmd::SERVER_STATUS,
        Destination::Service(SERVER_SERVICE.into()),
    )?
    .with_ttl(PROBE_WAIT, false);
    if let Some(auth) = &auth {
        auth.sign(&mut msg);
    }
    let answer = probe.request(msg, PROBE_WAIT).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), probe.close()).await;
    match answer {
        Ok(reply) => {
            let name = reply
                .data::<ServerStatus>()
                .map(|s| {
                    format!(
                        "{} ({} backend, up {} s)",
                        s.address, s.backend, s.uptime_secs
                    )
                })
                .unwrap_or_else(|_| origin(&reply));
            Err(SingleError::Running(name))
        }
        Err(comms::Error::Timeout(_)) => Ok(()),
        Err(e @ comms::Error::Remote { .. }) => match e.remote_command() {
            // Nobody serves the name: the way is clear.
            Some("SERVICE_UNAVAILABLE") | Some("UNKNOWN") => Ok(()),
            _ => {
                let from = match &e {
                    comms::Error::Remote { reply, .. } => origin(reply),
                    _ => String::new(),
                };
                Err(SingleError::Running(from))
            }
        },
        Err(e) => Err(SingleError::Probe(e)),
    }
}

fn origin(reply: &Message) -> String {
    reply
        .from()
        .as_ref()
        .map_or_else(|| SERVER_SERVICE.to_owned(), ToString::to_string)
}
