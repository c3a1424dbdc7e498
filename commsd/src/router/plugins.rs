//! The stock daemon's plugin commands, answered by the router (docs/NATIVE.md "Stock plugin
//! commands"): `CLOCK_STATUS`, `PUBLIC_IP`, `LOG_ROTATE` and the load average family
//! (`REGISTER_FOR_LOADAVG`, `UNREGISTER_FROM_LOADAVG`, `LISTEN_LOADAVG`, `LOADAVG`).
//!
//! - `CLOCK_STATUS` → `<NODE:communicatord CLOCK_STABLE cache=no;clock_resolution=verified|no_ntp`,
//!   or `CLOCK_UNSTABLE cache=no;clock_error=invalid` when the system clock reads a time before
//!   2020-01-01 (a clock never set). `verified` when systemd-timesyncd reports the clock
//!   synchronised (`/run/systemd/timesync/synchronized` exists), else `no_ntp`: commsd runs
//!   no NTP check of its own, and a clock that looks set is taken as stable (stock services
//!   wait for `CLOCK_STABLE` after `READY`).
//! - `PUBLIC_IP` → `<NODE:communicatord SERVER_PUBLIC_IP[ public_ip=IP]` (`public_ip` setting).
//! - `REGISTER_FOR_LOADAVG` (from a service or a peer link) subscribes the connection:
//!   every [`LOADAVG_PERIOD`] it gets `LOADAVG avg=<1 min load>;my_address=<READY's
//!   my_address>;timestamp=<unix s>` (`<NODE:communicatord ` prefixed for a service; plain on a
//!   peer link, as daemons talk), read from `/proc/loadavg`. `UNREGISTER_FROM_LOADAVG` or the
//!   connection's close ends it. `LISTEN_LOADAVG ips=a,b` sends `REGISTER_FOR_LOADAVG` on the
//!   peer links to those IPs. A `LOADAVG` received is logged (the stock daemon writes it to a
//!   file for its balancer; commsd has none).
//! - `LOG_ROTATE` is acknowledged in the log only: commsd writes its log to stderr (journald),
//!   there is no file to reopen.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::Router;
use crate::event::ConnId;
use crate::replies;
use cd_wire::WireMessage;

/// How often subscribers get `LOADAVG` (the stock plugin's period).
pub(crate) const LOADAVG_PERIOD: Duration = Duration::from_secs(1);
/// 2020-01-01T00:00:00Z: a clock before it was never set.
const SANE_CLOCK: u64 = 1_577_836_800;
/// systemd-timesyncd's flag file: present once the clock is synchronised.
const TIMESYNC_FLAG: &str = "/run/systemd/timesync/synchronized";

/// The load average subscribers.
#[derive(Debug, Default)]
pub(crate) struct Loadavg {
    pub(crate) listeners: HashSet<ConnId>,
    /// The next tick, while anyone listens.
    pub(crate) next: Option<Instant>,
}

/// `CLOCK_STABLE` / `CLOCK_UNSTABLE` by the rule of the module docs.
pub(crate) fn clock_status(node: &str, now: u64, synchronized: bool) -> WireMessage {
    if now < SANE_CLOCK {
        return replies::notification(node, "CLOCK_UNSTABLE")
            .with_param("cache", "no")
            .with_param("clock_error", "invalid");
    }
    let resolution = if synchronized { "verified" } else { "no_ntp" };
    replies::notification(node, "CLOCK_STABLE")
        .with_param("cache", "no")
        .with_param("clock_resolution", resolution)
}

/// The 1-minute load average from `/proc/loadavg` (`None` where there is none).
fn read_loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let first = text.split_whitespace().next()?;
    first.parse::<f64>().ok().map(|_| first.to_owned())
}

