//! Routed lines held until the routes catch up. Further `impl Router`.
//!
//! A comms peer may only relay lines whose origin node is reachable through it (`trust.rs`).
//! The routes that say so can lag the lines by a moment: a relay forwards what it holds as
//! soon as its link comes up, and the announcement that links the origin in may arrive just
//! after (through another peer), or arrive first but wait out the pause between two route
//! computations. Refusing such a line would lose a message the cluster was about to route.
//!
//! So a line whose only fault is an origin not reachable *yet* is held, in arrival order, and
//! checked again after each route computation: routed once the origin is reachable, refused
//! as forged (`forged_origins`) once [`HOLD`] has passed. Later lines from the same link
//! queue behind it (per-link order is kept). At most [`MAX_HELD`] lines and
//! [`MAX_HELD_BYTES`] are held; beyond, a line is refused at once, so a hostile peer gains
//! nothing but a short delay before its forgeries are dropped.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::event::ConnId;
use crate::router::Router;
use cd_wire::{peek_route, RouteHead};

/// How long a line may wait for its origin to become reachable.
pub(crate) const HOLD: Duration = Duration::from_secs(2);
/// Most lines held at once.
pub(crate) const MAX_HELD: usize = 4096;
/// Most bytes held at once.
pub(crate) const MAX_HELD_BYTES: usize = 4 << 20;

/// One held line: the link it came from, the line (without `\n`), its last moment.
#[derive(Debug)]
struct HeldLine {
    conn: ConnId,
    line: Bytes,
    until: Instant,
}

/// The held lines, oldest first (so the first one's deadline is the earliest).
#[derive(Debug, Default)]
pub(crate) struct Held {
    lines: VecDeque<HeldLine>,
    bytes: usize,
}

impl Held {
    /// Whether a line of link `conn` is held (later ones must queue behind it).
    pub(crate) fn has_from(&self, conn: ConnId) -> bool {
        !self.lines.is_empty() && self.lines.iter().any(|h| h.conn == conn)
    }

    /// When the oldest held line is due to be refused.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.lines.front().map(|h| h.until)
    }

    /// Panics unless the held lines are within [`MAX_HELD`] / [`MAX_HELD_BYTES`] and their
    /// byte count is right (the fuzz harness's check).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn assert_bounded(&self) {
        let bytes: usize = self.lines.iter().map(|h| h.line.len()).sum();
        assert_eq!(bytes, self.bytes, "held bytes miscounted");
        assert!(
            self.lines.len() <= MAX_HELD && bytes <= MAX_HELD_BYTES,
            "{} lines, {bytes} bytes held",
            self.lines.len()
        );
    }

    fn push(&mut self, h: HeldLine) {
        self.bytes += h.line.len();
        self.lines.push_back(h);
    }

    fn take(&mut self) -> VecDeque<HeldLine> {
        self.bytes = 0;
        std::mem::take(&mut self.lines)
    }
}

impl Router {
    /// Holds routed line `line` (`head`) from peer link `id`; refused at once when the
    /// bound is reached.
    pub(crate) fn hold(&mut self, id: ConnId, head: &RouteHead<'_>, line: &[u8]) {
        let held = &mut self.cluster.held;
        if held.lines.len() >= MAX_HELD || held.bytes + line.len() > MAX_HELD_BYTES {
            self.refuse_origin(id, head, "origin not reachable and too many lines held");
            return;
        }
        held.push(HeldLine {
            conn: id,
            line: Bytes::copy_from_slice(line),
            until: Instant::now() + HOLD,
        });
    }

    /// Checks the held lines again (after a route computation, or when the oldest is due):
    /// routes those whose origin is now reachable, refuses those past [`HOLD`], keeps the
    /// rest, and everything behind a kept line of the same link.
    pub(crate) fn release_held(&mut self) {
        if self.cluster.held.lines.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut keep = Held::default();
        let mut blocked: HashSet<ConnId> = HashSet::new();
        for h in self.cluster.held.take() {
            if !self.conns.contains_key(&h.conn) {
                continue;
            }
            if blocked.contains(&h.conn) {
                keep.push(h);
                continue;
            }
            let Ok(head) = peek_route(&h.line) else {
                continue;
            };
            match self.origin_problem(h.conn, &head) {
                None => self.routed_from_peer(h.conn, &head, &h.line),
                Some((_, true)) if h.until > now => {
                    blocked.insert(h.conn);
                    keep.push(HeldLine {
                        conn: h.conn,
                        line: h.line.clone(),
                        until: h.until,
                    });
                }
                Some((why, _)) => self.refuse_origin(h.conn, &head, why),
            }
        }
        // Lines held meanwhile (none unless routing re-entered) go after the kept ones.
        for h in self.cluster.held.take() {
            keep.push(h);
        }
        self.cluster.held = keep;
    }
}
