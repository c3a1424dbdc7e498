//! `comms-native`: the cd: wire codec, the `commsd` routing daemon and the native transport.
//!
//! **Status:** the [`codec`] module is built: the byte-exact Communicator `cd:` line codec
//! (parser, serializer, JSON input, a tokio-util line codec with a maximum line length,
//! datagram parsing, and head-only routing helpers). The [`daemon`] module is built: the
//! single-node `commsd` routing daemon (Unix, loopback TCP and UDP listeners, registration,
//! stamping, unicast, filtered broadcast, cache, graceful stop), embeddable with
//! [`daemon::Daemon::start`] and run by the `commsd` binary. The transport is not built yet,
//! and `comms::connect` still refuses `cd:`, `cds:` and `cdu:` URLs with a clear error.

pub mod codec;
pub mod daemon;
