//! `comms-kafka`: the Kafka transport over rdkafka.
//!
//! **Status: not built yet.** This crate is filled by the "Kafka plugin" issue; today it exports
//! nothing, and `comms::connect` refuses `kafka:` URLs with a clear error.
