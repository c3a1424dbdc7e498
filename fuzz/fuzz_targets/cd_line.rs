//! Fuzz target `cd_line`: its body (properties, input layout) is `cd_wire::fuzzing::cd_line`, also
//! replayed on the corpus by `cd-wire/tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cd_wire::fuzzing::cd_line(data));
