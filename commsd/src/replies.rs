//! The messages the daemon writes, byte-shaped as docs/PROTOCOL.md §7 observed on the real daemon.
//!
//! Two shapes: **notifications** carry the prefix `<NODE:communicatord ` (HELP, READY,
//! STATUS, QUITTING, DISCONNECTING, and the REGISTER refusal of docs/NATIVE.md); **replies
//! to a request** are addressed to the requester, `NODE:svc/CMD ...`, without prefix (for a
//! connection that has not registered, the address is empty: just `CMD ...`).

use std::time::{SystemTime, UNIX_EPOCH};

use cd_wire::WireMessage;

pub(crate) use cd_wire::DAEMON_SERVICE;

/// Commands the daemon handles (the `HELP` answer), sorted: the stock daemon's list
/// (docs/PROTOCOL.md, 30 names) less `LEAK` and `RESTART`, which commsd deliberately
/// does not implement (docs/NATIVE.md says why). The peer commands (`ACCEPT`, `CONNECT`,
/// `DISCONNECT`, `GOSSIP`, `REFUSE`) are listed as the stock daemon lists them: they are
/// handled on the peer listener (`crate::cluster`).
pub(crate) const DAEMON_COMMANDS: &[&str] = &[
    "ACCEPT",
    "ALIVE",
    "CLOCK_STATUS",
    "CLUSTER_STATUS",
    "COMMANDS",
    "CONNECT",
    "DISCONNECT",
    "FORGET",
    "GOSSIP",
    "HELP",
    "INVALID",
    "LISTEN_LOADAVG",
    "LIST_SERVICES",
    "LOADAVG",
    "LOG_ROTATE",
    "PUBLIC_IP",
    "QUITTING",
    "READY",
    "REFUSE",
    "REGISTER",
    "REGISTER_FOR_LOADAVG",
    "SERVICE_STATUS",
    "SERVICE_UNAVAILABLE",
    "SHUTDOWN",
    "STOP",
    "UNKNOWN",
    "UNREGISTER",
    "UNREGISTER_FROM_LOADAVG",
];

/// Commands addressed to the daemon that it only logs (answering them could start an
/// endless UNKNOWN ping-pong with a service's catch-all).
pub(crate) const LOG_ONLY: &[&str] = &[
    "ABSOLUTELY",
    "INVALID",
    "QUITTING",
    "READY",
    "SERVICE_UNAVAILABLE",
    "STATUS",
    "TRANSMISSION_REPORT",
    "UNKNOWN",
];

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Now as a C++ timespec parameter: `<sec>.<9-digit ns>` with trailing zeros (and `.`) removed.
pub(crate) fn timespec_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let s = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A notification from the daemon: `<node:communicatord CMD`.
pub(crate) fn notification(node: &str, command: &str) -> WireMessage {
    WireMessage::new(command).with_sent_from(node, DAEMON_SERVICE)
}

/// A reply addressed to `to` (a registered name, or `None`): `node:to/CMD`.
pub(crate) fn reply(node: &str, to: Option<&str>, command: &str) -> WireMessage {
    match to {
        Some(svc) => WireMessage::new(command)
            .with_server(node)
            .with_service(svc),
        None => WireMessage::new(command),
    }
}

/// `STATUS` for a live service.
pub(crate) fn status_up(node: &str, service: &str, up_since: u64) -> WireMessage {
    notification(node, "STATUS")
        .with_param("cache", "no")
        .with_param("server_name", node)
        .with_param("service", service)
        .with_param("status", "up")
        .with_param("up_since", up_since.to_string())
}

/// `STATUS` for a service that went down.
pub(crate) fn status_down(
    node: &str,
    service: &str,
    up_since: u64,
    down_since: u64,
) -> WireMessage {
    notification(node, "STATUS")
        .with_param("cache", "no")
        .with_param("down_since", down_since.to_string())
        .with_param("server_name", node)
        .with_param("service", service)
        .with_param("status", "down")
        .with_param("up_since", up_since.to_string())
}

/// `STATUS` for a name never seen here (no `server_name`, as the C++).
pub(crate) fn status_unknown(node: &str, service: &str) -> WireMessage {
    notification(node, "STATUS")
        .with_param("cache", "no")
        .with_param("service", service)
        .with_param("status", "unknown")
}

/// `INVALID reason=...[;command=CMD]`, addressed to `to`.
pub(crate) fn invalid(
    node: &str,
    to: Option<&str>,
    command: Option<&str>,
    reason: &str,
) -> WireMessage {
    let mut m = reply(node, to, "INVALID").with_param("reason", reason);
    if let Some(c) = command.filter(|c| !c.is_empty()) {
        m.set_param("command", c);
    }
    m
}

/// `SERVICE_UNAVAILABLE destination_service=;unsent_command=[;comms_corr=]` to the sender.
pub(crate) fn service_unavailable(
    node: &str,
    to: &str,
    service: &str,
    command: &str,
    comms_id: Option<&str>,
) -> WireMessage {
    let mut m = reply(node, Some(to), "SERVICE_UNAVAILABLE")
        .with_param("destination_service", service)
        .with_param("unsent_command", command);
    if let Some(id) = comms_id {
        m.set_param("comms_corr", id);
    }
    m
}

/// `TRANSMISSION_REPORT command=CMD;status=cached|failed` to the sender.
pub(crate) fn transmission_report(
    node: &str,
    to: &str,
    command: &str,
    status: &str,
) -> WireMessage {
    reply(node, Some(to), "TRANSMISSION_REPORT")
        .with_param("command", command)
        .with_param("status", status)
}

/// `<node:communicatord TRANSMISSION_REPORT command=CMD;status=cached|failed`, the stock
/// daemon's form for a report to a local sender.
pub(crate) fn transmission_report_local(node: &str, command: &str, status: &str) -> WireMessage {
    notification(node, "TRANSMISSION_REPORT")
        .with_param("command", command)
        .with_param("status", status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_cd_wire_7() {
        let l = |m: WireMessage| m.to_line().unwrap_or_default();
        assert_eq!(
            l(status_up("vm", "probe_b", 5)),
            "<vm:communicatord STATUS cache=no;server_name=vm;service=probe_b;status=up;up_since=5"
        );
        assert_eq!(
            l(status_unknown("vm", "nosuch")),
            "<vm:communicatord STATUS cache=no;service=nosuch;status=unknown"
        );
        assert_eq!(
            l(status_down("vm", "a", 1, 2)),
            "<vm:communicatord STATUS cache=no;down_since=2;server_name=vm;service=a;status=down;up_since=1"
        );
        assert_eq!(
            l(reply("vm", Some("probe_a"), "UNKNOWN").with_param("command", "NO_SUCH")),
            "vm:probe_a/UNKNOWN command=NO_SUCH"
        );
        assert_eq!(l(reply("vm", None, "UNKNOWN")), "UNKNOWN");
        assert!(!timespec_now().ends_with('0'));
    }
}
