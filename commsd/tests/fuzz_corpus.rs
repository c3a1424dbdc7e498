//! The fuzz corpus of `peer_link` (`fuzz/corpus/peer_link/`, and `fuzz/regressions/peer_link/`)
//! replayed through the fuzz target's own body (`commsd::fuzzing::peer_link`): a property
//! broken by a committed input fails here, without a fuzzer build (docs/HARDENING.md).

use comms_test_support::fuzz_corpus::replay;

#[test]
fn peer_link_corpus() {
    let n = replay("peer_link", commsd::fuzzing::peer_link);
    eprintln!("peer_link: {n} inputs replayed");
}
