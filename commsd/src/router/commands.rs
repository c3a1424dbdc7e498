//! Commands addressed to the daemon itself (docs/PROTOCOL.md §2.4, docs/NATIVE.md).

use std::sync::Arc;

use super::admin::{how_to_allow, AdminCommand};
use super::Router;
use crate::event::ConnId;
use crate::replies::{self, DAEMON_COMMANDS, DAEMON_SERVICE, LOG_ONLY};
use crate::stats::Stats;
use cd_wire::{is_valid_name, WireMessage};

impl Router {
    /// Handles one daemon command from stream connection `id`.
    pub(crate) fn daemon_command(&mut self, id: ConnId, msg: WireMessage) {
        let name = self.name_of(id);
        let to = name.as_deref();
        match msg.command.as_str() {
            "REGISTER" | "COMMANDS" if self.is_sniffing(id) => {
                let reason = "a sniffing connection cannot register or declare commands";
                self.refuse(id, to, Some(&msg.command), reason);
            }
            "SNIFF" => self.sniff_request(id, to, msg.param("admin_token")),
            "REGISTER" => self.register(id, &msg),
            "UNREGISTER" => {
                if let (Some(n), Some(s)) = (to, msg.param("service")) {
                    if n != s {
                        tracing::info!(
                            conn = id,
                            registered = n,
                            asked = s,
                            "UNREGISTER names another service; unregistering this connection"
                        );
                    }
                }
                self.close(id, "unregistered");
            }
            "COMMANDS" => {
                let list = msg.param("list").unwrap_or_default();
                if let Some(c) = self.conns.get_mut(&id) {
                    c.commands = list
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
            }
            "HELP" => {
                let m = replies::reply(&self.node, to, "COMMANDS")
                    .with_param("list", DAEMON_COMMANDS.join(","));
                self.send(id, &m);
            }
            "ALIVE" => {
                let mut m = replies::reply(&self.node, to, "ABSOLUTELY")
                    .with_param("reply_timestamp", replies::timespec_now());
                for p in ["serial", "timestamp"] {
                    if let Some(v) = msg.param(p) {
                        m.set_param(p, v);
                    }
                }
                self.send(id, &m);
            }
            "SERVICE_STATUS" => self.service_status(id, to, &msg),
            "LIST_SERVICES" => {
                let mut list: Vec<&str> = self.names.keys().map(|n| &**n).collect();
                list.sort_unstable();
                let m = replies::reply(&self.node, to, "SERVICES")
                    .with_param("list", list.join(","))
                    .with_param("server_name", &*self.node);
                self.send(id, &m);
            }
            "STOP" | "SHUTDOWN" => self.stop_request(id, to, &msg),
            "CLUSTER_STATUS" => self.cluster_status_request(id),
            "FORGET" => self.forget_request(id, to, &msg),
            "CLUSTER_MAP" => self.cluster_map_request(id, to),
            _ if self.plugin_command(id, &msg) => {}
            c if LOG_ONLY.contains(&c) => {
                tracing::debug!(conn = id, command = c, params = ?msg.params, "received");
            }
            c => {
                tracing::debug!(conn = id, command = c, "unknown daemon command");
                let m = replies::reply(&self.node, to, "UNKNOWN").with_param("command", c);
                self.send(id, &m);
            }
        }
    }

    /// `REGISTER service=NAME;version=1` → HELP, READY, STATUS up to listeners, cache replay.
    pub(crate) fn register(&mut self, id: ConnId, msg: &WireMessage) {
        let svc = msg.param("service").unwrap_or_default();
        let refusal = if svc.is_empty() {
            Some("missing service name".to_owned())
        } else if !is_valid_name(svc) || svc == DAEMON_SERVICE {
            Some(format!("invalid service name {svc:?}"))
        } else if msg.param("version").is_none() {
            Some("missing version (version=1 required)".to_owned())
        } else if msg.param("version") != Some("1") {
            Some(format!(
                "unsupported version {} (version=1 required)",
                msg.param("version").unwrap_or_default()
            ))
        } else if let Some(n) = self.name_of(id) {
            Some(format!("connection already registered as {n}"))
        } else if self.names.contains_key(svc) {
            Some(format!(
                "service {svc} is already registered on this daemon"
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            Stats::bump(&self.stats.invalid_lines);
            tracing::info!(conn = id, service = svc, %reason, "REGISTER refused");
            let mut m = replies::notification(&self.node, "INVALID")
                .with_param("command", "REGISTER")
                .with_param("reason", reason);
            if !svc.is_empty() {
                m.set_param("service", svc);
            }
            self.send(id, &m);
            return;
        }
        let name: Arc<str> = Arc::from(svc);
        let up_since = replies::unix_now();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.name = Some(name.clone());
        c.up_since = up_since;
        tracing::info!(conn = id, service = svc, kind = ?c.kind, "service registered");
        self.names.insert(name, id);
        self.down.remove(svc);
        let help = replies::notification(&self.node, "HELP");
        self.send(id, &help);
        let ready = replies::notification(&self.node, "READY")
            .with_param("my_address", &self.cfg.my_address);
        self.send(id, &ready);
        let status = replies::status_up(&self.node, svc, up_since);
        self.broadcast_msg(&status, "STATUS");
        for e in self.cache.take_for(svc) {
            self.push(id, &e.line);
        }
        self.services_changed();
    }

    /// `SERVICE_STATUS service=NAME` → STATUS up / down / unknown (docs/PROTOCOL.md §7 shapes).
    pub(crate) fn service_status(&mut self, id: ConnId, to: Option<&str>, msg: &WireMessage) {
        let Some(svc) = msg.param("service").filter(|s| !s.is_empty()) else {
            self.refuse(id, to, Some("SERVICE_STATUS"), "missing service");
            return;
        };
        let live = self
            .names
            .get(svc)
            .and_then(|cid| self.conns.get(cid))
            .map(|c| c.up_since);
        let m = match (live, self.down.get(svc)) {
            (Some(up), _) => replies::status_up(&self.node, svc, up),
            (None, down) => match (self.remote_status(svc), down) {
                (Some(remote), _) => remote,
                (None, Some(&(up, down))) => replies::status_down(&self.node, svc, up, down),
                (None, None) => replies::status_unknown(&self.node, svc),
            },
        };
        self.send(id, &m);
    }

    /// `STOP` / `SHUTDOWN`: stops this daemon when the connection is an admin's
    /// ([`Router::admin_verdict`]).
    pub(crate) fn stop_request(&mut self, id: ConnId, to: Option<&str>, msg: &WireMessage) {
        let command = msg.command.as_str();
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let (kind, uid) = (conn.kind, conn.uid);
        match self.admin_verdict(id, AdminCommand::Stop, msg.param("admin_token")) {
            Ok(by) => {
                tracing::info!(conn = id, ?kind, command, by, "stop requested");
                self.shutdown.cancel();
            }
            Err(why) => {
                tracing::warn!(conn = id, ?kind, ?uid, command, reason = %why, "admin command refused");
                let reason = format!(
                    "{command} refused: {why} ({})",
                    how_to_allow(AdminCommand::Stop)
                );
                self.refuse(id, to, Some(command), &reason);
            }
        }
    }
}
