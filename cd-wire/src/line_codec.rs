//! [`LineCodec`]: `\n`-framed messages for TCP and Unix streams (docs/PROTOCOL.md §1.4).
//!
//! Items are `Result<WireMessage, FrameError>`: a bad or oversize line is *reported as an
//! item* (so the connection can answer `INVALID` with the reason and keep going); only real
//! I/O errors end the stream. `\r` before `\n` and blank lines are tolerated/ignored.
//!
//! Bounded memory: the C++ buffers lines without limit (a 70 KB line stalls its daemon). Here
//! a line longer than `max_line_length` bytes (counting any `\r`, not the `\n`) is discarded
//! as it arrives: the buffer never holds more than `max_line_length` plus one read chunk.
//! Once its `\n` arrives, one [`FrameError::LineTooLong`] item carries its exact length.
//! At end of stream an unterminated line yields [`FrameError::Truncated`] and is dropped.
//!
//! The encoder does not enforce the maximum: stock peers have no limit, and the sender is
//! the wrong place to police it.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::{EncodeError, FrameError};
use crate::head::is_c_space;
use crate::wire::WireMessage;
use crate::{parse, serialize};

/// Default maximum line length: 64 KiB.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 64 * 1024;

/// Decoder/encoder of Communicator lines. See the module docs.
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_line_length: usize,
    /// How far `buf` has been searched for `\n` already (keeps decoding linear).
    next_index: usize,
    /// `Some(n)`: discarding an oversize line, `n` bytes dropped so far.
    discarding: Option<usize>,
}

impl Default for LineCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl LineCodec {
    /// A codec with the default maximum line length ([`DEFAULT_MAX_LINE_LENGTH`]).
    pub fn new() -> Self {
        Self::with_max_line_length(DEFAULT_MAX_LINE_LENGTH)
    }

    /// A codec refusing lines longer than `max` bytes (excluding the `\n`).
    pub fn with_max_line_length(max: usize) -> Self {
        Self {
            max_line_length: max,
            next_index: 0,
            discarding: None,
        }
    }

    /// The configured maximum line length.
    pub fn max_line_length(&self) -> usize {
        self.max_line_length
    }

    fn too_long(&self, length: usize) -> FrameError {
        FrameError::LineTooLong {
            length,
            max: self.max_line_length,
        }
    }
}

impl LineCodec {
    /// The next line of `buf` (without `\n`, `\r` kept), skipping blank lines: the framing
    /// half of [`Decoder::decode`], for readers that parse later ([`RawLines`]).
    fn frame(&mut self, buf: &mut BytesMut) -> Option<Result<BytesMut, FrameError>> {
        loop {
            if let Some(dropped) = self.discarding {
                match memchr::memchr(b'\n', buf) {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.discarding = None;
                        return Some(Err(self.too_long(dropped + i)));
                    }
                    None => {
                        self.discarding = Some(dropped + buf.len());
                        buf.clear();
                        return None;
                    }
                }
            }
            let from = self.next_index.min(buf.len());
            let Some(i) = memchr::memchr(b'\n', &buf[from..]).map(|k| from + k) else {
                if buf.len() > self.max_line_length {
                    self.discarding = Some(buf.len());
                    buf.clear();
                    self.next_index = 0;
                    continue;
                }
                self.next_index = buf.len();
                return None;
            };
            self.next_index = 0;
            let mut frame = buf.split_to(i + 1);
            frame.truncate(i);
            if frame.len() > self.max_line_length {
                return Some(Err(self.too_long(frame.len())));
            }
            if frame.iter().all(|&b| is_c_space(b)) {
                continue;
            }
            return Some(Ok(frame));
        }
    }

    /// [`LineCodec::frame`] at end of stream: an unterminated line is an error.
    fn frame_eof(&mut self, buf: &mut BytesMut) -> Option<Result<BytesMut, FrameError>> {
        if let Some(item) = self.frame(buf) {
            return Some(item);
        }
        if let Some(dropped) = self.discarding.take() {
            return Some(Err(FrameError::Truncated { length: dropped }));
        }
        self.next_index = 0;
        let rest = buf.split();
        if rest.iter().all(|&b| is_c_space(b)) {
            return None;
        }
        Some(Err(FrameError::Truncated { length: rest.len() }))
    }
}

impl Decoder for LineCodec {
    type Item = Result<WireMessage, FrameError>;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        Ok(self
            .frame(buf)
            .map(|f| f.and_then(|line| parse(&line).map_err(FrameError::from))))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        Ok(self
            .frame_eof(buf)
            .map(|f| f.and_then(|line| parse(&line).map_err(FrameError::from))))
    }
}

/// [`LineCodec`]'s framing without parsing: items are the lines' bytes (without `\n`), for a
/// reader that hands them on and parses them in place later ([`super::parse_view`]).
#[derive(Debug, Clone)]
pub struct RawLines(LineCodec);

impl RawLines {
    /// Lines of at most `max` bytes (see [`LineCodec::with_max_line_length`]).
    pub fn with_max_line_length(max: usize) -> Self {
        Self(LineCodec::with_max_line_length(max))
    }
}

impl Decoder for RawLines {
    type Item = Result<Bytes, FrameError>;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        Ok(self.0.frame(buf).map(|f| f.map(BytesMut::freeze)))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        Ok(self.0.frame_eof(buf).map(|f| f.map(BytesMut::freeze)))
    }
}

impl Encoder<&WireMessage> for LineCodec {
    type Error = EncodeError;

    fn encode(&mut self, msg: &WireMessage, dst: &mut BytesMut) -> Result<(), EncodeError> {
        serialize(msg, dst)?;
        dst.extend_from_slice(b"\n");
        Ok(())
    }
}

impl Encoder<WireMessage> for LineCodec {
    type Error = EncodeError;

    fn encode(&mut self, msg: WireMessage, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode(&msg, dst)
    }
}

#[cfg(test)]
#[path = "line_codec_tests.rs"]
mod tests;
