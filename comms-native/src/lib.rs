//! `comms-native`: the cd: wire codec, the `commsd` routing daemon and the native transport.
//!
//! **Status:** the [`codec`] module is built: the byte-exact Communicator `cd:` line codec
//! (parser, serializer, JSON input, a tokio-util line codec with a maximum line length,
//! datagram parsing, and head-only routing helpers). The daemon and the transport are not
//! built yet, and `comms::connect` still refuses `cd:`, `cds:` and `cdu:` URLs with a clear error.

pub mod codec;
