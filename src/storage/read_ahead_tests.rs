//! Read-ahead of `Log` on real O_DIRECT files: sequential readers hit it across segments,
//! deletions in flight never let it serve, its budget bounds it, and its faults stay its own.
//! Each log reads through a batch cache of zero bytes, so that every read misses the cache.

use crate::ids::Offset;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;

use crate::protocol::record_batch::{self, encode_plain_batch, validate, PlainRecord};
use crate::storage::{faults, BatchCache, Log, LogConfig, ReadAheadStats, StorageError};

/// Small segments, so that a few hundred KiB of batches cross several of them.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 128 * 1024,
        index_interval_bytes: 4096,
        ..LogConfig::default()
    }
}

fn uncached(read_ahead_bytes: usize) -> Rc<BatchCache> {
    BatchCache::with_read_ahead(0, read_ahead_bytes)
}

async fn open(dir: &Path, cache: &Rc<BatchCache>) -> Rc<Log> {
    Log::open(dir.to_path_buf(), config(), cache.clone())
        .await
        .unwrap()
}

/// Appends `n` batches of 4 records of 1000 bytes, flushes, and returns each batch as stored.
async fn fill(log: &Log, n: usize) -> Vec<Bytes> {
    let mut stored = Vec::new();
    for i in 0..n {
        let records = (0..4).map(|r| PlainRecord {
            timestamp: crate::metadata::now_ms() + (i * 4 + r) as i64,
            key: None,
            value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; 1000])),
        });
        let batch: BytesMut = encode_plain_batch(records, Compression::None).unwrap();
        let summary = validate(&batch).unwrap();
        let mut expected = batch.clone();
        let result = log.append_validated(batch, &summary, None).unwrap();
        record_batch::set_base_offset(&mut expected, result.base_offset.get());
        stored.push(expected.freeze());
    }
    log.flush().await.unwrap();
    stored
}

/// Reads from `offset` to the watermark `max_bytes` at a time, as a consumer would.
async fn read_to_end(log: &Log, mut offset: Offset, max_bytes: usize) -> (Vec<Bytes>, usize) {
    let mut all = Vec::new();
    let mut fetches = 0;
    while offset < log.durable_end_offset() {
        let batches = log.read_durable(offset, max_bytes).await.unwrap();
        fetches += 1;
        let last = validate(batches.last().unwrap()).unwrap();
        offset = Offset(last.base_offset) + i64::from(last.last_offset_delta) + 1;
        all.extend(batches);
    }
    (all, fetches)
}

/// A log of `batches` batches in `root`'s partition `ahead-0`, read once from offset 0 while
/// every read of its directory is delayed by `delay` (e.g. "50ms"): the read-ahead that first
/// answer started is then still in flight. The delay stays armed.
struct SlowStart {
    dir: PathBuf,
    cache: Rc<BatchCache>,
    log: Rc<Log>,
    stored: Vec<Bytes>,
    first: Vec<Bytes>,
}

async fn first_read_on_slow_disk(root: &Path, batches: usize, delay: &str) -> SlowStart {
    let dir = root.join("ahead-0");
    let cache = uncached(8 << 20);
    let log = open(&dir, &cache).await;
    let stored = fill(&log, batches).await;
    arm(&dir, &format!("read {delay}"), None);
    let first = log.read_durable(Offset::ZERO, 16 * 1024).await.unwrap();
    SlowStart {
        dir,
        cache,
        log,
        stored,
        first,
    }
}

/// Waits until read-ahead holds nothing: reads in flight for dropped streams end by
/// themselves and give their bytes back then.
async fn until_nothing_held(cache: &BatchCache) {
    while stats(cache).held_bytes > 0 {
        crate::runtime::sleep(Duration::from_millis(5)).await;
    }
}

fn stats(cache: &BatchCache) -> ReadAheadStats {
    cache.read_ahead_stats()
}

/// Arms `<op> <effect>` for this test's partition directory only, `count` times if given.
fn arm(dir: &Path, op_effect: &str, count: Option<u64>) {
    let count = count.map_or(String::new(), |count| count.to_string());
    faults::arm(&format!("{op_effect} {}/ {count}", dir.display())).unwrap();
}

/// Fault hits so far of the plan (one fault armed at a time in these tests).
fn fault_hits() -> u64 {
    let plan = faults::describe();
    let hits = plan.split("hits=").nth(1).unwrap_or("0");
    hits.trim().parse().unwrap()
}

