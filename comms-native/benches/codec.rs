//! Micro-benchmarks of the cd: codec: parse, serialize, and the router's peek_route+restamp.

use std::hint::black_box;

use bytes::BytesMut;
use comms_core::Address;
use comms_native::codec::{
    parse, parse_view, peek_route, restamp_head, serialize, Parsed, RestampError,
};
use comms_native::transport::mapping::from_view;
use criterion::{criterion_group, criterion_main, Criterion};

/// A typical stamped daemon line (cd-wire.md §7).
const LINE: &[u8] =
    b"<vm:probe_a probe_b/PROBE_PING x=\"a;b\";y=1;z=line\\nbreak;filename=/var/log/communicator/communicatord.log\n";

fn benches(c: &mut Criterion) {
    c.bench_function("parse typical line", |b| b.iter(|| parse(black_box(LINE))));

    // What the native transport's receiver does per line: parse in place, decode to a Message.
    let local = Address::new("vm", "probe_b").expect("address");
    let mut last = None;
    c.bench_function("parse_view + from_view (receiver, to a Message)", |b| {
        b.iter(|| match parse_view(black_box(LINE)) {
            Ok(Parsed::View(v)) => Some(from_view(&v, &local, &mut last).message),
            _ => None,
        })
    });

    let msg = match parse(LINE) {
        Ok(m) => m,
        Err(e) => panic!("bench line does not parse: {e}"),
    };
    let mut out = BytesMut::with_capacity(256);
    c.bench_function("serialize typical message", |b| {
        b.iter(|| {
            out.clear();
            serialize(black_box(&msg), &mut out)
        })
    });

    c.bench_function("peek_route + restamp_head", |b| {
        b.iter(|| -> Result<usize, RestampError> {
            out.clear();
            let head = peek_route(black_box(LINE))?;
            // A router would look up `head.server`/`head.service` here.
            restamp_head(&head, "vm", "probe_a", &mut out)?;
            Ok(head.service.len())
        })
    });
}

criterion_group!(codec, benches);
criterion_main!(codec);
