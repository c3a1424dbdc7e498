//! Fuzz target `envelope`: its body (properties, input layout) is `comms_core::fuzzing::envelope`, also
//! replayed on the corpus by `comms-core/tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| comms_core::fuzzing::envelope(data));
