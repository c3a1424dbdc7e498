//! Tests of [`LineCodec`](super::LineCodec): split input, oversize lines, bounded memory.

use bytes::BytesMut;
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

use crate::vectors::ACCEPTED;
use crate::*;
use crate::{parse, FrameError};

/// Feeds `chunks` one by one, then EOF; returns every item as `Ok(line)` or `Err(text)`.
fn decode_chunks(codec: &mut LineCodec, chunks: &[&[u8]]) -> Vec<Result<WireMessage, String>> {
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut push = |r: Result<Option<<LineCodec as Decoder>::Item>, std::io::Error>| match r {
        Ok(Some(item)) => {
            items.push(item.map_err(|e| e.to_string()));
            true
        }
        Ok(None) => false,
        Err(e) => panic!("io error {e}"),
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while push(codec.decode(&mut buf)) {}
    }
    while push(codec.decode_eof(&mut buf)) {}
    items
}

fn expected(line: &str) -> WireMessage {
    match parse(line.as_bytes()) {
        Ok(m) => m,
        Err(e) => panic!("{line:?}: {e}"),
    }
}

#[test]
fn every_vector_split_at_every_byte() {
    for line in ACCEPTED {
        let want = vec![Ok(expected(line))];
        let framed = format!("{line}\r\n");
        let b = framed.as_bytes();
        for cut in 0..=b.len() {
            let got = decode_chunks(&mut LineCodec::new(), &[&b[..cut], &b[cut..]]);
            assert_eq!(got, want, "{line:?} cut at {cut}");
        }
        let bytes: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(
            decode_chunks(&mut LineCodec::new(), &bytes),
            want,
            "{line:?} byte by byte"
        );
    }
}

#[test]
fn blank_lines_ignored_and_errors_are_items() {
    let input = b"\n\r\n  \nPING a=1\nCMD p\n\nSTOP\n";
    let got = decode_chunks(&mut LineCodec::new(), &[input]);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], Ok(expected("PING a=1")));
    assert_eq!(got[1], Err("parameter at byte 4 has no `=`".to_owned()));
    assert_eq!(got[2], Ok(expected("STOP")));
}

#[test]
fn unterminated_last_line_is_reported() {
    let got = decode_chunks(&mut LineCodec::new(), &[b"PING\nSTO"]);
    assert_eq!(got[0], Ok(expected("PING")));
    assert_eq!(
        got[1],
        Err("stream ended inside a line of 3 bytes (no final newline)".into())
    );
    assert_eq!(
        decode_chunks(&mut LineCodec::new(), &[b"PING\n  "]).len(),
        1
    );
}

#[test]
fn oversize_line_in_one_chunk_then_next_line() {
    let mut input = b"A x=".to_vec();
    input.resize(20, b'y');
    input.extend_from_slice(b"\nSTOP\n");
    let got = decode_chunks(&mut LineCodec::with_max_line_length(10), &[&input]);
    assert_eq!(got[0], Err("line too long: 20 bytes (maximum 10)".into()));
    assert_eq!(got[1], Ok(expected("STOP")));
    // Exactly at the limit is fine.
    let got = decode_chunks(&mut LineCodec::with_max_line_length(8), &[b"PING a=1\n"]);
    assert_eq!(got, vec![Ok(expected("PING a=1"))]);
}

/// A 10 MiB line fed in 8 KiB chunks: the buffer stays near max + one chunk, the error
/// item gives the exact length, and the next line decodes.
#[test]
fn ten_mib_line_memory_stays_bounded() {
    const CHUNK: usize = 8 * 1024;
    let mut codec = LineCodec::new();
    let mut buf = BytesMut::new();
    let chunk = vec![b'x'; CHUNK];
    let total = 10 * 1024 * 1024;
    let mut max_cap = 0;
    buf.extend_from_slice(b"BIG v=");
    let mut fed = 6;
    while fed < total {
        buf.extend_from_slice(&chunk);
        fed += CHUNK;
        assert!(matches!(codec.decode(&mut buf), Ok(None)));
        max_cap = max_cap.max(buf.capacity());
    }
    assert!(buf.len() <= DEFAULT_MAX_LINE_LENGTH + CHUNK);
    assert!(
        max_cap <= 4 * (DEFAULT_MAX_LINE_LENGTH + CHUNK),
        "capacity grew to {max_cap}"
    );
    buf.extend_from_slice(b"\r\nSTOP\n");
    let item = codec.decode(&mut buf);
    assert!(
        matches!(item, Ok(Some(Err(FrameError::LineTooLong { length, max })))
            if length == fed + 1 && max == DEFAULT_MAX_LINE_LENGTH),
        "{item:?}"
    );
    assert!(matches!(codec.decode(&mut buf), Ok(Some(Ok(m))) if m.command == "STOP"));
}

