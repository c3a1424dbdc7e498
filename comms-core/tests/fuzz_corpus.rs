//! The fuzz corpus of `envelope` (`fuzz/corpus/<target>/`, and
//! `fuzz/regressions/<target>/`) replayed through the fuzz target's own body: a property
//! broken by a committed input fails here, without a fuzzer build (docs/HARDENING.md).

use comms_test_support::fuzz_corpus::replay;

#[test]
fn envelope_corpus() {
    let n = replay("envelope", comms_core::fuzzing::envelope);
    eprintln!("envelope: {n} inputs replayed");
}
