//! `cd-wire`: the Communicator `cd:` line codec (docs/PROTOCOL.md §1), byte-exact with the C++
//! `ed::message`, shared by the daemon (`commsd`) and the client side (`comms-native`).
//!
//! Layout (one concept per file):
//! - [`WireMessage`] (`wire.rs`): the six fields and the send-side name rules;
//! - [`parse`] (`parse.rs`, `head.rs`, `json.rs`): lines → messages, in linear time, with the
//!   JSON variant auto-detected on a leading `{`;
//! - [`serialize`] (`serialize.rs`): messages → lines, validating first;
//! - [`LineCodec`] (`line_codec.rs`): tokio-util `Decoder`/`Encoder` for `\n`-framed streams,
//!   with a maximum line length and per-line error items;
//! - [`parse_datagram`] (`datagram.rs`): one message per UDP/Unix datagram, size and secret;
//! - [`peek_route`] / [`restamp`] / [`restamp_head`] (`route.rs`): the router's hot path,
//!   head only;
//! - [`raw`]: the head scanner and escaping writers, for callers that frame or encode lines
//!   themselves; [`DAEMON_SERVICE`], the daemon's own service name;
//! - `tls` (feature `tls`, `tls/`): PEM loading and the rustls helpers both ends of `cds:` and
//!   daemon peer links share (no configuration, no socket).
//!
//! The codec never touches a socket (STYLE habit 1).
//!
//! Where we deliberately differ from the C++ (all on input the C++ mishandles), and why:
//! - invalid UTF-8 and NUL bytes are rejected (the C++ truncates at NUL);
//! - parsing is linear (the C++ unescape is quadratic);
//! - serialize refuses invalid names and commands (`[A-Z_][A-Z0-9_]*`, the name rule in
//!   uppercase) instead of throwing; the parser stays as lenient as the C++;
//! - lines and datagrams have a maximum size; oversize input is refused, never truncated;
//! - `secret_code` is stripped from datagrams after the check;
//! - JSON strings are unescaped once, as JSON says (the C++ unescapes twice).
//!
//! Kept for wire compatibility: a quoted value ending in `\` is written but cannot be parsed
//! back (§1.6 row 13), and the last value loses trailing whitespace (row 14).
//!
//! ```
//! use cd_wire::{parse, WireMessage};
//!
//! let m = parse(b"probe_b/PROBE_PING y=1;x=\"a;b\"\r\n")?;
//! assert_eq!(m.param("x"), Some("a;b"));
//! let reply = WireMessage::new("PONG").with_sent_from("vm", "probe_b").with_param("n", "7");
//! assert_eq!(reply.to_line()?, "<vm:probe_b PONG n=7");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod datagram;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod head;
mod json;
mod line_codec;
mod parse;
mod route;
mod serialize;
#[cfg(feature = "tls")]
pub mod tls;
mod wire;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod vectors;

pub use datagram::{
    constant_time_eq, parse_datagram, SECRET_CODE_PARAM, UDP_MAX_DATAGRAM, UNIX_MAX_DATAGRAM,
};
pub use error::{DatagramError, EncodeError, FrameError, ParseError, RestampError, SerializeError};
pub use line_codec::{LineCodec, RawLines, DEFAULT_MAX_LINE_LENGTH};
pub use parse::{parse, parse_view, Parsed, WireView};
pub use route::{peek_route, restamp, restamp_head, RouteHead};
pub use serialize::{serialize, to_line};
pub use wire::{is_valid_address, is_valid_command, is_valid_name, WireMessage};

/// The daemon's own service name: its replies carry `<node:communicatord`, and a line
/// addressed to it (or to no service) is a daemon command (docs/PROTOCOL.md §2.3).
pub const DAEMON_SERVICE: &str = "communicatord";

/// Building blocks of [`parse`] and [`serialize`], for callers that frame or encode lines
/// themselves (the native client's batched receive path, its direct message encoder): the
/// head scanner, the escaping writers and the name checks. Same rules as the whole-line API.
pub mod raw {
    pub use crate::head::{scan_head, trim_bounds, HeadSpans};
    pub use crate::serialize::{write_address, write_value};
    pub use crate::wire::{validate_address, validate_command};
}
