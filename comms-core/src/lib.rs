//! comms-core
