//! Sparse offset and time index lookups over a full 1 GiB segment's worth of entries.

use corelog::storage::{lookup_offset, lookup_time_below, OffsetEntry, TimeEntry};
use criterion::{criterion_group, criterion_main, Criterion};

fn bench_lookup(c: &mut Criterion) {
    // 1 GiB segment, one entry per 4 KiB: 262144 entries.
    let count = 262_144u32;
    let offsets: Vec<OffsetEntry> = (0..count)
        .map(|i| OffsetEntry {
            relative_offset: i * 20,
            position: i * 4096,
        })
        .collect();
    let times: Vec<TimeEntry> = (0..count)
        .map(|i| TimeEntry {
            timestamp: i64::from(i) * 7,
            relative_offset: i * 20,
        })
        .collect();
    let mut target = 0u32;
    c.bench_function("index/lookup_offset_262k", |b| {
        b.iter(|| {
            target = target.wrapping_add(7_919) % (count * 20);
            lookup_offset(std::hint::black_box(&offsets), target)
        })
    });
    let mut timestamp = 0i64;
    c.bench_function("index/lookup_time_262k", |b| {
        b.iter(|| {
            timestamp = (timestamp + 7_919) % (i64::from(count) * 7);
            lookup_time_below(std::hint::black_box(&times), timestamp)
        })
    });
}

criterion_group!(benches, bench_lookup);
criterion_main!(benches);
