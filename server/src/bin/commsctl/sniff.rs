//! `commsctl sniff`: watch the whole transport (no server needed). On `cd:`/`cds:` the daemon
//! lets only admins sniff: the transport is opened again with the admin token derived from
//! the fleet key.

use std::process::ExitCode;

use anyhow::{bail, Context};
use comms_fleet::auth::FleetKey;
use comms_native::transport::{NativeOptions, NativeTransport};
use comms_server::sniff::{Filter, Output as SniffOutput};

/// `transport`, or on `cd:`/`cds:` with a fleet key found, a native transport to the same
/// daemon that sends the admin token.
pub(crate) async fn with_admin_token(
    transport: Box<dyn comms::Transport>,
    url: &comms::config::TransportUrl,
    key_file: Option<&std::path::Path>,
) -> anyhow::Result<Box<dyn comms::Transport>> {
    let native = matches!(
        url.scheme(),
        comms::config::Scheme::Cd | comms::config::Scheme::Cds
    );
    let token = if native {
        comms_server::embed::admin_token(sniff_key(key_file)?.as_ref())
    } else {
        None
    };
    Ok(match token {
        Some(token) => {
            // The daemon lets only admins sniff: the same transport, with the token.
            let _ = transport.close().await;
            let opts = NativeOptions::from_url(url)?.with_admin_token(token);
            Box::new(NativeTransport::with_options(opts))
        }
        None => transport,
    })
}

/// The fleet key `sniff` derives the daemon's admin token from, if it finds one (the same
/// search as the server's commands; none is not an error: a Unix socket may not need it).
pub(crate) fn sniff_key(explicit: Option<&std::path::Path>) -> anyhow::Result<Option<FleetKey>> {
    match comms_fleet::auth::find_key_file(explicit) {
        Some(p) => Ok(Some(FleetKey::from_file(&p)?)),
        None => Ok(None),
    }
}

/// Sniff until Ctrl-C (or `count` messages), printing each as text or JSON.
pub(crate) async fn run(
    transport: Box<dyn comms::Transport>,
    commands: Vec<String>,
    services: Vec<String>,
    count: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let backend = transport.capabilities().backend;
    let filter = Filter { commands, services };
    let output = SniffOutput { json, count };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let started = || eprintln!("commsctl: sniffing the {backend} transport (Ctrl-C to stop)");
    let mut stdout = std::io::stdout().lock();
    let result =
        comms_server::sniff::run(&*transport, &filter, output, &mut stdout, stop, started).await;
    let _ = transport.close().await;
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e @ comms::Error::Unsupported { .. }) => {
            bail!("{e}: this backend cannot sniff (memory, native commsd, RabbitMQ and Kafka can)")
        }
        Err(e) if backend == "native" && e.to_string().contains("admin_token") => Err(e).context(
            "sniff (commsd lets only admins sniff: commsctl sends the admin token derived from \
             the fleet key it finds (--key-file, COMMS_FLEET_KEY_FILE, the server's state \
             directory) or COMMSD_ADMIN_TOKEN)",
        ),
        Err(e) => Err(e).context("sniff"),
    }
}
