//! validate() (header checks + CRC-32C) of a 16 KiB uncompressed batch.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn batch_16_kib() -> BytesMut {
    let records: Vec<Record> = (0..16)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i,
            key: None,
            value: Some(Bytes::from(vec![b'x'; 1000])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf
}

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
