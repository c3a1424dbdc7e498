//! Error types of the codec: one enum per operation, each `#[non_exhaustive]`.
//!
//! Byte offsets in [`ParseError`] are relative to the start of the line handed to
//! [`parse`](crate::parse) (before whitespace trimming), so a caller can point at the culprit.

use std::io;

/// Why a line could not be parsed as a message (docs/PROTOCOL.md §1.2, §1.3).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The line is empty or only whitespace.
    #[error("empty message line")]
    Empty,
    /// The line is not valid UTF-8 (values are Rust `String`s).
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the first byte that is not valid UTF-8.
        offset: usize,
    },
    /// The line contains a NUL byte. The C++ stops reading there (C-string scan) and so
    /// silently truncates the message; we reject the line instead.
    #[error("NUL byte at byte {offset} (rejected, not truncated)")]
    NulByte {
        /// Offset of the NUL byte.
        offset: usize,
    },
    /// A `<` prefix ended before its `:` or its closing space.
    #[error("unterminated `<sent-from-server:sent-from-service ` prefix")]
    UnterminatedSentFrom,
    /// A space appeared in the sent-from server of the `<` prefix, before its `:`.
    #[error("space in the sent-from server of the `<` prefix at byte {offset}")]
    SpaceInSentFromServer {
        /// Offset of the space.
        offset: usize,
    },
    /// `:` with nothing before it (e.g. `:CMD`).
    #[error("empty server name before `:` at byte {offset}")]
    EmptyServer {
        /// Offset of the `:`.
        offset: usize,
    },
    /// A second `server:` or a `server:` after `service/` (e.g. `a:b:CMD`, `svc/srv:CMD`).
    #[error("unexpected `:` at byte {offset}: server already given or after the service")]
    UnexpectedServer {
        /// Offset of the `:`.
        offset: usize,
    },
    /// `/` with nothing before it (e.g. `/CMD`).
    #[error("empty service name before `/` at byte {offset}")]
    EmptyService {
        /// Offset of the `/`.
        offset: usize,
    },
    /// A second `service/` (e.g. `svc/CMD/x`).
    #[error("unexpected `/` at byte {offset}: service already given")]
    RepeatedService {
        /// Offset of the `/`.
        offset: usize,
    },
    /// No command (e.g. `svc/`, or two spaces after the `<` prefix).
    #[error("missing command")]
    EmptyCommand,
    /// A parameter has no `=` (e.g. `CMD p`, `CMD p=v;;`).
    #[error("parameter at byte {offset} has no `=`")]
    MissingEquals {
        /// Offset where the parameter name starts.
        offset: usize,
    },
    /// A parameter name is empty or breaks the name rule `[A-Za-z_][A-Za-z0-9_]*`.
    #[error("invalid parameter name {name:?} at byte {offset}")]
    InvalidParamName {
        /// The offending name.
        name: String,
        /// Offset where the name starts.
        offset: usize,
    },
    /// A quoted value has no closing `"` (note: `\"` does not close, so a quoted value
    /// ending in `\` can never be closed, docs/PROTOCOL.md §1.6 row 13).
    #[error("unterminated quoted value starting at byte {offset}")]
    UnterminatedQuote {
        /// Offset of the opening `"`.
        offset: usize,
    },
    /// Something other than `;` or end of line follows a closing quote.
    #[error("unexpected byte after closing quote at byte {offset} (expected `;` or end)")]
    JunkAfterQuote {
        /// Offset of the unexpected byte.
        offset: usize,
    },
    /// A `{` line is not valid JSON (syntax, trailing data, nesting deeper than 128...).
    #[error("invalid JSON message: {0}")]
    Json(#[source] serde_json::Error),
    /// A `{` line is valid JSON but not a message object.
    #[error("invalid JSON message: {0}")]
    JsonShape(String),
    /// [`peek_route`](crate::peek_route) does not handle JSON lines: use [`parse`](crate::parse).
    #[error("JSON message lines cannot be peeked; parse them fully")]
    JsonNotPeekable,
}

impl ParseError {
    /// The byte offset of the problem in the input line, when the error has one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            Self::InvalidUtf8 { offset }
            | Self::NulByte { offset }
            | Self::SpaceInSentFromServer { offset }
            | Self::EmptyServer { offset }
            | Self::UnexpectedServer { offset }
            | Self::EmptyService { offset }
            | Self::RepeatedService { offset }
            | Self::MissingEquals { offset }
            | Self::InvalidParamName { offset, .. }
            | Self::UnterminatedQuote { offset }
            | Self::JunkAfterQuote { offset } => Some(*offset),
            Self::Empty
            | Self::UnterminatedSentFrom
            | Self::EmptyCommand
            | Self::Json(_)
            | Self::JsonShape(_)
            | Self::JsonNotPeekable => None,
        }
    }
}

/// Why a message cannot be written to the wire (docs/PROTOCOL.md §1.2, setters' name rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SerializeError {
    /// The command is empty.
    #[error("message has no command")]
    EmptyCommand,
    /// The command breaks `[A-Z_][A-Z0-9_]*`.
    #[error("invalid command {0:?}: must match [A-Z_][A-Z0-9_]*")]
    InvalidCommand(String),
    /// A server, service or sent-from field breaks the name rule.
    #[error("invalid {field} {value:?}: must be empty, a name [A-Za-z_][A-Za-z0-9_]*{specials}")]
    InvalidName {
        /// Which field (`server`, `service`, `sent_from_server`, `sent_from_service`).
        field: &'static str,
        /// The offending value.
        value: String,
        /// Human hint about the specials allowed for this field.
        specials: &'static str,
    },
    /// A parameter name breaks the name rule.
    #[error("invalid parameter name {0:?}: must match [A-Za-z_][A-Za-z0-9_]*")]
    InvalidParamName(String),
    /// A parameter value contains NUL, which no receiver could read back.
    #[error("parameter {0:?} contains a NUL byte")]
    NulInValue(String),
}

/// An item-level error of [`LineCodec`](super::LineCodec): the stream stays usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The line exceeded the maximum line length; it was discarded without buffering.
    #[error("line too long: {length} bytes (maximum {max})")]
    LineTooLong {
        /// Length of the discarded line, without its `\n` (exact: counted while discarding).
        length: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The stream ended in the middle of a line (no final `\n`); the partial line is dropped.
    #[error("stream ended inside a line of {length} bytes (no final newline)")]
    Truncated {
        /// Bytes of the unterminated line.
        length: usize,
    },
    /// The line is not a valid message.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Error of the [`LineCodec`](super::LineCodec) encoder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message cannot be serialized.
    #[error(transparent)]
    Serialize(#[from] SerializeError),
    /// The underlying transport failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why a datagram was refused by [`parse_datagram`](crate::parse_datagram).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// The datagram is longer than allowed; it is refused, never truncated.
    #[error("datagram too long: {length} bytes (maximum {max})")]
    TooLong {
        /// Received length.
        length: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A secret is configured and the datagram has no `secret_code` parameter.
    #[error("datagram has no secret_code")]
    MissingSecret,
    /// A secret is configured and the datagram's `secret_code` differs.
    #[error("datagram has a wrong secret_code")]
    WrongSecret,
    /// The datagram is not a valid message.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Why [`restamp`](crate::restamp) could not re-emit a line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestampError {
    /// The head of the line (prefix, server, service, command) is malformed.
    #[error(transparent)]
    Head(#[from] ParseError),
    /// The stamp or the head names are not valid for sending.
    #[error(transparent)]
    Invalid(#[from] SerializeError),
}
