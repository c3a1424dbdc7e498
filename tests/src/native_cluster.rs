//! The native backend on a **cluster**: per namespace, a ring of four real `commsd`
//! processes peering over 127.0.0.1, and endpoints spread over three of them.
//!
//! Ring (names sorted `m < n < x < y`): `n – x – m – y – n`. Slots: 0 → `n`, 1 → `x`,
//! 2 → `y` (slot k > 2 → slot k mod 3); `m` holds no endpoint. So:
//! - senders (slot 0) reach receivers at slots 1 and 2 over one direct link;
//! - slot 1 → slot 2 crosses an **intermediate** daemon: `x` and `y` are two hops apart
//!   through `n` or `m`, and ties go to the smaller name, `m`;
//! - two instances of one service (slots 1 and 2) are equally near to slot 0: commsd gives
//!   a sender's successive streams turns over them, so `service_anycast` (one sender, both
//!   instances must work) runs, and `lookup` runs with two live instances of one service on
//!   two daemons;
//! - **kill_and_restart** SIGKILLs `m`, the intermediate, in every ring and starts it again
//!   on the same socket and peer port; it returns once every ring is whole again (every
//!   daemon's `CLUSTER_MAP` shows four links). Meanwhile slot 1 → 2 traffic re-routes
//!   through `n`.
//! - Cost: the suite uses one namespace per case, so a full run starts about 25 rings (100
//!   idle-most-of-the-time daemons); peers redial after 0 s then every 0.2 s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use comms_conformance::Backend;
use comms_core::{Capabilities, Error, Result, Transport};
use comms_test_support::line::{self, LineClient};
use comms_test_support::{loopback_any, Commsd, CommsdSpec};
use tokio::sync::Mutex;

use crate::native::{for_namespace, MAX_LINE, TEST_QUERY};

/// Node suffixes in ring order: n – x – m – y – n.
const RING: [&str; 4] = ["n", "x", "m", "y"];
/// Ring positions of slots 0, 1, 2.
const SLOTS: [usize; 3] = [0, 1, 3];
/// The intermediate daemon killed by `kill_and_restart`.
const VICTIM: usize = 2;
/// Bound on starting a daemon or the ring converging.
const START: Duration = Duration::from_secs(30);

fn err(what: impl std::fmt::Display) -> Error {
    Error::transport_msg("native-cluster", what.to_string(), false)
}

/// One ring member.
#[derive(Debug)]
struct Member {
    name: String,
    socket: PathBuf,
    daemon: Commsd,
}

impl Member {
    async fn start(name: &str, socket: &Path, neighbors: &[SocketAddr]) -> Result<Self> {
        let daemon = CommsdSpec::find()
            .map_err(err)?
            .name(name)
            .unix_only(socket)
            .max_line(MAX_LINE)
            .args(["--peer-retry-secs", "0,0.2"])
            .peers(loopback_any(), neighbors)
            .timeout(START)
            .start()
            .await
            .map_err(err)?;
        Ok(Self {
            name: name.to_owned(),
            socket: socket.to_path_buf(),
            daemon,
        })
    }

    fn peer(&self) -> Result<SocketAddr> {
        self.daemon
            .listeners()
            .peer
            .ok_or_else(|| err("commsd announced no peer listener"))
    }

    fn url(&self) -> String {
        format!(
            "cd://{}?node={}&{TEST_QUERY}",
            self.socket.display(),
            self.name
        )
    }

    /// `CLUSTER_MAP`'s `links` count, asked over the Unix socket.
    async fn links(&self) -> Result<usize> {
        let mut c = LineClient::unix(&self.socket)
            .await
            .map_err(|e| err(format!("connect {}: {e}", self.socket.display())))?
            .with_wait(START);
        c.send("CLUSTER_MAP")
            .await
            .map_err(|e| err(format!("write: {e}")))?;
        let line = c
            .line()
            .await
            .map_err(|e| err(format!("no CLUSTER_MAP answer: {e}")))?;
        Ok(line::list(&line, "links").len())
    }
}

/// One ring per namespace.
#[derive(Debug)]
struct Ring {
    members: Vec<Member>,
}

impl Ring {
    async fn start(dir: &Path, tag: &str, index: usize) -> Result<Self> {
        let mut members: Vec<Member> = Vec::new();
        for (i, suffix) in RING.iter().enumerate() {
            let mut neighbors = Vec::new();
            if let Some(prev) = members.last() {
                neighbors.push(prev.peer()?);
            }
            if i == RING.len() - 1 {
                neighbors.push(members[0].peer()?);
            }
            let name = format!("{tag}{suffix}");
            let socket = dir.join(format!("{index}-{name}.sock"));
            members.push(Member::start(&name, &socket, &neighbors).await?);
        }
        let ring = Self { members };
        ring.converged().await?;
        Ok(ring)
    }

    /// Waits until every member sees the four links.
    async fn converged(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + START;
        for m in &self.members {
            while m.links().await? != RING.len() {
                if tokio::time::Instant::now() > deadline {
                    return Err(err(format!(
                        "{}: the ring did not form within {START:?}",
                        m.name
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    async fn kill_victim(&mut self) -> Result<()> {
        self.members[VICTIM].daemon.kill().await.map_err(err)
    }

    /// Same name, socket, peer port and neighbours.
    async fn restart_victim(&mut self) -> Result<()> {
        self.members[VICTIM].daemon.restart().await.map_err(err)
    }
}

/// The native backend on a ring of four daemons per namespace (see the module docs).
#[derive(Debug)]
pub struct NativeClusterBackend {
    dir: tempfile::TempDir,
    rings: Mutex<HashMap<String, Ring>>,
}

impl NativeClusterBackend {
    /// A backend with its own temp directory for sockets.
    pub fn new() -> Result<Self> {
        Ok(Self {
            dir: crate::native::temp_dir("comms-cluster-")?,
            rings: Mutex::new(HashMap::new()),
        })
    }
}

#[async_trait]
impl Backend for NativeClusterBackend {
    fn name(&self) -> String {
        "native-cluster".into()
    }

    async fn connect(&self, namespace: &str, slot: usize) -> Result<Box<dyn Transport>> {
        let url = {
            let mut rings = self.rings.lock().await;
            // The same node names in every ring (rings never peer with each other), so an
            // address means the same slot in every namespace, as on one daemon.
            let ring = for_namespace(&mut rings, namespace, |n| async move {
                let tag = comms_test_support::names::process_name("k");
                Ring::start(self.dir.path(), &tag, n).await
            })
            .await?;
            ring.members[SLOTS[slot % SLOTS.len()]].url()
        };
        comms::connect_url(&url).await
    }

    fn capabilities(&self) -> Capabilities {
        // Namespaces are separate rings.
        crate::native::test_capabilities(&format!("cd:///x.sock?node=n&{TEST_QUERY}"))
    }

    fn restart_unsupported(&self) -> Option<String> {
        None
    }

    async fn kill_and_restart(&self) -> Result<()> {
        // Every ring at once (one per namespace): kill all victims, start them all, then
        // wait for each ring to be whole (they heal concurrently).
        let mut rings = self.rings.lock().await;
        for r in rings.values_mut() {
            r.kill_victim().await?;
        }
        for r in rings.values_mut() {
            r.restart_victim().await?;
        }
        for r in rings.values() {
            r.converged().await?;
        }
        Ok(())
    }
}
