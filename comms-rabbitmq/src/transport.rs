//! [`RabbitTransport`]: the contract over the link, publisher and consumer.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use comms_core::backend::{Binding, WireFields};
use comms_core::{
    Address, Advertisement, Capabilities, Config, Connect, Delivery, Destination, Error, Inbox,
    Message, Receipt, Result, Transport,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::error::BACKEND;
use crate::link::{Identity, Link};
use crate::options::RabbitOptions;
use crate::pipeline::Pipeline;
use crate::{consumer, sniff, topology};

/// Largest payload accepted ([`Message::payload_size`]); RabbitMQ's own limit is far higher.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// The RabbitMQ transport.
#[derive(Debug)]
pub struct RabbitTransport {
    link: Link,
    binding: Binding,
    cancel: CancellationToken,
    tasks: TaskTracker,
    sends: TaskTracker,
    pipeline: Pipeline,
    _stop_on_drop: DropGuard,
}

/// How long an ephemeral endpoint's close may spend deleting its queues.
const EPHEMERAL_CLEANUP: std::time::Duration = std::time::Duration::from_secs(2);

/// Fails (retryable) when the broker cannot be reached.
#[async_trait]
impl Connect for RabbitTransport {
    async fn connect(config: &Config) -> Result<Self> {
        Self::with_options(RabbitOptions::from_config(config)?).await
    }
}

impl RabbitTransport {
    /// Connect with explicit options. Fails (retryable) when the broker cannot be reached.
    pub async fn with_options(opts: RabbitOptions) -> Result<Self> {
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let binding = Binding::new(opts.node.clone());
        let link = Link::start(Arc::new(opts), cancel.clone(), &tasks).await?;
        let sends = TaskTracker::new();
        let pipeline = Pipeline::start(
            link.clone(),
            sends.clone(),
            &tasks,
            cancel.clone(),
            binding.stats().clone(),
        );
        Ok(Self {
            link,
            binding,
            _stop_on_drop: cancel.clone().drop_guard(),
            cancel,
            tasks,
            sends,
            pipeline,
        })
    }

    /// The options in use.
    pub fn options(&self) -> &RabbitOptions {
        self.link.opts()
    }

    /// Declare (first time) or re-bind (commands changed) this transport's queues.
    async fn apply_identity(&self, wanted: Identity) -> Result<()> {
        let previous = self.link.identity();
        if previous.as_ref() == Some(&wanted) {
            return Ok(());
        }
        // Set first, so that a reconnect happening meanwhile restores the new identity.
        self.link.set_identity(Some(wanted.clone()));
        let declared = async {
            let deadline = Instant::now() + self.link.opts().send_timeout;
            let session = self.link.session_until(deadline).await?;
            session
                .declare_identity(self.link.opts(), self.link.names(), &wanted)
                .await?;
            Ok::<_, Error>(session)
        };
        let session = match declared.await {
            Ok(s) => s,
            Err(e) => {
                self.link.set_identity(previous);
                return Err(e);
            }
        };
        if let Some(prev) = previous {
            let old: BTreeSet<String> = topology::instance_bindings(&prev.address, &prev.commands)
                .into_iter()
                .collect();
            let new: BTreeSet<String> =
                topology::instance_bindings(&wanted.address, &wanted.commands)
                    .into_iter()
                    .collect();
            let admin = session.admin().await?;
            let queue = self.link.names().instance(&wanted.address);
            for key in old.difference(&new) {
                topology::unbind(&admin, self.link.names(), &queue, key).await?;
            }
        }
        Ok(())
    }

    /// An ephemeral endpoint's close: its instance and service queues go (bounded wait; a
    /// failure is logged, the queues then stay as after a crash).
    async fn delete_own_queues(&self) {
        let Some(address) = self.binding.address() else {
            return;
        };
        let names = self.link.names();
        let queues = [names.instance(&address), names.service(address.service())];
        let deleted = async {
            let session = self
                .link
                .session_until(Instant::now() + EPHEMERAL_CLEANUP)
                .await?;
            for queue in &queues {
                session.delete_queue(queue).await?;
            }
            Ok::<_, Error>(())
        };
        match tokio::time::timeout(EPHEMERAL_CLEANUP, deleted).await {
            Ok(Ok(())) => tracing::debug!(?queues, "rabbitmq: ephemeral queues deleted"),
            Ok(Err(e)) => tracing::warn!(
                ?queues,
                "rabbitmq: could not delete the ephemeral queues: {e}"
            ),
            Err(_) => tracing::warn!(?queues, "rabbitmq: deleting the ephemeral queues timed out"),
        }
    }

    /// Publish through the pipeline and wait for the confirm.
    async fn publish_confirmed(&self, msg: &Message) -> Result<()> {
        self.pipeline.submit(msg).await?.await
    }
}

#[async_trait]
impl Transport for RabbitTransport {
    async fn advertise(&self, ad: &Advertisement) -> Result<()> {
        self.binding.bind(ad)?;
        if !ad.ttl.is_zero() {
            self.apply_identity(Identity {
                address: ad.address.clone(),
                commands: ad.commands.clone(),
            })
            .await?;
        }
        let mut msg = ad.to_message()?;
        msg.set_from(Some(ad.address.clone()));
        self.publish_confirmed(&msg).await
    }

    async fn listen(&self) -> Result<Inbox> {
        let address = self.binding.start_listening()?;
        let (tx, rx) = mpsc::channel(usize::from(self.link.opts().prefetch));
        self.tasks.spawn(consumer::run(
            self.link.clone(),
            address,
            MAX_MESSAGE_SIZE * 2,
            tx,
            self.cancel.clone(),
        ));
        Ok(Inbox::new(rx))
    }

    async fn send(&self, msg: Message) -> Result<()> {
        let msg = self.binding.prepare_send(msg, MAX_MESSAGE_SIZE)?;
        self.publish_confirmed(&msg).await
    }

    async fn submit(&self, msg: Message) -> Result<Receipt> {
        let msg = self.binding.prepare_send(msg, MAX_MESSAGE_SIZE)?;
        self.pipeline.submit(&msg).await
    }

    async fn forward(&self, delivery: Delivery, to: Destination) -> Result<()> {
        let hop_limit = self.link.opts().hop_limit;
        self.binding
            .forward(delivery, to, hop_limit, |fwd| async move {
                self.publish_confirmed(&fwd).await
            })
            .await
    }

    async fn close(&self) -> Result<()> {
        if !self.binding.close() {
            return Ok(());
        }
        // Sends already accepted by a caller finish (confirmed) before the connection goes.
        self.sends.close();
        let flushed = tokio::time::timeout(self.link.opts().send_timeout, self.sends.wait()).await;
        if self.link.opts().ephemeral {
            self.delete_own_queues().await;
        }
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        match flushed {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::transport_msg(
                BACKEND,
                "close: sends still unconfirmed after send_timeout",
                true,
            )),
        }
    }

    fn capabilities(&self) -> Capabilities {
        capabilities(self.link.opts())
    }

    fn node(&self) -> String {
        self.link.opts().node.clone()
    }

    fn local_address(&self) -> Option<Address> {
        self.binding.address()
    }

    fn stats(&self) -> Option<std::sync::Arc<comms_core::TransportStats>> {
        Some(self.binding.stats().clone())
    }

    /// Attempt counts stay on this host ([`RabbitOptions::state_dir`]).
    fn state_dir(&self) -> Option<std::path::PathBuf> {
        self.link.opts().state_dir.clone()
    }

    /// The queue `comms.{ns}.dead-letters` ([`crate::dead_letters`]).
    fn dead_letters(&self) -> Result<Arc<dyn comms_core::DeadLetters>> {
        Ok(Arc::new(crate::dead_letters::QueueDeadLetters::new(
            self.link.clone(),
        )))
    }

    async fn sniff(&self) -> Result<Inbox> {
        self.binding.check_open()?;
        let deadline = Instant::now() + self.link.opts().send_timeout;
        let session = self.link.session_until(deadline).await?;
        let consumer = sniff::subscribe(&self.link, &session).await?;
        let (tx, rx) = mpsc::channel(usize::from(self.link.opts().prefetch));
        self.tasks.spawn(sniff::run(
            self.link.clone(),
            consumer,
            session.generation,
            MAX_MESSAGE_SIZE * 2,
            tx,
            self.cancel.clone(),
        ));
        Ok(Inbox::new(rx))
    }
}

/// The capabilities of transports built with `opts`.
pub fn capabilities(opts: &RabbitOptions) -> Capabilities {
    let mut caps = Capabilities::new(BACKEND);
    caps.max_message_size = MAX_MESSAGE_SIZE;
    caps.queue_bound = opts.queue_bound;
    caps.at_most_once = true;
    caps.namespaces = true;
    caps.survives_restart = true;
    caps.hop_limit = opts.hop_limit;
    caps
}
