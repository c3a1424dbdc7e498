//! The property-checking body of the cargo-fuzz target on this crate (`fuzz/`,
//! docs/HARDENING.md "Fuzzing"), feature `fuzzing` (not a stable API). The fuzz target is a
//! wrapper around the function here, and `tests/fuzz_corpus.rs` replays the target's corpus
//! through the same function as an ordinary test.
//!
//! [`envelope`]: the broker envelope decoder (`comms_core::envelope::decode`), the
//! JSON object every RabbitMQ and Kafka message body is decoded through.
//!
//! Properties: never panics (deep nesting included); only a JSON object is accepted; every
//! accepted envelope is a valid message, and re-encoding it decodes back to the same message
//! (round trip).

use crate::envelope::{decode, encode};

/// The RabbitMQ backend's default body limit is 1 MiB; libFuzzer's inputs are far smaller.
const MAX: usize = 1 << 20;

/// The `envelope` fuzz target's body (module docs); panics when a property fails.
pub fn envelope(data: &[u8]) {
    let Ok(msg) = decode(data, MAX) else {
        return;
    };
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    assert_eq!(
        first,
        Some(&b'{'),
        "accepted a body that is not a JSON object"
    );
    if let Err(e) = msg.validate() {
        panic!("decode accepted an invalid message {msg:?}: {e}");
    }
    let bytes = match encode(&msg) {
        Ok(b) => b,
        Err(e) => panic!("decoded {msg:?} does not encode: {e}"),
    };
    match decode(&bytes, usize::MAX) {
        Ok(back) => assert_eq!(back, msg, "round trip"),
        Err(e) => panic!(
            "{:?} encoded but does not decode: {e}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}
