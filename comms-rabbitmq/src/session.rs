//! One live connection to the broker: the connection, the confirm-mode publisher channel and a
//! channel for declarations. A [`Session`] is replaced, never repaired: when anything in it
//! breaks, the [`crate::link::Link`] opens a new one with a higher generation.

use std::collections::HashSet;
use std::sync::Mutex;

use comms_core::Result;
use lapin::options::{BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::PublisherConfirm;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use crate::error::amqp;
use crate::link::Identity;
use crate::options::RabbitOptions;
use crate::topology::{self, Names};

/// A connected session.
#[derive(Debug)]
pub(crate) struct Session {
    /// Increases by one on every reconnect.
    pub(crate) generation: u64,
    connection: Connection,
    publisher: Channel,
    /// Serialises publishes so that one transport's messages enter the channel in call order.
    publish_lock: tokio::sync::Mutex<()>,
    /// Declarations go through their own channel: a refused declaration (406) closes only it.
    admin: tokio::sync::Mutex<Option<Channel>>,
    /// Queues already declared in this session (the sender declares destinations once).
    declared: Mutex<HashSet<String>>,
}

impl Session {
    /// Connect, open the channels, declare the namespace's base topology and, when the
    /// transport has an identity, its instance and service queues.
    pub(crate) async fn open(
        opts: &RabbitOptions,
        names: &Names,
        generation: u64,
        identity: Option<Identity>,
    ) -> Result<Self> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("comms {} {}", opts.namespace, opts.node).into());
        let runtime =
            lapin::runtime::default_runtime().map_err(|e| amqp("start the lapin runtime", e))?;
        let connection =
            Connection::connect_with_config(&opts.amqp_url, props, opts.tls.to_lapin(), runtime)
                .await
                .map_err(|e| amqp(format!("connect to {}", redact(&opts.amqp_url)), e))?;
        let publisher = connection
            .create_channel()
            .await
            .map_err(|e| amqp("open the publisher channel", e))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| amqp("enable publisher confirms", e))?;
        let session = Self {
            generation,
            connection,
            publisher,
            publish_lock: tokio::sync::Mutex::new(()),
            admin: tokio::sync::Mutex::new(None),
            declared: Mutex::new(HashSet::new()),
        };
        {
            let admin = session.admin().await?;
            topology::declare_base(&admin, names).await?;
        }
        if let Some(id) = identity {
            session.declare_identity(opts, names, &id).await?;
        }
        Ok(session)
    }

    /// True while the connection and the publisher channel are usable.
    pub(crate) fn healthy(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }

    /// The connection (consumers open their own channels on it).
    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    /// A new channel on the connection for consuming (`what`: `consumer`, `sniffer`, named in
    /// errors), holding at most `prefetch` unacknowledged deliveries.
    pub(crate) async fn consuming_channel(&self, what: &str, prefetch: u16) -> Result<Channel> {
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| amqp(format!("open the {what} channel"), e))?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| amqp(format!("set the {what} prefetch"), e))?;
        Ok(channel)
    }

    /// The declaration channel, reopened when a refused declaration closed it.
    pub(crate) async fn admin(&self) -> Result<Channel> {
        let mut admin = self.admin.lock().await;
        if let Some(ch) = admin.as_ref().filter(|c| c.status().connected()) {
            return Ok(ch.clone());
        }
        let ch = self
            .connection
            .create_channel()
            .await
            .map_err(|e| amqp("open the declaration channel", e))?;
        *admin = Some(ch.clone());
        Ok(ch)
    }

    /// Declare `queue` with `keys` unless this session already did.
    pub(crate) async fn ensure_queue(
        &self,
        opts: &RabbitOptions,
        names: &Names,
        queue: &str,
        keys: &[String],
    ) -> Result<()> {
        if self.is_declared(queue) {
            return Ok(());
        }
        let admin = self.admin().await?;
        topology::declare_queue(&admin, opts, names, queue, keys).await?;
        self.mark_declared(queue);
        Ok(())
    }

    /// Declare the instance queue (with its broadcast bindings) and the service queue.
    pub(crate) async fn declare_identity(
        &self,
        opts: &RabbitOptions,
        names: &Names,
        id: &Identity,
    ) -> Result<()> {
        let admin = self.admin().await?;
        let instance = names.instance(&id.address);
        let keys = topology::instance_bindings(&id.address, &id.commands);
        topology::declare_queue(&admin, opts, names, &instance, &keys).await?;
        self.mark_declared(&instance);
        let service = names.service(id.address.service());
        let keys = [topology::service_key(id.address.service())];
        topology::declare_queue(&admin, opts, names, &service, &keys).await?;
        self.mark_declared(&service);
        Ok(())
    }

    /// Delete `queue` (an ephemeral endpoint's own, at close), messages and all.
    pub(crate) async fn delete_queue(&self, queue: &str) -> Result<()> {
        let admin = self.admin().await?;
        admin
            .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
            .await
            .map_err(|e| amqp(format!("delete queue {queue}"), e))?;
        self.forget(queue);
        Ok(())
    }

    /// Forget that `queue` was declared (it was deleted behind our back): declare it again.
    pub(crate) fn forget(&self, queue: &str) {
        self.declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(queue);
    }

    fn is_declared(&self, queue: &str) -> bool {
        self.declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(queue)
    }

    fn mark_declared(&self, queue: &str) {
        self.declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(queue.to_owned());
    }

    /// Publish on the confirm channel; the returned future resolves with the broker's confirm.
    pub(crate) async fn publish(
        &self,
        exchange: &str,
        key: &str,
        mandatory: bool,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<PublisherConfirm> {
        let _order = self.publish_lock.lock().await;
        self.publisher
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..BasicPublishOptions::default()
                },
                body,
                props,
            )
            .await
            .map_err(|e| amqp("publish", e))
    }

    /// Close the connection (best effort).
    pub(crate) async fn close(&self) {
        if self.connection.status().connected() {
            if let Err(e) = self.connection.close(200, "closing".into()).await {
                tracing::debug!(error = %e, "rabbitmq: closing the connection");
            }
        }
    }
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((cred, host)) => {
                let user = cred.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_the_password() {
        assert_eq!(
            super::redact("amqp://guest:secret@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(super::redact("amqp://h"), "amqp://h");
    }
}
