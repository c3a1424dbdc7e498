//! What the cluster reports about itself: the quorum (`CLUSTER_STATUS`: `CLUSTER_UP` /
//! `CLUSTER_DOWN`, `CLUSTER_COMPLETE` / `CLUSTER_INCOMPLETE`), `STATUS` of a service hosted on
//! another node, and the cluster map (`CLUSTER_MAP`, a comms extension), all read off the
//! state in `state.rs`.

use cd_wire::WireMessage;

use crate::event::ConnId;
use crate::replies;
use crate::router::Router;

/// See the module docs.
/// The cluster as one daemon sees it (what `CLUSTER_MAP` answers): nodes reachable (and
/// stock peers), two-way links, `node:service` entries, `node=ip:port` peer addresses; each
/// list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ClusterMap {
    /// This daemon's node name.
    pub node: String,
    pub nodes: Vec<String>,
    /// Each link once, as (smaller name, larger name).
    pub links: Vec<(String, String)>,
    pub services: Vec<String>,
    pub addresses: Vec<String>,
}

impl Router {
    /// (up, complete, total): quorum = ⌊total/2⌋+1 of the nodes known (docs/PROTOCOL.md §2.4),
    /// counting the nodes **reachable** (comms routes through intermediates, where the
    /// stock daemon needs a direct link to each).
    pub(crate) fn cluster_status(&self) -> (bool, bool, usize) {
        let stock_links = self
            .cluster
            .links
            .len()
            .saturating_sub(self.comms_links().len());
        let count = self.cluster.routes.reachable() + stock_links;
        let total = self
            .cluster
            .routes
            .known()
            .max(self.cluster.neighbors.len() + 1)
            .max(count)
            .max(1);
        (count > total / 2, count >= total, total)
    }

    pub(crate) fn status_msgs(
        &self,
        up: bool,
        complete: bool,
        total: usize,
    ) -> (WireMessage, WireMessage) {
        let a = replies::notification(&self.node, if up { "CLUSTER_UP" } else { "CLUSTER_DOWN" })
            .with_param("neighbors_count", total.to_string());
        let b = replies::notification(
            &self.node,
            if complete {
                "CLUSTER_COMPLETE"
            } else {
                "CLUSTER_INCOMPLETE"
            },
        )
        .with_param("neighbors_count", total.to_string());
        (a, b)
    }

    /// `CLUSTER_STATUS`: both answers to the requester, whatever it declared.
    pub(crate) fn cluster_status_request(&mut self, id: ConnId) {
        let (up, complete, total) = self.cluster_status();
        let (mut a, mut b) = self.status_msgs(up, complete, total);
        // The stock daemon's answer has the broadcast form: `<NODE:communicatord ./CLUSTER_UP`.
        for m in [&mut a, &mut b] {
            m.service = ".".to_owned();
        }
        self.send(id, &a);
        self.send(id, &b);
    }

    /// `STATUS` for a service not live here but hosted on a reachable node (the nearest):
    /// `STATUS cache=no;server_name=<node>;service=<svc>;status=up` (no `up_since`: only the
    /// hosting daemon knows it).
    pub(crate) fn remote_status(&self, svc: &str) -> Option<WireMessage> {
        let node = self.cluster.routes.nearest_with(svc)?;
        Some(
            replies::notification(&self.node, "STATUS")
                .with_param("cache", "no")
                .with_param("server_name", node)
                .with_param("service", svc)
                .with_param("status", "up"),
        )
    }

    /// `CLUSTER_MAP` (comms extension): the reachable nodes, their links and services.
    pub(crate) fn cluster_map_request(&mut self, id: ConnId, to: Option<&str>) {
        let map = self.cluster_map();
        let links: Vec<String> = map.links.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        let m = replies::reply(&self.node, to, "CLUSTER_MAP")
            .with_param("addresses", map.addresses.join(","))
            .with_param("links", links.join(","))
            .with_param("nodes", map.nodes.join(","))
            .with_param("server_name", &*self.node)
            .with_param("services", map.services.join(","));
        self.send(id, &m);
    }

    /// The cluster as `CLUSTER_MAP` draws it (also for [`crate::DaemonHandle::cluster_map`]).
    pub(crate) fn cluster_map(&self) -> ClusterMap {
        let routes = &self.cluster.routes;
        let mut nodes: Vec<String> = Vec::new();
        let mut services: Vec<String> = Vec::new();
        let mut addresses: Vec<String> = Vec::new();
        for (n, s) in routes.reachable_nodes() {
            nodes.push(n.to_owned());
            if !s.address.is_empty() {
                addresses.push(format!("{n}={}", s.address));
            }
            for svc in &s.services {
                services.push(format!("{n}:{svc}"));
            }
        }
        let mut links: Vec<(String, String)> = routes.edges();
        for (name, cid) in &self.cluster.links {
            let comms = self
                .conns
                .get(cid)
                .and_then(|c| c.link.as_ref())
                .is_some_and(|l| l.comms);
            if !comms {
                nodes.push(name.to_string());
                let (a, b) = if **name < *self.node {
                    (name.to_string(), self.node.to_string())
                } else {
                    (self.node.to_string(), name.to_string())
                };
                links.push((a, b));
            }
        }
        // A single node announces nothing: its services are the ones registered here.
        let prefix = format!("{}:", self.node);
        if !services.iter().any(|s| s.starts_with(&prefix)) {
            services.extend(self.names.keys().map(|svc| format!("{prefix}{svc}")));
        }
        if !nodes.iter().any(|n| **n == *self.node) {
            nodes.push(self.node.to_string());
        }
        nodes.sort();
        links.sort();
        services.sort();
        ClusterMap {
            node: self.node.to_string(),
            nodes,
            links,
            services,
            addresses,
        }
    }
}
