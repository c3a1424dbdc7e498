//! Who is an admin of the daemon ([`AdminRules`](crate::AdminRules)): the one rule that
//! `STOP`/`SHUTDOWN` (`commands.rs`) and `SNIFF` (`sniff.rs`) share.

use super::Router;
use crate::event::{ConnId, ConnKind};

/// The admin commands; they differ only in their opt-ins (loopback TCP without a token) and
/// opt-outs (`deny_stop_from_unix`, `deny_stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdminCommand {
    /// `STOP` / `SHUTDOWN`.
    Stop,
    /// `SNIFF`.
    Sniff,
}

/// What would make a refused connection an admin, for the refusal's reason.
pub(crate) fn how_to_allow(what: AdminCommand) -> &'static str {
    match what {
        AdminCommand::Stop => {
            "needs admin_token, root or the daemon's user on the Unix socket, or \
             allow_stop_from_tcp on loopback TCP"
        }
        AdminCommand::Sniff => {
            "needs admin_token, root or the daemon's user on the Unix socket, or \
             allow_sniff_from_tcp on loopback TCP"
        }
    }
}

impl Router {
    /// Whether connection `id` may run `what`, given the message's `admin_token`: `Ok(by
    /// which rule)` or `Err(why not)`. The token is compared in constant time, never logged.
    pub(crate) fn admin_verdict(
        &self,
        id: ConnId,
        what: AdminCommand,
        token: Option<&str>,
    ) -> Result<&'static str, String> {
        let Some(conn) = self.conns.get(&id) else {
            return Err("unknown connection".to_owned());
        };
        let rules = &self.cfg.admin;
        if what == AdminCommand::Stop && rules.deny_stop {
            return Err("this daemon is stopped only by the process that embeds it".to_owned());
        }
        match (&rules.admin_token, token) {
            (Some(expected), Some(given)) if constant_time_eq(expected, given) => {
                return Ok("admin token")
            }
            (_, Some(_)) => return Err("wrong admin_token".to_owned()),
            (_, None) => {}
        }
        match conn.kind {
            ConnKind::Unix if what == AdminCommand::Stop && rules.deny_stop_from_unix => {
                Err("not allowed on the Unix socket without admin_token".to_owned())
            }
            ConnKind::Unix => match conn.uid {
                Some(u) if rules.unix_admin_uids.contains(&u) => Ok("unix peer uid"),
                Some(u) => Err(format!("uid {u} is not an admin uid of this daemon")),
                None => Err("the peer's uid is unknown".to_owned()),
            },
            ConnKind::Tcp if what == AdminCommand::Stop && rules.allow_stop_from_tcp => {
                Ok("allow_stop_from_tcp")
            }
            ConnKind::Tcp if what == AdminCommand::Sniff && rules.allow_sniff_from_tcp => {
                Ok("allow_sniff_from_tcp")
            }
            ConnKind::Tcp => Err("not allowed on a TCP connection without admin_token".to_owned()),
            ConnKind::Tls => Err("not allowed on a TLS connection without admin_token".to_owned()),
            // Unreachable in practice: peer lines never reach daemon_command.
            ConnKind::PeerIn | ConnKind::PeerOut => Err("not allowed on a peer link".to_owned()),
        }
    }
}

/// Compares two secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &str, b: &str) -> bool {
    cd_wire::constant_time_eq(a.as_bytes(), b.as_bytes())
}
