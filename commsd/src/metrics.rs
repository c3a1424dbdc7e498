//! The daemon's Prometheus metrics: [`DaemonCollector`] reads [`Stats`] (counters the router
//! and listeners already keep, and the levels the router publishes after each round) at each
//! scrape, so metrics cost the routing path nothing. Served by `comms-ops` (`commsd --http`,
//! `server --http` for the embedded daemon). docs/OPERATIONS.md lists and explains them.

use std::sync::Arc;

use comms_ops::encode::{counter, gauge};
use comms_ops::prometheus_client::collector::Collector;
use comms_ops::prometheus_client::encoding::DescriptorEncoder;

use crate::stats::{Stats, CONNECTION_KINDS};

/// The daemon's metrics; register with `registry.register_collector(Box::new(..))`.
#[derive(Debug)]
pub struct DaemonCollector {
    stats: Arc<Stats>,
}

impl DaemonCollector {
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        Self { stats }
    }
}

impl Collector for DaemonCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.stats.snapshot();
        let l = self.stats.levels();
        let none: &[(&str, &str)] = &[];
        counter(
            &mut e,
            "commsd_lines_delivered",
            "Lines delivered to a local service (one per destination).",
            &[(none, s.lines_routed)],
        )?;
        counter(
            &mut e,
            "commsd_lines_forwarded",
            "Lines sent to a peer daemon (unicast hops and broadcast copies).",
            &[(none, s.lines_forwarded)],
        )?;
        let udp_unroutable = s
            .udp_dropped
            .saturating_sub(s.udp_oversize + s.udp_unsigned + s.udp_unparseable);
        let dropped: [(&str, u64); 14] = [
            ("invalid", s.invalid_lines),
            ("other_server", s.dropped_other_server),
            ("cache_expired", s.cache_expired),
            ("cache_full", s.cache_refused),
            ("udp_oversize", s.udp_oversize),
            ("udp_unsigned", s.udp_unsigned),
            ("udp_unparseable", s.udp_unparseable),
            ("udp_unroutable", udp_unroutable),
            ("sniff_queue_full", s.sniff_lost),
            ("broadcast_duplicate", s.broadcast_duplicates),
            ("forged_origin", s.forged_origins),
            ("node_state_refused", s.node_states_refused),
            ("node_state_throttled", s.node_states_throttled),
            ("peer_plain_refused", s.peer_plain_refused),
        ];
        let reasons: Vec<[(&str, &str); 1]> =
            dropped.iter().map(|(r, _)| [("reason", *r)]).collect();
        let samples: Vec<(&[(&str, &str)], u64)> = reasons
            .iter()
            .zip(dropped.iter())
            .map(|(labels, (_, v))| (&labels[..], *v))
            .collect();
        counter(
            &mut e,
            "commsd_lines_dropped",
            "Lines and datagrams not routed, by reason.",
            &samples,
        )?;
        counter(
            &mut e,
            "commsd_cached",
            "Messages kept in the cache for a service not (yet) registered.",
            &[(none, s.cached)],
        )?;
        counter(
            &mut e,
            "commsd_udp_received",
            "UDP datagrams received.",
            &[(none, s.udp_received)],
        )?;
        counter(
            &mut e,
            "commsd_connections_accepted",
            "Stream connections accepted.",
            &[(none, s.connections_accepted)],
        )?;
        counter(
            &mut e,
            "commsd_connections_refused",
            "Stream connections refused (over max_connections).",
            &[(none, s.connections_refused)],
        )?;
        counter(
            &mut e,
            "commsd_idle_connections_closed",
            "Connections closed for sending no valid line within first_line_timeout.",
            &[(none, s.idle_connections_closed)],
        )?;
        counter(
            &mut e,
            "commsd_slow_consumers_disconnected",
            "Connections closed because their outbound queue was full.",
            &[(none, s.slow_consumers_disconnected)],
        )?;
        counter(
            &mut e,
            "commsd_tls_handshakes",
            "TLS handshakes on the secure listener, by result.",
            &[
                (&[("result", "ok")], s.tls_handshakes),
                (&[("result", "failed")], s.tls_handshake_failures),
            ],
        )?;
        counter(
            &mut e,
            "commsd_sniff_copies",
            "Copies of routed lines handed to sniffers.",
            &[(none, s.sniff_copies)],
        )?;
        let kinds: Vec<[(&str, &str); 1]> =
            CONNECTION_KINDS.iter().map(|k| [("kind", *k)]).collect();
        let conns: Vec<(&[(&str, &str)], i64)> = kinds
            .iter()
            .zip(l.connections)
            .map(|(labels, n)| (&labels[..], n as i64))
            .collect();
        gauge(
            &mut e,
            "commsd_connections",
            "Open stream connections, by listener kind.",
            &conns,
        )?;
        gauge(
            &mut e,
            "commsd_services",
            "Registered services.",
            &[(none, l.services as i64)],
        )?;
        gauge(
            &mut e,
            "commsd_queue_bytes",
            "Bytes queued for the connections' writers (the memory budget in use).",
            &[(none, l.queue_bytes as i64)],
        )?;
        gauge(
            &mut e,
            "commsd_cache_entries",
            "Messages in the cache.",
            &[(none, l.cache_entries as i64)],
        )?;
        gauge(
            &mut e,
            "commsd_peer_links",
            "Up links to peer daemons.",
            &[(none, l.peer_links as i64)],
        )?;
        gauge(
            &mut e,
            "commsd_nodes_reachable",
            "Cluster nodes reachable, this one included.",
            &[(none, l.nodes_reachable as i64)],
        )?;
        if l.routes_computed_ms > 0 {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let age = now_ms.saturating_sub(l.routes_computed_ms) / 1000;
            gauge(&mut e, "commsd_link_state_age_seconds", "Seconds since the cluster routes were last computed from the link-state announcements.", &[(none, age as i64)])?;
        }
        Ok(())
    }
}
