//! The partition log's write path on real O_DIRECT files: `stamp_batch` and `append` (stamp
//! the log end offset, stage) plus `flush` (write and `fdatasync`) of 16 KiB batches, one batch per flush (the latency
//! case) and 64 batches per flush (group commit). Runs inside one glommio executor, as a
//! shard does; the numbers include the disk, so compare runs side by side on one machine.

use std::time::{Duration, Instant};

mod common;

use common::batch_16_kib;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use corelog::protocol::record_batch;
use corelog::storage::{stamp_batch, BatchCache, Log, LogConfig};

/// Appends and flushes `iterations` rounds of `batches_per_flush` batches; returns the time.
fn append_and_flush(iterations: u64, batches_per_flush: usize) -> Duration {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let path = dir.path().to_path_buf();
    let executor = glommio::LocalExecutorBuilder::default().spawn(move || async move {
        corelog::storage::prime_device(&path).await.unwrap();
        let config = LogConfig {
            segment_bytes: 256 << 20,
            ..LogConfig::default()
        };
        let log = Log::open(path.join("bench-0"), config, BatchCache::new(64 << 20))
            .await
            .unwrap();
        let batch = batch_16_kib();
        let summary = record_batch::validate(&batch).unwrap();
        let started = Instant::now();
        for _ in 0..iterations {
            for _ in 0..batches_per_flush {
                let at = log.log_end_offset();
                let (stamped, meta) = stamp_batch(batch.clone(), &summary, at, None);
                log.append(stamped, meta).unwrap();
            }
            log.flush().await.unwrap();
        }
        let elapsed = started.elapsed();
        log.close().await.unwrap();
        elapsed
    });
    executor.unwrap().join().unwrap()
}

fn bench_appender(c: &mut Criterion) {
    let batch_bytes = batch_16_kib().len() as u64;
    let mut group = c.benchmark_group("appender");
    group.sample_size(10);
    for batches_per_flush in [1usize, 64] {
        group.throughput(Throughput::Bytes(batch_bytes * batches_per_flush as u64));
        group.bench_function(format!("append_flush_{batches_per_flush}x16KiB"), |b| {
            b.iter_custom(|iterations| append_and_flush(iterations, batches_per_flush))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_appender);
criterion_main!(benches);
