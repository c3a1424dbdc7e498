//! Names and declarations: how addresses map onto exchanges, queues and routing keys.
//!
//! Every name starts with `comms.{namespace}.` (see the crate docs for the whole mapping).
//! Every declaration is idempotent: the same name with the same arguments, declared again by
//! any transport of the deployment, is a no-op.

use std::ops::Deref;

use comms_core::{naming, Address, Destination, Scope};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use crate::error::amqp;
use crate::options::RabbitOptions;

/// Bound of the diagnostic queues (`expired`, `dead`); they drop their oldest entry when full.
pub const DIAGNOSTIC_QUEUE_BOUND: i64 = 10_000;

/// Routing key of advertisements from `node:service`.
pub fn advertise_key(from: &Address) -> String {
    format!("ad.{}.{}", from.node(), from.service())
}

/// The names of one namespace: the service queue is the shared
/// [`comms_core::naming::Names::service`] (`comms.{ns}.svc.{service}`, competing consumers),
/// the instance queue [`comms_core::naming::Names::instance`]
/// (`comms.{ns}.inst.{node}.{service}`: exact address and broadcasts), both reached through
/// `Deref`; the exchanges and diagnostic queues are RabbitMQ's own.
#[derive(Debug, Clone)]
pub struct Names {
    shared: naming::Names,
}

impl Names {
    /// The names of `namespace`.
    pub fn new(namespace: &str) -> Self {
        Self {
            shared: naming::Names::new(namespace),
        }
    }

    /// The topic exchange every message is published to.
    pub fn exchange(&self) -> String {
        self.prefix().to_owned()
    }

    /// The fanout exchange service and instance queues dead-letter into.
    pub fn dead_letter_exchange(&self) -> String {
        self.child("dlx")
    }

    /// Where expired and rejected messages land; read by the transports to send reports.
    pub fn expired_queue(&self) -> String {
        self.child("expired")
    }

    /// Where input that is not an envelope is parked, with the reason in a header.
    pub fn dead_queue(&self) -> String {
        self.child("dead")
    }
}

impl Deref for Names {
    type Target = naming::Names;

    fn deref(&self) -> &naming::Names {
        &self.shared
    }
}

/// The routing key of a message from `from` to `to`.
pub fn routing_key(from: &Address, to: &Destination, command: &str) -> String {
    match to {
        Destination::Instance(a) => instance_key(a),
        Destination::Service(s) => service_key(s),
        Destination::Broadcast(Scope::All) => format!("bc.{command}.{}", from.node()),
        Destination::Broadcast(Scope::Node) => format!("bn.{command}.{}", from.node()),
    }
}

/// Routing key of an instance's own queue.
pub fn instance_key(a: &Address) -> String {
    format!("inst.{}.{}", a.node(), a.service())
}

/// Routing key of a service queue.
pub fn service_key(service: &str) -> String {
    format!("svc.{service}")
}

/// The binding keys of an instance queue for its accepted `commands`.
pub fn instance_bindings<'a>(
    address: &Address,
    commands: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let mut keys = vec![instance_key(address)];
    for c in commands {
        if c == comms_core::commands::ADVERTISE {
            keys.push("ad.#".to_owned());
        } else {
            keys.push(format!("bc.{c}.*"));
            keys.push(format!("bn.{c}.{}", address.node()));
        }
    }
    keys
}

fn queue_args(opts: &RabbitOptions, names: &Names) -> FieldTable {
    let bound = i64::try_from(opts.queue_bound).unwrap_or(i64::MAX);
    let mut args = bounded_args(bound, "reject-publish");
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(names.dead_letter_exchange())),
    );
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(opts.queue_type.as_str())),
    );
    if let Some(exp) = opts.queue_expires {
        let ms = i64::try_from(exp.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-expires".into(), AMQPValue::LongLongInt(ms));
    }
    args
}

/// Queue arguments bounding a queue at `max_length` messages, with `overflow` behaviour
/// (`drop-head`: oldest dropped; `reject-publish`: publishes refused).
pub(crate) fn bounded_args(max_length: i64, overflow: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(max_length));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from(overflow)),
    );
    args
}

fn diagnostic_args() -> FieldTable {
    bounded_args(DIAGNOSTIC_QUEUE_BOUND, "drop-head")
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declare the namespace's exchanges and diagnostic queues.
pub async fn declare_base(ch: &Channel, names: &Names) -> comms_core::Result<()> {
    let durable_exchange = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(
        names.exchange().into(),
        ExchangeKind::Topic,
        durable_exchange,
        FieldTable::default(),
    )
    .await
    .map_err(|e| amqp("declare the exchange", e))?;
    ch.exchange_declare(
        names.dead_letter_exchange().into(),
        ExchangeKind::Fanout,
        durable_exchange,
        FieldTable::default(),
    )
    .await
    .map_err(|e| amqp("declare the dead-letter exchange", e))?;
    for q in [names.expired_queue(), names.dead_queue()] {
        ch.queue_declare(q.clone().into(), durable(), diagnostic_args())
            .await
            .map_err(|e| amqp(format!("declare queue {q}"), e))?;
    }
    ch.queue_bind(
        names.expired_queue().into(),
        names.dead_letter_exchange().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| amqp("bind the expired queue", e))?;
    Ok(())
}

/// Declare a service or instance queue and bind it with `keys`.
pub async fn declare_queue(
    ch: &Channel,
    opts: &RabbitOptions,
    names: &Names,
    queue: &str,
    keys: &[String],
) -> comms_core::Result<()> {
    ch.queue_declare(queue.into(), durable(), queue_args(opts, names))
        .await
        .map_err(|e| amqp(format!("declare queue {queue}"), e))?;
    for key in keys {
        ch.queue_bind(
            queue.into(),
            names.exchange().into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp(format!("bind {queue} to {key}"), e))?;
    }
    Ok(())
}

/// Remove the binding `key` from `queue`.
pub async fn unbind(ch: &Channel, names: &Names, queue: &str, key: &str) -> comms_core::Result<()> {
    ch.queue_unbind(
        queue.into(),
        names.exchange().into(),
        key.into(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| amqp(format!("unbind {queue} from {key}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        let n = Names::new("prod");
        let a = Address::new("web01", "agent").unwrap();
        assert_eq!(n.exchange(), "comms.prod");
        assert_eq!(n.service("agent"), "comms.prod.svc.agent");
        assert_eq!(n.instance(&a), "comms.prod.inst.web01.agent");
        assert_eq!(n.dead_letter_exchange(), "comms.prod.dlx");
        assert_eq!(n.expired_queue(), "comms.prod.expired");
        assert_eq!(n.dead_queue(), "comms.prod.dead");
        let from = Address::new("srv", "server").unwrap();
        assert_eq!(
            routing_key(&from, &Destination::Instance(a.clone()), "RUN"),
            "inst.web01.agent"
        );
        assert_eq!(
            routing_key(&from, &Destination::Service("agent".into()), "RUN"),
            "svc.agent"
        );
        assert_eq!(
            routing_key(&from, &Destination::Broadcast(Scope::All), "RUN"),
            "bc.RUN.srv"
        );
        assert_eq!(
            routing_key(&from, &Destination::Broadcast(Scope::Node), "RUN"),
            "bn.RUN.srv"
        );
        let cmds = ["RUN".to_owned(), "ADVERTISE".to_owned()];
        assert_eq!(
            instance_bindings(&a, &cmds),
            ["inst.web01.agent", "bc.RUN.*", "bn.RUN.web01", "ad.#"]
        );
    }
}
