//! `comms-native`: the cd: wire codec, the `commsd` routing daemon and the native transport.
//!
//! Layout:
//! - [`codec`]: the byte-exact Communicator `cd:` line codec (parser, serializer, JSON input,
//!   a tokio-util line codec with a maximum line length, datagram parsing, and head-only
//!   routing helpers).
//! - [`daemon`]: the single-node `commsd` routing daemon (Unix, loopback TCP and UDP
//!   listeners, registration, stamping, unicast, filtered broadcast, cache, graceful stop),
//!   embeddable with [`daemon::Daemon::start`] and run by the `commsd` binary.
//! - [`client`]: the permanent client connection to a daemon (`cd:///path.sock` or
//!   `cd://host:port`): REGISTER / HELP / COMMANDS / READY, reconnect schedule, state watch.
//! - [`transport`]: [`transport::NativeTransport`], the `comms_core::Transport` over a
//!   [`client::Client`], with end-to-end at-least-once delivery (acks, per-sender sequence,
//!   resend) as `docs/NATIVE.md` describes. `comms::connect` builds it for `cd:` URLs.
//!
//! ```no_run
//! # async fn demo() -> comms_core::Result<()> {
//! use comms_native::transport::NativeTransport;
//! let transport = NativeTransport::connect("cd:///run/communicator/communicatord.sock?node=vm")?;
//! let endpoint = comms_core::Endpoint::builder(transport, "demo").start().await?;
//! endpoint.close().await
//! # }
//! ```

pub mod client;
pub mod codec;
pub mod daemon;
pub mod tls;
pub mod transport;