fn run<F, Fut>(test: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    super::tests::run_in_root("corelog-read-ahead", |root| test(root.join("ahead-0")));
}

/// A sequential reader misses once, then every fetch is served from read-ahead, across
/// segment boundaries, with the same bytes as stored; batches appended later still come.
#[test]
fn sequential_reads_hit_the_read_ahead_across_segments() {
    run(|dir| async move {
        let cache = uncached(8 << 20);
        let log = open(&dir, &cache).await;
        let mut stored = fill(&log, 300).await;
        let segments = std::fs::read_dir(&dir).unwrap().count();
        assert!(
            segments > 3 * 5,
            "several segments (3 files each): {segments}"
        );
        let (read, fetches) = read_to_end(&log, Offset::ZERO, 16 * 1024).await;
        assert_eq!(read, stored);
        let seen = stats(&cache);
        assert_eq!(seen.misses, 1, "{seen:?}");
        assert_eq!(seen.hits as usize, fetches - 1, "{seen:?}");
        stored.extend(fill(&log, 20).await);
        let (more, _) = read_to_end(&log, Offset(1200), 16 * 1024).await;
        assert_eq!(more, stored[300..]);
        log.close().await.unwrap();
        assert_eq!(stats(&cache).held_bytes, 0, "close drops every chunk");
    });
}

/// Two readers of one log at different offsets each keep their own stream: neither evicts
/// the other's chunks, so each misses once.
#[test]
fn two_readers_of_one_log_do_not_thrash() {
    run(|dir| async move {
        let cache = uncached(8 << 20);
        let log = open(&dir, &cache).await;
        let stored = fill(&log, 200).await;
        let mut offsets = [Offset::ZERO, Offset(400)];
        let mut read = [Vec::new(), Vec::new()];
        while offsets[1] < log.durable_end_offset() {
            for reader in 0..2 {
                let batches = log.read_durable(offsets[reader], 16 * 1024).await.unwrap();
                let last = validate(batches.last().unwrap()).unwrap();
                offsets[reader] = Offset(last.base_offset) + i64::from(last.last_offset_delta) + 1;
                read[reader].extend(batches);
            }
        }
        assert_eq!(read[0], stored[..read[0].len()]);
        assert_eq!(read[1], stored[100..]);
        assert_eq!(stats(&cache).misses, 2, "{:?}", stats(&cache));
        log.close().await.unwrap();
    });
}

/// A fetch for the offset a read-ahead is still reading (slowed by an injected delay) waits
/// for it instead of reading the same bytes again: a hit, not a second miss.
#[test]
fn fetch_waits_for_the_read_ahead_in_flight() {
    super::fault_tests::run(|root| async move {
        let SlowStart {
            cache,
            log,
            stored,
            first,
            ..
        } = first_read_on_slow_disk(&root, 100, "50ms").await;
        assert!(stats(&cache).held_bytes > 0, "a read-ahead started");
        let next = Offset(4 * first.len() as i64);
        let second = log.read_durable(next, 16 * 1024).await.unwrap();
        faults::clear();
        assert_eq!(first, stored[..first.len()]);
        assert_eq!(second, stored[first.len()..first.len() + second.len()]);
        assert_eq!((stats(&cache).misses, stats(&cache).hits), (1, 1));
        log.close().await.unwrap();
    });
}

