//! Publishing with confirms: `send` returns `Ok` only once the broker confirmed the message.
//!
//! - Persistent (`delivery_mode = 2`) for at-least-once, transient and unconfirmed for
//!   at-most-once.
//! - `mandatory` for instance and service destinations: a return (no queue bound) is an error.
//!   The sender declares the destination queue first (idempotent, once per session), so a
//!   message to a service with no live instance waits in the service queue; after a return it
//!   declares the queue once more and retries once (the queue may have been deleted).
//! - A nack means a full queue (`x-overflow = reject-publish`): the publish is retried with a
//!   growing pause until `send_timeout`, then [`Error::Backpressure`].
//! - A lost connection or channel while publishing or waiting for the confirm: the message is
//!   published again, same id, on the next session (until `send_timeout`, then a retryable
//!   error). The receiver's dedup window absorbs the copy the broker may already hold.
//! - TTL: the message's own TTL (or `default_ttl`) becomes the AMQP `expiration`.

use std::time::Duration;

use comms_core::{envelope, Address, DeliveryMode, Destination, Error, Message, MessageId, Result};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use lapin::{Confirmation, PublisherConfirm};
use tokio::time::Instant;

use crate::error::BACKEND;
use crate::link::Link;
use crate::session::Session;
use crate::topology;

const FULL_PAUSE_MIN: Duration = Duration::from_millis(20);
const FULL_PAUSE_MAX: Duration = Duration::from_millis(500);
const BROKEN_PAUSE: Duration = Duration::from_millis(50);

/// A message ready to publish: encoded once, published as often as it takes.
pub(crate) struct Outgoing {
    body: Vec<u8>,
    key: String,
    mandatory: bool,
    at_most_once: bool,
    props: BasicProperties,
    /// The destination queue and its binding key (unicast): declared before publishing.
    destination: Option<(String, String)>,
    id: MessageId,
    to: Destination,
}

impl Outgoing {
    /// Encode `msg` (whose `from` is already stamped).
    pub(crate) fn new(link: &Link, msg: &Message) -> Result<Self> {
        let from = msg.from().cloned().ok_or(Error::NotAdvertised)?;
        let body = envelope::encode(msg)?;
        let key = match (&msg.to, msg.command.as_str()) {
            (_, comms_core::commands::ADVERTISE) => topology::advertise_key(&from),
            (to, command) => topology::routing_key(&from, to, command),
        };
        let names = link.names();
        let at_most_once = msg.mode == DeliveryMode::AtMostOnce;
        let destination = match &msg.to {
            Destination::Instance(a) => Some((names.instance(a), topology::instance_key(a))),
            Destination::Service(s) => Some((names.service(s), topology::service_key(s))),
            Destination::Broadcast(_) => None,
        };
        Ok(Self {
            body,
            key,
            mandatory: !matches!(msg.to, Destination::Broadcast(_)) && !at_most_once,
            at_most_once,
            props: properties(msg, &from, link.opts().default_ttl),
            destination,
            id: msg.id().clone(),
            to: msg.to.clone(),
        })
    }

    /// An at-most-once message: published once, never confirmed.
    pub(crate) fn at_most_once(&self) -> bool {
        self.at_most_once
    }

    /// Declare the destination queue (once per session) and publish: the confirm to await,
    /// or `None` for an at-most-once message.
    pub(crate) async fn publish(
        &self,
        link: &Link,
        session: &Session,
    ) -> Result<Option<PublisherConfirm>> {
        if let Some((queue, key)) = &self.destination {
            session
                .ensure_queue(link.opts(), link.names(), queue, std::slice::from_ref(key))
                .await?;
        }
        let confirm = session
            .publish(
                &link.names().exchange(),
                &self.key,
                self.mandatory,
                &self.body,
                self.props.clone(),
            )
            .await?;
        Ok((!self.at_most_once).then_some(confirm))
    }
}

/// The broker's answer to one publish: `None` when none was asked (at-most-once).
pub(crate) type Answer = Result<Option<Confirmation>>;

/// Await a publish's confirm.
pub(crate) async fn answer(published: Result<Option<PublisherConfirm>>) -> Answer {
    match published? {
        None => Ok(None),
        Some(confirm) => confirm
            .await
            .map(Some)
            .map_err(|e| crate::error::amqp("wait for the publisher confirm", e)),
    }
}

/// What to do after an [`Answer`].
pub(crate) enum Next {
    /// The message's outcome.
    Done(Result<()>),
    /// Publish it again after this pause.
    Again(Duration),
}

