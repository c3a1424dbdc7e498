//! Shared helpers for the cross-backend suites in `tests/tests/`.
//!
//! Each backend provides a [`comms_core::conformance::Backend`]; the suites in `tests/tests/`
//! run the one conformance body against each of them: [`MemoryBackend`] (in-process) and
//! [`native::NativeBackend`] (real `commsd` processes, see [`native`] for how the binary is
//! found and how namespaces and slots map onto daemons).

pub mod bins;
pub mod faulty;
pub mod fleet;
pub mod kafka;
pub mod rabbitmq;

use async_trait::async_trait;
use comms_core::conformance::Backend;
use comms_core::{Capabilities, Result, Transport};

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
        caps.queue_bound = comms_core::memory::DEFAULT_QUEUE_BOUND;
        caps.max_message_size = comms_core::memory::MAX_MESSAGE_SIZE;
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
