//! Micro-benchmarks of the cd: codec: parse, serialize, and the router's peek_route+restamp.
//! (The native receiver's parse-in-place + decode is `comms-native/benches/receive.rs`.)

use std::hint::black_box;

use bytes::BytesMut;
use cd_wire::{parse, peek_route, restamp_head, serialize, RestampError};
use criterion::{criterion_group, criterion_main, Criterion};

/// A typical stamped daemon line (docs/PROTOCOL.md §7).
const LINE: &[u8] =
    b"<vm:probe_a probe_b/PROBE_PING x=\"a;b\";y=1;z=line\\nbreak;filename=/var/log/communicator/communicatord.log\n";

fn benches(c: &mut Criterion) {
    c.bench_function("parse typical line", |b| b.iter(|| parse(black_box(LINE))));

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