/// One message's retry state: its deadline (`send_timeout` from its first publish), the
/// pause after a refusal (growing) and whether its queue was declared again already.
pub(crate) struct Retry {
    deadline: Instant,
    full_pause: Duration,
    redeclared: bool,
}

impl Retry {
    pub(crate) fn new(link: &Link) -> Self {
        Self {
            deadline: Instant::now() + link.opts().send_timeout,
            full_pause: FULL_PAUSE_MIN,
            redeclared: false,
        }
    }

    /// When waiting for a session must give up.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Judge `answer` to publishing `out` on `session`.
    pub(crate) fn next(
        &mut self,
        link: &Link,
        session: Option<&Session>,
        out: &Outgoing,
        answer: Answer,
    ) -> Next {
        match answer {
            Ok(None) | Ok(Some(Confirmation::Ack(None))) => Next::Done(Ok(())),
            Ok(Some(Confirmation::Ack(Some(returned)))) => {
                if let (Some((queue, _)), Some(session), false) =
                    (&out.destination, session, self.redeclared)
                {
                    // The queue was deleted since this session declared it (x-expires, an
                    // operator): declare it again and publish once more.
                    session.forget(queue);
                    self.redeclared = true;
                    return Next::Again(Duration::ZERO);
                }
                Next::Done(Err(Error::transport_msg(
                    BACKEND,
                    format!(
                        "message {} to {} was returned unroutable ({} {}): no queue is bound \
                         for routing key {}",
                        out.id, out.to, returned.reply_code, returned.reply_text, out.key
                    ),
                    false,
                )))
            }
            Ok(Some(Confirmation::Nack(_))) => {
                tracing::debug!(id = %out.id, to = %out.to, "rabbitmq: the broker refused a message (nack)");
                let pause = self.full_pause;
                if Instant::now() + pause > self.deadline {
                    let opts = link.opts();
                    return Next::Done(Err(Error::Backpressure(format!(
                        "the queue for {} is full (x-max-length {}, reject-publish); the broker \
                         refused message {} for {:?}; retry later",
                        out.to, opts.queue_bound, out.id, opts.send_timeout
                    ))));
                }
                self.full_pause = (pause * 2).min(FULL_PAUSE_MAX);
                Next::Again(pause)
            }
            Ok(Some(Confirmation::NotRequested)) => Next::Done(Err(Error::transport_msg(
                BACKEND,
                "the publisher channel is not in confirm mode",
                false,
            ))),
            Err(e) if e.is_retryable() => {
                tracing::debug!(error = %e, id = %out.id, "rabbitmq: publish failed; resending on the next session");
                link.report_broken();
                if Instant::now() + BROKEN_PAUSE > self.deadline {
                    return Next::Done(Err(e));
                }
                Next::Again(BROKEN_PAUSE)
            }
            Err(e) => Next::Done(Err(e)),
        }
    }
}

/// Publish `msg` (whose `from` is already stamped) on its own and wait for the confirm,
/// publishing again as [`Retry`] says.
pub(crate) async fn publish(link: &Link, msg: &Message) -> Result<()> {
    let out = Outgoing::new(link, msg)?;
    let mut retry = Retry::new(link);
    loop {
        let session = link.session_until(retry.deadline()).await?;
        let answer = answer(out.publish(link, &session).await).await;
        match retry.next(link, Some(&session), &out, answer) {
            Next::Done(outcome) => return outcome,
            Next::Again(pause) => tokio::time::sleep(pause).await,
        }
    }
}

/// AMQP properties of an envelope.
pub(crate) fn properties(
    msg: &Message,
    from: &Address,
    default_ttl: Option<Duration>,
) -> BasicProperties {
    let persistent = msg.mode == DeliveryMode::AtLeastOnce;
    let mut headers = FieldTable::default();
    headers.insert(
        "comms-from".into(),
        AMQPValue::LongString(LongString::from(from.to_string())),
    );
    let mut props = BasicProperties::default()
        .with_content_type(envelope::CONTENT_TYPE.into())
        .with_message_id(msg.id().as_str().into())
        .with_type(msg.command.as_str().into())
        .with_app_id("comms".into())
        .with_headers(headers)
        .with_delivery_mode(if persistent { 2 } else { 1 });
    if let Some(c) = &msg.correlation {
        props = props.with_correlation_id(c.as_str().into());
    }
    let ttl = msg.ttl.or(if persistent { default_ttl } else { None });
    if let Some(ttl) = ttl {
        props = props.with_expiration(ttl.as_millis().max(1).to_string().into());
    }
    props
}
