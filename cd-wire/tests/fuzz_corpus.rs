//! The fuzz corpus of `cd_line`, `cd_datagram` (`fuzz/corpus/<target>/`, and
//! `fuzz/regressions/<target>/`) replayed through the fuzz target's own body: a property
//! broken by a committed input fails here, without a fuzzer build (docs/HARDENING.md).

use comms_test_support::fuzz_corpus::replay;

#[test]
fn cd_line_corpus() {
    let n = replay("cd_line", cd_wire::fuzzing::cd_line);
    eprintln!("cd_line: {n} inputs replayed");
}

#[test]
fn cd_datagram_corpus() {
    let n = replay("cd_datagram", cd_wire::fuzzing::cd_datagram);
    eprintln!("cd_datagram: {n} inputs replayed");
}
