//! `SNIFF` (a comms extension, docs/NATIVE.md): a dedicated connection receives a copy of
//! every line the router routes, as the receiver gets it (after stamping).
//!
//! - **Cost when nobody sniffs**: one `is_empty()` branch per routed line (`sniffers` is a
//!   small `Vec`); nothing is copied.
//! - **Bounded, never blocking**: copies are appended to the sniffer's `pending` buffer (at
//!   most [`SNIFF_ROUND_MAX`] bytes per round, more is lost) and flushed with the round like
//!   any output, with `try_send` on the sniffer's bounded outbound queue. Where a full queue
//!   disconnects a slow *service*, a full *sniffer* queue only loses that batch: the loss is
//!   counted (`Stats::sniff_lost`), logged at most once per [`LOSS_LOG_EVERY`], and told to
//!   the sniffer in band before its next batch: `<NODE:communicatord SNIFF_LOST lost=N;total=T`.
//! - **Who**: an unregistered connection only (a sniffing connection is not a service: it
//!   cannot REGISTER or declare COMMANDS afterwards, so nothing but copies and daemon
//!   notifications reach it), at most [`MAX_SNIFFERS`] at once, and only an **admin**: the
//!   same rule as `STOP` ([`AdminRules`](crate::AdminRules), `admin.rs`): `SNIFF
//!   admin_token=<token>` on any stream connection, or root / the daemon's user on the Unix
//!   socket, or loopback TCP with `allow_sniff_from_tcp`. A sniffer reads every routed line,
//!   so any local process must not be one. Accepted → `<NODE:communicatord SNIFFING
//!   max_round=BYTES`; refused → `INVALID command=SNIFF;reason=...` naming what would allow it.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::time::Instant;

use super::admin::{how_to_allow, AdminCommand};
use super::Router;
use crate::event::ConnId;
use crate::replies;
use crate::stats::Stats;
use cd_wire::serialize;

/// Sniffing connections at once.
pub(crate) const MAX_SNIFFERS: usize = 8;
/// Bytes of copies one sniffer may get per routing round; copies beyond are lost.
pub(crate) const SNIFF_ROUND_MAX: usize = 4 * 1024 * 1024;
/// Loss is logged at most this often per sniffer.
pub(crate) const LOSS_LOG_EVERY: Duration = Duration::from_secs(5);

/// The sniffing side of a connection.
#[derive(Debug, Default)]
pub(crate) struct Sniffer {
    /// Copies lost since the last `SNIFF_LOST` the sniffer was sent.
    pub(crate) lost: u64,
    /// Copies lost since `SNIFF`.
    pub(crate) total_lost: u64,
    pub(crate) last_log: Option<Instant>,
}

impl Sniffer {
    /// Counts `n` lost copies; logs now and then.
    pub(crate) fn lose(&mut self, id: ConnId, n: u64, stats: &Stats) {
        self.lost += n;
        self.total_lost += n;
        Stats::add(&stats.sniff_lost, n);
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= LOSS_LOG_EVERY)
        {
            self.last_log = Some(now);
            if let Some(suppressed) = stats.logs.allow(crate::ratelog::Gate::SniffLost) {
                tracing::warn!(
                    conn = id,
                    lost = n,
                    total_lost = self.total_lost,
                    suppressed,
                    "sniffer falls behind: copies lost (routing is not slowed)"
                );
            }
        }
    }
}

impl Router {
    /// True once connection `id` sent an accepted `SNIFF`.
    pub(crate) fn is_sniffing(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| c.sniff.is_some())
    }

    /// `SNIFF` from connection `id`, with the message's `admin_token` if any.
    pub(crate) fn sniff_request(&mut self, id: ConnId, to: Option<&str>, token: Option<&str>) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let (kind, uid) = (c.kind, c.uid);
        let refusal = if c.sniff.is_some() {
            Some("this connection is already sniffing".to_owned())
        } else if c.name.is_some() {
            Some("SNIFF needs a dedicated connection that has not registered".to_owned())
        } else if let Err(why) = self.admin_verdict(id, AdminCommand::Sniff, token) {
            tracing::warn!(conn = id, ?kind, ?uid, reason = %why, "SNIFF refused");
            Some(format!(
                "SNIFF refused: {why} ({})",
                how_to_allow(AdminCommand::Sniff)
            ))
        } else if self.sniffers.len() >= MAX_SNIFFERS {
            Some(format!("too many sniffers (at most {MAX_SNIFFERS})"))
        } else {
            None
        };
        if let Some(reason) = refusal {
            self.refuse(id, to, Some("SNIFF"), &reason);
            return;
        }
        if let Some(c) = self.conns.get_mut(&id) {
            tracing::info!(conn = id, kind = ?c.kind, peer = %c.peer, "sniffer attached");
            c.sniff = Some(Sniffer::default());
            c.commands.clear();
            self.sniffers.push(id);
        }
        let m = replies::notification(&self.node, "SNIFFING")
            .with_param("max_round", SNIFF_ROUND_MAX.to_string());
        self.send(id, &m);
    }

    /// Appends a copy of one stamped line (with its `\n`) to every sniffer. Callers check
    /// `!self.sniffers.is_empty()` first: that branch is the whole cost when nobody sniffs.
    pub(crate) fn sniff_copy(&mut self, line: &[u8]) {
        for &id in &self.sniffers {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let Some(s) = c.sniff.as_mut() else {
                continue;
            };
            if c.pending.len() + line.len() > SNIFF_ROUND_MAX {
                s.lose(id, 1, &self.stats);
                continue;
            }
            if c.pending.is_empty() {
                self.dirty.push(id);
            }
            c.pending.extend_from_slice(line);
        }
    }

    /// Flushes one sniffer's round: prepends `SNIFF_LOST` when copies were lost since the
    /// last batch, `try_send`s, and on a full queue counts the batch as lost (no disconnect).
    pub(crate) fn flush_sniffer(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(s) = c.sniff.as_mut() else {
            return;
        };
        let n = c.pending.iter().filter(|&&b| b == b'\n').count() as u64;
        let mut batch = c.pending.split();
        let reported = s.lost;
        if reported > 0 {
            let m = replies::notification(&self.node, "SNIFF_LOST")
                .with_param("lost", reported.to_string())
                .with_param("total", s.total_lost.to_string());
            let mut with_loss = BytesMut::with_capacity(batch.len() + 80);
            if serialize(&m, &mut with_loss).is_ok() {
                with_loss.put_u8(b'\n');
                with_loss.extend_from_slice(&batch);
                batch = with_loss;
            }
        }
        match c.handles.try_send(batch.freeze()) {
            Ok(()) => {
                s.lost -= reported;
                Stats::add(&self.stats.sniff_copies, n);
            }
            Err(crate::conn::QueueError::Full) => {
                s.lose(id, n, &self.stats);
            }
            Err(crate::conn::QueueError::Closed) => {}
        }
    }
}
