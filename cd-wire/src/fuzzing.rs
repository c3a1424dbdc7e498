//! The property-checking bodies of the cargo-fuzz targets on this crate (`fuzz/`,
//! docs/HARDENING.md "Fuzzing"), feature `fuzzing` (not a stable API). Each fuzz target is a
//! wrapper around one function here, and `tests/fuzz_corpus.rs` replays the target's corpus
//! through the same function as an ordinary test.
//!
//! [`cd_line`]: the `cd:` line parser, the head peeker/restamper and the streaming
//! [`LineCodec`] decoder, fed arbitrary bytes.
//!
//! Properties checked on every input (beyond "never panics, never hangs"):
//! - `peek_route` agrees with `parse` on the head of every non-JSON line `parse` accepts;
//! - round trip: a parsed message, normalised around the two documented wire quirks
//!   (docs/PROTOCOL.md §1.6 rows 13 and 14), serializes to a line that parses back to itself;
//! - the decoder yields the same items whatever the chunking of the stream, and never buffers
//!   more than its maximum line length plus one chunk.
//!
//! Input layout: byte 0 picks the maximum line length (16..=4111), byte 1 the chunk size for
//! the streamed pass (1..=256); the rest is the stream (and, as a whole, the line).
//!
//! [`cd_datagram`]: one `cd:` message per UDP/Unix datagram (`parse_datagram`), with
//! and without a shared secret.
//!
//! Properties: never panics; an oversize datagram is refused, never truncated; without a
//! secret a datagram decodes exactly as `parse` decodes the line; with a secret an accepted
//! datagram carried it and it is stripped.
//!
//! Input layout: byte 0 selects the size limit (the UDP limit, the Unix limit, or a small one
//! to reach the boundary); the rest is the datagram.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::{
    parse, parse_datagram, peek_route, restamp, serialize, DatagramError, LineCodec, WireMessage,
    SECRET_CODE_PARAM, UDP_MAX_DATAGRAM, UNIX_MAX_DATAGRAM,
};

const SECRET: &str = "s3cret";

/// The `cd_datagram` fuzz target's body (module docs); panics when a property fails.
pub fn cd_datagram(data: &[u8]) {
    let Some((&sel, datagram)) = data.split_first() else {
        return;
    };
    let max = match sel % 3 {
        0 => UDP_MAX_DATAGRAM,
        1 => UNIX_MAX_DATAGRAM,
        _ => 32,
    };
    let open = parse_datagram(datagram, max, None);
    if datagram.len() > max {
        assert!(
            matches!(open, Err(DatagramError::TooLong { length, .. }) if length == datagram.len()),
            "oversize datagram not refused: {open:?}"
        );
        return;
    }
    match (&open, parse(datagram)) {
        (Ok(a), Ok(b)) => assert_eq!(a, &b),
        (Err(DatagramError::Parse(_)), Err(_)) => {}
        (a, b) => panic!("parse_datagram {a:?} but parse {b:?}"),
    }
    match parse_datagram(datagram, max, Some(SECRET)) {
        Ok(m) => {
            assert_eq!(m.param(SECRET_CODE_PARAM), None, "secret not stripped");
            let carried = open.as_ref().ok().and_then(|o| o.param(SECRET_CODE_PARAM));
            assert_eq!(carried, Some(SECRET), "accepted without the secret");
        }
        Err(DatagramError::MissingSecret | DatagramError::WrongSecret) => {
            assert!(
                open.is_ok(),
                "secret error on a datagram that does not parse"
            );
        }
        Err(_) => assert!(open.is_err(), "secret check failed a parsable datagram"),
    }
}

/// The `cd_line` fuzz target's body (module docs); panics when a property fails.
pub fn cd_line(data: &[u8]) {
    line_properties(data);
    if data.len() >= 2 {
        let max = 16 + usize::from(data[0]) * 16;
        let chunk = 1 + usize::from(data[1]);
        stream_properties(&data[2..], max, chunk);
    }
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn line_properties(line: &[u8]) {
    let parsed = parse(line);
    let peeked = peek_route(line);
    let mut out = Vec::new();
    let _ = restamp(line, "vm", "svc", &mut out);
    let json = line.iter().find(|b| !is_c_space(**b)) == Some(&b'{');
    if let Ok(m) = &parsed {
        if !json {
            let h = match &peeked {
                Ok(h) => h,
                Err(e) => panic!("parse accepts, peek_route refuses: {e}"),
            };
            assert_eq!(
                (
                    h.sent_from_server,
                    h.sent_from_service,
                    h.server,
                    h.service,
                    h.command
                ),
                (
                    m.sent_from_server.as_str(),
                    m.sent_from_service.as_str(),
                    m.server.as_str(),
                    m.service.as_str(),
                    m.command.as_str()
                ),
                "peek_route and parse disagree on the head"
            );
        }
        round_trip(normalise(m.clone()));
    }
}

/// Sidesteps the two wire quirks the serializer keeps for compatibility with the C++ (a quoted
/// value ending in `\`, trailing blanks of the last value) and drops a server given without a
/// service (the serializer drops it too), exactly as the codec's proptest strategy does.
fn normalise(mut m: WireMessage) -> WireMessage {
    for v in m.params.values_mut() {
        let quoted = v.starts_with('"') || v.contains(';');
        if quoted && v.ends_with('\\') {
            v.push('x');
        }
    }
    if let Some(v) = m.params.values_mut().next_back() {
        if v.bytes().next_back().is_some_and(is_c_space) {
            v.push('x');
        }
    }
    if m.service.is_empty() {
        m.server.clear();
    }
    m
}

fn round_trip(m: WireMessage) {
    let mut line = Vec::new();
    if serialize(&m, &mut line).is_err() {
        return; // e.g. a lowercase command: the parser is more lenient than the serializer.
    }
    match parse(&line) {
        Ok(back) => assert_eq!(
            back,
            m,
            "round trip of {:?}",
            String::from_utf8_lossy(&line)
        ),
        Err(e) => panic!(
            "{:?} serialized but does not parse: {e}",
            String::from_utf8_lossy(&line)
        ),
    }
}

/// Every item of the decoder, rendered (errors are not `PartialEq`).
fn decode_all(stream: &[u8], max: usize, chunk: usize) -> Vec<String> {
    let mut codec = LineCodec::with_max_line_length(max);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(item)) => items.push(format!("{item:?}")),
                Ok(None) => break,
                Err(e) => panic!("decode io error {e}"),
            }
            assert!(buf.len() <= max + chunk + 1, "buffer grew to {}", buf.len());
        }
        assert!(buf.len() <= max + chunk + 1, "buffer grew to {}", buf.len());
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(item)) => items.push(format!("{item:?}")),
            Ok(None) => break,
            Err(e) => panic!("decode_eof io error {e}"),
        }
    }
    items
}

fn stream_properties(stream: &[u8], max: usize, chunk: usize) {
    let whole = decode_all(stream, max, stream.len().max(1));
    let streamed = decode_all(stream, max, chunk);
    assert_eq!(
        whole, streamed,
        "items depend on chunking (chunk {chunk}, max {max})"
    );
}
