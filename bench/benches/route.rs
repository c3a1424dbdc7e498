//! The daemon's routing step: one typical line from `probe_a` to `probe_b` through the real
//! router (head peek, canonical check, lookup, re-stamp, batch hand-off), no sockets.
//! Reports time per chunk; divide by the lines per chunk for ns per routed line.

use std::hint::black_box;

use commsd::bench::RouteBench;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// A typical service line (docs/PROTOCOL.md §7), canonical as any stock or comms sender writes it.
const LINE: &str = "probe_b/PROBE_PING comms_id=01HZX3K9Q8R7;x=\"a;b\";y=1;z=line\\nbreak\n";

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    for per_chunk in [1usize, 100] {
        let chunk = LINE.repeat(per_chunk);
        let mut bench = RouteBench::new();
        assert!(
            bench.route_chunk(chunk.as_bytes()) > 0,
            "line was not routed"
        );
        g.throughput(Throughput::Elements(per_chunk as u64));
        g.bench_function(format!("{per_chunk} line(s) per read chunk"), |b| {
            b.iter(|| bench.route_chunk(black_box(chunk.as_bytes())))
        });
    }
    g.finish();
}

criterion_group!(route, benches);
criterion_main!(route);