impl Router {
    /// A plugin command from connection `id` (service or peer link); false if `command` is
    /// not one.
    pub(crate) fn plugin_command(&mut self, id: ConnId, msg: &WireMessage) -> bool {
        match msg.command.as_str() {
            "CLOCK_STATUS" => {
                let synced = std::path::Path::new(TIMESYNC_FLAG).exists();
                let m = clock_status(&self.node, replies::unix_now(), synced);
                self.send(id, &m);
            }
            "PUBLIC_IP" => {
                let mut m = replies::notification(&self.node, "SERVER_PUBLIC_IP");
                if let Some(ip) = &self.cfg.public_ip {
                    m.set_param("public_ip", ip);
                }
                self.send(id, &m);
            }
            "LOG_ROTATE" => tracing::info!(
                conn = id,
                "LOG_ROTATE: logs go to stderr, nothing to reopen"
            ),
            "REGISTER_FOR_LOADAVG" => {
                tracing::debug!(conn = id, "load average subscriber");
                self.loadavg.listeners.insert(id);
                if self.loadavg.next.is_none() {
                    self.loadavg.next = Some(Instant::now());
                }
            }
            "UNREGISTER_FROM_LOADAVG" => self.loadavg_forget(id),
            "LISTEN_LOADAVG" => {
                let ips: Vec<String> = msg
                    .param("ips")
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
                let links: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.link.is_some())
                    .filter(|(_, c)| ips.iter().any(|ip| ip_of(&c.peer) == ip_of(ip)))
                    .map(|(id, _)| *id)
                    .collect();
                tracing::debug!(conn = id, ?ips, links = links.len(), "LISTEN_LOADAVG");
                for link in links {
                    self.send(link, &WireMessage::new("REGISTER_FOR_LOADAVG"));
                }
            }
            "LOADAVG" => {
                tracing::debug!(conn = id, params = ?msg.params, "load average received");
            }
            _ => return false,
        }
        true
    }

    /// Drops a subscriber (command or closed connection).
    pub(crate) fn loadavg_forget(&mut self, id: ConnId) {
        self.loadavg.listeners.remove(&id);
        if self.loadavg.listeners.is_empty() {
            self.loadavg.next = None;
        }
    }

    /// Sends `LOADAVG` to every subscriber and schedules the next tick.
    pub(crate) fn loadavg_tick(&mut self) {
        self.loadavg
            .listeners
            .retain(|id| self.conns.contains_key(id));
        if self.loadavg.listeners.is_empty() {
            self.loadavg.next = None;
            return;
        }
        self.loadavg.next = Some(Instant::now() + LOADAVG_PERIOD);
        let Some(avg) = read_loadavg() else {
            tracing::debug!("no /proc/loadavg: LOADAVG not sent");
            return;
        };
        let plain = WireMessage::new("LOADAVG")
            .with_param("avg", avg)
            .with_param("my_address", &self.cfg.my_address)
            .with_param("timestamp", replies::unix_now().to_string());
        let mut stamped = plain.clone();
        stamped.sent_from_server = self.node.to_string();
        stamped.sent_from_service = replies::DAEMON_SERVICE.to_owned();
        let ids: Vec<ConnId> = self.loadavg.listeners.iter().copied().collect();
        for id in ids {
            let to_peer = self.conns.get(&id).is_some_and(|c| c.link.is_some());
            self.send(id, if to_peer { &plain } else { &stamped });
        }
    }
}

/// The IP part of `ip:port` (or the text itself).
fn ip_of(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((ip, port)) if port.parse::<u16>().is_ok() => ip,
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_rule() {
        let l = |m: WireMessage| m.to_line().unwrap_or_default();
        assert_eq!(
            l(clock_status("vm", 5, true)),
            "<vm:communicatord CLOCK_UNSTABLE cache=no;clock_error=invalid"
        );
        assert_eq!(
            l(clock_status("vm", SANE_CLOCK + 1, false)),
            "<vm:communicatord CLOCK_STABLE cache=no;clock_resolution=no_ntp"
        );
        assert_eq!(ip_of("10.0.0.1:4042"), "10.0.0.1");
        assert_eq!(ip_of("10.0.0.1"), "10.0.0.1");
    }
}
