//! Shared helpers for the cross-backend suites in `tests/tests/`.
//!
//! Each backend provides a [`comms_conformance::Backend`]; the suites in `tests/tests/`
//! run the one conformance body against each of them: [`MemoryBackend`] (in-process) and
//! [`native::NativeBackend`] (real `commsd` processes, see [`native`] for how the binary is
//! found and how namespaces and slots map onto daemons).
//!
//! Processes, brokers, raw line clients, unique names and free ports come from
//! [`comms_test_support`] (one copy for every test crate and the bench); this crate keeps
//! what is particular to the suites (the backends and the fleet scenario), and the steps
//! several suites share ([`send_numbered`], [`check_dead_letters`]).

pub mod browser;
pub mod faulty;
pub mod fleet;
pub mod kafka;
pub mod metrics;
pub mod python;
pub mod rabbitmq;
pub mod readme;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use comms_conformance::Backend;
use comms_core::{Address, Capabilities, Result, Transport};

/// The workspace's root directory (README.md, docs/, the crates).
pub fn workspace_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The path of binary `name` of `package`, built up to date (see
/// [`comms_test_support::bins`]); panics with the reason (for test bodies).
pub fn binary(package: &str, name: &str) -> PathBuf {
    comms_test_support::binary(package, name).unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `command` from `from` to the instance at `to`, numbered `seq` (parameter `seq`);
/// panics on an error (for test bodies).
pub async fn send_numbered(from: &comms_core::Endpoint, command: &str, to: &Address, seq: usize) {
    let msg = comms_core::Message::new(command, to.clone())
        .unwrap_or_else(|e| panic!("{command}: {e}"))
        .with_param("seq", seq.to_string());
    from.send(msg)
        .await
        .unwrap_or_else(|e| panic!("sending {command} {seq}: {e}"));
}

/// Checks what a backend dead-lettered (`found`: key -> (body, reason)) against the hostile
/// inputs sent (key, body, a part of the reason): each one is there under its key, its body
/// unchanged, its reason naming the problem, and there is nothing else.
pub fn check_dead_letters<'a>(
    found: &BTreeMap<String, (Vec<u8>, Option<String>)>,
    hostile: impl IntoIterator<Item = (&'a str, &'a [u8], &'a str)>,
) {
    let mut n = 0;
    for (key, body, why) in hostile {
        n += 1;
        let (got, reason) = found
            .get(key)
            .unwrap_or_else(|| panic!("{key} not dead-lettered; found {:?}", found.keys()));
        assert!(got == body, "{key}: the dead-lettered body differs");
        let reason = reason.clone().unwrap_or_default();
        assert!(
            reason.contains(why),
            "{key}: reason {reason:?} lacks {why:?}"
        );
    }
    assert_eq!(found.len(), n, "{:?}", found.keys());
}

/// The in-memory backend: slot `n` is node `n{n}`, a namespace is a hub.
#[derive(Debug, Default)]
pub struct MemoryBackend;

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> String {
        "memory".into()
    }

    async fn connect(&self, namespace: &str, slot: usize) -> Result<Box<dyn Transport>> {
        comms::connect_url(&format!("memory://{namespace}?node=n{slot}")).await
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::new("memory");
        caps.queue_bound = comms_memory::DEFAULT_QUEUE_BOUND;
        caps.max_message_size = comms_memory::MAX_MESSAGE_SIZE;
        caps
    }

    fn restart_unsupported(&self) -> Option<String> {
        Some("in-process hub: there is no daemon or broker to kill; restart survival is proven on the native and broker backends".into())
    }

    async fn kill_and_restart(&self) -> Result<()> {
        Err(comms_core::Error::transport_msg(
            "memory",
            "nothing to restart",
            false,
        ))
    }
}
pub mod native;
pub mod native_cluster;
pub mod native_tls;
