//! The Communicator `cd:` line codec (cd-wire.md §1), byte-exact with the C++ `ed::message`.
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
//!   head only.
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
//! use comms_native::codec::{parse, WireMessage};
//!
//! let m = parse(b"probe_b/PROBE_PING y=1;x=\"a;b\"\r\n")?;
//! assert_eq!(m.param("x"), Some("a;b"));
//! let reply = WireMessage::new("PONG").with_sent_from("vm", "probe_b").with_param("n", "7");
//! assert_eq!(reply.to_line()?, "<vm:probe_b PONG n=7");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod datagram;
mod error;
pub(crate) mod head;
mod json;
mod line_codec;
mod parse;
mod route;
pub(crate) mod serialize;
pub(crate) mod wire;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod vectors;

pub use datagram::{parse_datagram, SECRET_CODE_PARAM, UDP_MAX_DATAGRAM, UNIX_MAX_DATAGRAM};
pub use error::{DatagramError, EncodeError, FrameError, ParseError, RestampError, SerializeError};
pub use line_codec::{LineCodec, RawLines, DEFAULT_MAX_LINE_LENGTH};
pub use parse::{parse, parse_view, Parsed, WireView};
pub use route::{peek_route, restamp, restamp_head, RouteHead};
pub use serialize::{serialize, to_line};
pub use wire::{is_valid_address, is_valid_command, is_valid_name, WireMessage};
