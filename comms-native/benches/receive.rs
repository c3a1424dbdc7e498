//! Micro-benchmark of the native transport's receive step per line: parse in place
//! (`cd_wire::parse_view`), then decode to a `comms_core::Message` (`mapping::from_view`).
//! The codec alone is `cd-wire/benches/codec.rs`.

use std::hint::black_box;

use cd_wire::{parse_view, Parsed};
use comms_core::Address;
use comms_native::transport::mapping::from_view;
use criterion::{criterion_group, criterion_main, Criterion};

/// A typical stamped daemon line (docs/PROTOCOL.md §7).
const LINE: &[u8] =
    b"<vm:probe_a probe_b/PROBE_PING x=\"a;b\";y=1;z=line\\nbreak;filename=/var/log/communicator/communicatord.log\n";

fn benches(c: &mut Criterion) {
    // What the native transport's receiver does per line: parse in place, decode to a Message.
    let local = Address::new("vm", "probe_b").expect("address");
    let mut last = None;
    c.bench_function("parse_view + from_view (receiver, to a Message)", |b| {
        b.iter(|| match parse_view(black_box(LINE)) {
            Ok(Parsed::View(v)) => Some(from_view(&v, &local, &mut last).message),
            _ => None,
        })
    });
}

criterion_group!(receive, benches);
criterion_main!(receive);
