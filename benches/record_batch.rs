//! validate() (header checks + CRC-32C) of a 16 KiB uncompressed batch.

mod common;

use common::batch_16_kib;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench_validate(c: &mut Criterion) {
    let batch = batch_16_kib();
    let mut group = c.benchmark_group("record_batch");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("validate_16KiB", |b| {
        b.iter(|| corelog::protocol::record_batch::validate(std::hint::black_box(&batch)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_validate);
criterion_main!(benches);