/// Segments deleted (DeleteRecords, retention) while a read-ahead is in flight: its bytes are
/// thrown away, the next fetch reads from disk, and nothing below the new start is served.
#[test]
fn deletion_during_read_ahead_never_serves_it() {
    super::fault_tests::run(|root| async move {
        let SlowStart {
            cache,
            log,
            stored,
            first,
            ..
        } = first_read_on_slow_disk(&root, 300, "100ms").await;
        let next = Offset(4 * first.len() as i64);
        // The read-ahead at `next` is now sleeping in its read; delete past it.
        let start = log
            .truncate_prefix(Offset(600), crate::metadata::now_ms())
            .await
            .unwrap();
        faults::clear();
        assert!(start > next, "a whole segment went: start {start}");
        assert!(matches!(
            log.read_durable(next, 16 * 1024).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        let misses = stats(&cache).misses;
        let (read, _) = read_to_end(&log, start, 16 * 1024).await;
        assert_eq!(read, stored[(start.get() / 4) as usize..]);
        assert_eq!(
            stats(&cache).misses,
            misses + 1,
            "the stale chunk was not used"
        );
        // Retention of everything but the active segment, with chunks held: dropped too.
        log.set_config(LogConfig {
            retention_bytes: 0,
            ..config()
        });
        let tail_start = log.log_start_offset();
        let _ = log.read_durable(tail_start, 16 * 1024).await.unwrap();
        log.enforce_retention(0).await.unwrap();
        assert!(log.log_start_offset() > tail_start);
        until_nothing_held(&cache).await;
        assert_eq!(stats(&cache).held_bytes, 0, "{:?}", stats(&cache));
        log.close().await.unwrap();
    });
}

/// A closed log's read-ahead in flight is thrown away, and the log reopened on the same
/// directory reads everything again from disk.
#[test]
fn close_during_read_ahead_drops_it() {
    super::fault_tests::run(|root| async move {
        let SlowStart {
            dir,
            cache,
            log,
            stored,
            first,
        } = first_read_on_slow_disk(&root, 100, "50ms").await;
        log.close().await.unwrap();
        faults::clear();
        let next = Offset(4 * first.len() as i64);
        assert!(matches!(
            log.read_durable(next, 1).await,
            Err(StorageError::Closed)
        ));
        let log = open(&dir, &cache).await;
        let (read, _) = read_to_end(&log, Offset::ZERO, 16 * 1024).await;
        assert_eq!(read, stored);
        log.close().await.unwrap();
        until_nothing_held(&cache).await;
    });
}

/// Three logs read at once through one shard budget that fits two chunks: read-ahead never
/// holds more than the budget, the reader left without it still reads everything, and a
/// stream idle past its time gives its room to another.
#[test]
fn budget_bounds_read_ahead_memory() {
    run(|root| async move {
        let chunk = super::read_ahead::chunk_bytes_for(16 * 1024);
        let budget = 2 * chunk + chunk / 2;
        let cache = uncached(budget);
        let mut logs = Vec::new();
        for partition in 0..3 {
            let log = open(&root.with_extension(format!("p{partition}")), &cache).await;
            let stored = fill(&log, 150).await;
            logs.push((log, stored, Offset::ZERO, Vec::new()));
        }
        while logs
            .iter()
            .any(|(log, _, offset, _)| *offset < log.durable_end_offset())
        {
            for (log, _, offset, read) in logs.iter_mut() {
                if *offset < log.durable_end_offset() {
                    let batches = log.read_durable(*offset, 16 * 1024).await.unwrap();
                    let last = validate(batches.last().unwrap()).unwrap();
                    *offset = Offset(last.base_offset) + i64::from(last.last_offset_delta) + 1;
                    read.extend(batches);
                }
                assert!(stats(&cache).held_bytes <= budget, "{:?}", stats(&cache));
            }
        }
        for (_, stored, _, read) in &logs {
            assert_eq!(read, stored);
        }
        assert!(
            stats(&cache).misses > 3,
            "the budget refused some: {:?}",
            stats(&cache)
        );
        for (log, ..) in logs {
            log.close().await.unwrap();
        }
        assert_eq!(stats(&cache).held_bytes, 0);
    });
}

/// A read error in a read-ahead is nobody's failure: the fetch that needs those bytes reads
/// them itself and gets them, and the log is not fenced.
#[test]
fn read_ahead_fault_fails_nothing() {
    super::fault_tests::run(|root| async move {
        let dir = root.join("ahead-0");
        let cache = uncached(8 << 20);
        let log = open(&dir, &cache).await;
        let stored = fill(&log, 100).await;
        let first = log.read_durable(Offset::ZERO, 16 * 1024).await.unwrap();
        // The next read of this log is a read-ahead's (the reader only fetches what follows
        // the first answer): it takes the one fault.
        arm(&dir, "read EIO", Some(1));
        let (rest, _) = read_to_end(&log, Offset(4 * first.len() as i64), 16 * 1024).await;
        assert_eq!(fault_hits(), 1, "{}", faults::describe());
        faults::clear();
        assert_eq!([first, rest].concat(), stored);
        // The failed chunk was read again by the fetch (a miss) or by the next read-ahead.
        assert!(stats(&cache).misses <= 2, "{:?}", stats(&cache));
        let more = fill(&log, 1).await;
        assert_eq!(log.read_durable(Offset(400), 1 << 20).await.unwrap(), more);
        log.close().await.unwrap();
    });
}
