//! Benchmark support (feature `bench`, for `bench/benches/route.rs` only; not a stable API):
//! drives the real router, without sockets, so the bench measures the routing step itself:
//! head peek, lookup, stamping, batching and the hand-off to the receiver's queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{AdminRules, CacheLimits};
use crate::conn::Queued;
use crate::event::{ConnHandles, ConnKind, Event};
use crate::router::{Router, RouterConfig};
use crate::stats::Stats;

/// A router with two registered services, `probe_a` (sender) and `probe_b`.
#[doc(hidden)]
#[derive(Debug)]
pub struct RouteBench {
    router: Router,
    queues: Vec<mpsc::Receiver<Queued>>,
}

impl Default for RouteBench {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteBench {
    /// Node `vm`, services `probe_a` (connection 1) and `probe_b` (connection 2).
    pub fn new() -> Self {
        let cfg = RouterConfig {
            node: "vm".into(),
            my_address: "127.0.0.1:4040".into(),
            public_ip: None,
            max_line: 64 * 1024,
            admin: AdminRules::default(),
            cache: CacheLimits::default(),
            shutdown_grace: Duration::from_millis(1),
            allow_loopback_peers: false,
            plain_peers: None,
            peer_retry_max: Duration::from_secs(60),
        };
        let mut router = Router::new(cfg, Arc::new(Stats::default()), CancellationToken::new());
        let mut queues = Vec::new();
        for (id, name) in [(1, "probe_a"), (2, "probe_b")] {
            let (out, rx) = mpsc::channel(1 << 16);
            router.on_event(Event::Opened {
                id,
                kind: ConnKind::Tcp,
                peer: "bench".into(),
                uid: None,
                handles: ConnHandles::unbounded(out),
            });
            let reg = format!("REGISTER service={name};version=1\n");
            router.on_input(id, reg.as_bytes());
            queues.push(rx);
        }
        let mut b = Self { router, queues };
        b.drain();
        b
    }

    /// Routes one read chunk (whole `\n`-terminated lines) from `probe_a`, flushes, and
    /// returns the bytes handed to the receivers' queues.
    pub fn route_chunk(&mut self, chunk: &[u8]) -> usize {
        self.router.on_input(1, chunk);
        self.router.flush();
        self.drain()
    }

    fn drain(&mut self) -> usize {
        let mut n = 0;
        for q in &mut self.queues {
            while let Ok(b) = q.try_recv() {
                n += b.len();
            }
        }
        n
    }
}
