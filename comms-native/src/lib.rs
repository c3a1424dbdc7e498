//! `comms-native`: the cd: wire codec, the `commsd` routing daemon and the native transport.
//!
//! Layout:
//! - [`codec`]: the byte-exact Communicator `cd:` line codec (parser, serializer, JSON input,
//!   a tokio-util line codec with a maximum line length, datagram parsing, and head-only
//!   routing helpers).
//! - [`daemon`]: the single-node `commsd` routing daemon (Unix, loopback TCP, TLS and UDP
//!   listeners, registration, stamping, unicast, filtered broadcast, cache, graceful stop),
//!   embeddable with [`daemon::Daemon::start`] and run by the `commsd` binary.
//! - [`tls`]: rustls configurations from PEM files — the daemon's secure listener (optional
//!   mutual TLS), the `cds:` client, and mutual-TLS daemon peer links with a peer-name
//!   allow-list ([`tls::PeerTls`]).
//! - [`client`]: the permanent client connection to a daemon (`cd:///path.sock`,
//!   `cd://host:port` or `cds://host:port?ca=..&cert=..&key=..&tls_name=..`): REGISTER /
//!   HELP / COMMANDS / READY, reconnect schedule, state watch.
//! - [`transport`]: [`transport::NativeTransport`], the `comms_core::Transport` over a
//!   [`client::Client`] (`cd:` and `cds:`), with end-to-end at-least-once delivery (acks,
//!   per-sender sequence, resend) as `docs/NATIVE.md` describes; and
//!   [`transport::DatagramTransport`] for `cdu://ip:port?secret=..&max_datagram=..`: send-only,
//!   one UDP datagram per message, at-most-once. `comms::connect` (or
//!   [`transport::connect`]) picks the one a URL's scheme names.
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
