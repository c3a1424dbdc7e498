//! `comms-rabbitmq`: the RabbitMQ transport over lapin.
//!
//! **Status: not built yet.** This crate is filled by the "RabbitMQ plugin" issue; today it exports
//! nothing, and `comms::connect` refuses `amqp:`/`amqps:` URLs with a clear error.
