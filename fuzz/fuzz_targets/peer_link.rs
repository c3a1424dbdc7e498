//! Fuzz target `peer_link`: its body (the harness driving commsd's router, properties, input
//! layout) is `commsd::fuzzing::peer_link`, also replayed on the corpus by
//! `commsd/tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| commsd::fuzzing::peer_link(data));
