//! `comms-native`: the client side of the native backend: the permanent connection to a
//! `commsd` daemon and the `cd:` / `cds:` / `cdu:` transports over it. The line codec is the
//! `cd-wire` crate; the daemon is the `commsd` crate (this crate needs it only for its tests).
//!
//! Layout:
//! - [`client`]: the permanent client connection to a daemon (`cd:///path.sock`,
//!   `cd://host:port` or `cds://host:port?ca=..&cert=..&key=..&tls_name=..`): REGISTER /
//!   HELP / COMMANDS / READY, reconnect schedule, state watch.
//! - [`transport`]: [`transport::NativeTransport`], the `comms_core::Transport` over a
//!   [`client::Client`] (`cd:` and `cds:`), with end-to-end at-least-once delivery (acks,
//!   per-sender sequence, resend) as `docs/NATIVE.md` describes; and
//!   [`transport::DatagramTransport`] for `cdu://ip:port?secret=..&max_datagram=..`: send-only,
//!   one UDP datagram per message, at-most-once. Both are built like every backend
//!   (`comms_core::Connect`: `connect(&config)` or `connect_url(url)`); `comms::connect` picks
//!   the one a URL's scheme names.
//! - [`tls`]: the rustls client configuration of `cds:` ([`tls::ClientTls`]) from PEM files.
//!
//! ```no_run
//! # async fn demo() -> comms_core::Result<()> {
//! use comms_core::Connect;
//! use comms_native::transport::NativeTransport;
//! let transport =
//!     NativeTransport::connect_url("cd:///run/communicator/communicatord.sock?node=vm").await?;
//! let endpoint = comms_core::Endpoint::builder(transport, "demo").start().await?;
//! endpoint.close().await
//! # }
//! ```

pub mod client;
pub mod tls;
pub mod transport;