#[test]
fn encoder_writes_lines_and_refuses_bad_messages() {
    let mut codec = LineCodec::new();
    let mut dst = BytesMut::new();
    let m = WireMessage::new("PING")
        .with_service("probe_b")
        .with_param("x", "a;b");
    assert!(codec.encode(&m, &mut dst).is_ok());
    assert!(codec.encode(m.clone(), &mut dst).is_ok());
    assert_eq!(
        &dst[..],
        b"probe_b/PING x=\"a;b\"\nprobe_b/PING x=\"a;b\"\n"
    );
    assert!(matches!(
        codec.encode(WireMessage::new("bad"), &mut dst),
        Err(EncodeError::Serialize(_))
    ));
    assert_eq!(dst.len(), 42);
    let got = decode_chunks(&mut codec, &[&dst]);
    assert_eq!(got, vec![Ok(m.clone()), Ok(m)]);
}

/// Over a real async byte stream with small reads (64-byte duplex), as a connection would
/// drive it (a read loop into a `BytesMut`, like `FramedRead`, without a `Stream` dependency).
#[tokio::test]
async fn over_an_async_byte_stream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut tx, mut rx) = tokio::io::duplex(64);
    let writer = tokio::spawn(async move {
        let mut data = b"PING a=1\n".to_vec();
        data.extend(std::iter::repeat_n(b'z', 5000));
        data.extend_from_slice(b"\nbad line\r\nSTOP\n");
        tx.write_all(&data).await
    });
    let mut codec = LineCodec::with_max_line_length(1000);
    let mut buf = BytesMut::with_capacity(256);
    let mut got = Vec::new();
    loop {
        while let Ok(Some(item)) = codec.decode(&mut buf) {
            got.push(item.map_err(|e| e.to_string()));
        }
        assert!(buf.len() <= 1000 + 256, "buffer grew to {}", buf.len());
        buf.reserve(256);
        match rx.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => panic!("io: {e}"),
        }
    }
    assert!(matches!(writer.await, Ok(Ok(()))));
    assert_eq!(got[0], Ok(expected("PING a=1")));
    assert_eq!(
        got[1],
        Err("line too long: 5000 bytes (maximum 1000)".into())
    );
    assert_eq!(got[2], Err("parameter at byte 4 has no `=`".into()));
    assert_eq!(got[3], Ok(expected("STOP")));
    assert_eq!(got.len(), 4);
}

proptest! {
    #[test]
    fn hostile_stream_never_panics(
        data in proptest::collection::vec(crate::proptests::arb_hostile(), 0..8),
        max in 1usize..64,
    ) {
        let chunks: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let _ = decode_chunks(&mut LineCodec::with_max_line_length(max), &chunks);
    }

    #[test]
    fn encoded_messages_decode_under_any_split(
        msgs in proptest::collection::vec(crate::proptests::arb_message(), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut codec = LineCodec::new();
        let mut dst = BytesMut::new();
        for m in &msgs {
            prop_assert!(codec.encode(m, &mut dst).is_ok());
        }
        let cut = cut.index(dst.len() + 1);
        let got = decode_chunks(&mut codec, &[&dst[..cut], &dst[cut..]]);
        let want: Vec<Result<WireMessage, String>> = msgs.into_iter().map(Ok).collect();
        prop_assert_eq!(got, want);
    }
}
