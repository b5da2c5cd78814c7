//! Behaviour of `Log` on real O_DIRECT files in a temporary directory under /tmp (ext4).

use crate::ids::Offset;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;

use crate::protocol::record_batch::{
    self, encode_plain_batch, validate, BatchSummary, PlainRecord,
};
use crate::storage::StorageError;
use crate::storage::{
    prime_device, stamp_batch, AppendTicket, BatchCache, Log, LogConfig, Settled,
};

/// Where the tests' appends went.
#[derive(Debug)]
pub(super) struct Appended {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub ticket: AppendTicket,
}

/// What the partition layer does for the tests of the log alone.
impl Log {
    /// Stamps a validated batch at the log end and appends it.
    pub(super) fn append_validated(
        &self,
        batch: BytesMut,
        summary: &BatchSummary,
        log_append_time: Option<i64>,
    ) -> Result<Appended, StorageError> {
        let base_offset = self.log_end_offset();
        let (batch, meta) = stamp_batch(batch, summary, base_offset, log_append_time);
        let ticket = self.append(batch, meta)?;
        Ok(Appended {
            base_offset,
            last_offset: meta.last_offset,
            ticket,
        })
    }

    /// A read bounded by the durable end only.
    pub(super) async fn read_durable(
        &self,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, StorageError> {
        self.read(offset, max_bytes, Offset(i64::MAX)).await
    }
}

fn run<F, Fut>(test: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    run_in_root("corelog-storage", |root| test(root.join("topic-0")));
}

/// Runs `test` on a fresh executor with a primed temporary data root under /tmp
/// (ext4, so O_DIRECT works); the root is removed afterwards.
pub(super) fn run_in_root<F, Fut>(prefix: &str, test: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let root = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    let path = root.path().to_path_buf();
    crate::runtime::run_on_new_executor(move || async move {
        prime_device(&path).await.unwrap();
        test(path).await
    });
}

/// A log under a relative path works from open to removal: the file layer hands glommio only
/// absolute paths (glommio opens directories relative to no directory, so a relative path
/// failed with EBADF). The path climbs from the working directory to the root under /tmp.
#[test]
fn log_under_a_relative_path_works() {
    run_in_root("corelog-relative", |root| async move {
        let cwd = std::env::current_dir().unwrap();
        let up: PathBuf = cwd.components().skip(1).map(|_| "..").collect();
        let dir = up.join(root.strip_prefix("/").unwrap()).join("topic-0");
        assert!(dir.is_relative());
        let log = open(&dir, config(1 << 20)).await;
        fill(&log, 3, 100).await;
        log.remove().await.unwrap();
        assert!(!root.join("topic-0").exists());
    });
}

/// A batch of `count` records with timestamps from `timestamp`, value bytes `value_bytes` each.
fn batch(count: i64, timestamp: i64, value_bytes: usize) -> BytesMut {
    let records = (0..count).map(|i| PlainRecord {
        timestamp: timestamp + i,
        key: None,
        value: Some(Bytes::from(vec![b'x'; value_bytes])),
    });
    encode_plain_batch(records, Compression::None).unwrap()
}

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

async fn open(dir: &Path, config: LogConfig) -> Rc<Log> {
    Log::open(dir.to_path_buf(), config, BatchCache::new(1 << 20))
        .await
        .unwrap()
}

/// Appends `n` batches of 3 records (timestamps 1000 * i) and flushes; returns their bytes.
async fn fill(log: &Log, n: i64, value_bytes: usize) -> Vec<Bytes> {
    let mut stored = Vec::new();
    for i in 0..n {
        let bytes = batch(3, 1000 * i, value_bytes);
        let summary = validate(&bytes).unwrap();
        let result = log.append_validated(bytes, &summary, None).unwrap();
        assert_eq!(result.last_offset - result.base_offset, 2);
        stored.push(result.base_offset);
    }
    log.flush().await.unwrap();
    let mut all = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.durable_end_offset() {
        let batches = log.read_durable(offset, 1).await.unwrap();
        assert_eq!(batches.len(), 1);
        offset = Offset(record_batch::validate(&batches[0]).unwrap().base_offset) + 3;
        all.push(batches[0].clone());
    }
    all
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".log"))
        .collect();
    names.sort();
    names
}

/// Batches come back with their assigned offsets and valid CRCs across many segment rolls.
#[test]
fn append_flush_read_round_trip_across_rolls() {
    run(|dir| async move {
        let log = open(&dir, config(8 * 1024)).await;
        let stored = fill(&log, 200, 300).await;
        assert_eq!(stored.len(), 200);
        assert_eq!(log.durable_end_offset(), Offset(600));
        assert_eq!(log.log_end_offset(), Offset(600));
        assert!(
            segment_files(&dir).len() > 10,
            "rolled: {:?}",
            segment_files(&dir)
        );
        for (i, bytes) in stored.iter().enumerate() {
            let summary = validate(bytes).unwrap();
            assert_eq!(summary.base_offset, 3 * i as i64);
            assert_eq!(summary.base_timestamp, 1000 * i as i64);
        }
        // An offset in the middle of a batch returns that whole batch first.
        let from_middle = log.read_durable(Offset(301), 1 << 20).await.unwrap();
        assert_eq!(validate(&from_middle[0]).unwrap().base_offset, 300);
        log.close().await.unwrap();
    });
}

/// Reads below the cache go to disk and return the same bytes as the cache did.
#[test]
fn disk_reads_match_cached_reads() {
    run(|dir| async move {
        let log = Log::open(dir.clone(), config(8 * 1024), BatchCache::new(4096))
            .await
            .unwrap();
        let stored = fill(&log, 100, 300).await;
        let first = log.read_durable(Offset::ZERO, 10_000).await.unwrap();
        assert!(first.len() > 1);
        assert_eq!(first[0], stored[0]);
        assert_eq!(first[1], stored[1]);
        log.close().await.unwrap();
    });
}

/// After a clean close, reopening gives the same offsets and the same bytes.
#[test]
fn reopen_after_close_keeps_everything() {
    run(|dir| async move {
        let log = open(&dir, config(8 * 1024)).await;
        let stored = fill(&log, 50, 500).await;
        log.close().await.unwrap();
        assert!(matches!(
            log.read_durable(Offset::ZERO, 1).await,
            Err(StorageError::Closed)
        ));
        let log = open(&dir, config(8 * 1024)).await;
        assert_eq!(log.durable_end_offset(), Offset(150));
        assert_eq!(log.log_end_offset(), Offset(150));
        for (i, bytes) in stored.iter().enumerate() {
            assert_eq!(
                &log.read_durable(Offset(3 * i as i64), 1).await.unwrap()[0],
                bytes
            );
        }
        let more = fill(&log, 1, 10).await;
        assert_eq!(validate(more.last().unwrap()).unwrap().base_offset, 150);
        log.close().await.unwrap();
    });
}

/// Dropping the log without close (a crash) keeps every flushed batch; unflushed ones go.
#[test]
fn reopen_after_crash_keeps_flushed_batches() {
    run(|dir| async move {
        let log = open(&dir, config(8 * 1024)).await;
        let stored = fill(&log, 40, 500).await;
        let extra = batch(1, 0, 10);
        let summary = validate(&extra).unwrap();
        log.append_validated(extra, &summary, None).unwrap();
        assert!(log.has_unflushed());
        drop(log);
        let log = open(&dir, config(8 * 1024)).await;
        assert_eq!(log.durable_end_offset(), Offset(120));
        assert_eq!(
            log.read_durable(Offset(117), 1).await.unwrap()[0],
            stored[39]
        );
        log.close().await.unwrap();
    });
}

/// Pre-writing steps after a flush leave zeros ahead of the log end (up to the roll size), and a crash
/// with them in place recovers exactly the flushed batches and cuts the zeros off.
#[test]
fn flush_pre_writes_ahead_and_recovery_cuts_the_zeros() {
    run(|dir| async move {
        let log = open(&dir, config(1 << 20)).await;
        // 300 KB: more than a cold log writes (see `prewrite`).
        let stored = fill(&log, 5, 20_000).await;
        let path = last_log_file(&dir);
        let logical: u64 = stored.iter().map(|b| b.len() as u64).sum();
        assert!(log.needs_preparing());
        while log.prepare_step().await {}
        assert!(!log.needs_preparing());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        drop(log);
        let log = open(&dir, config(1 << 20)).await;
        assert_eq!(log.durable_end_offset(), Offset(15));
        assert_eq!(
            log.read_durable(Offset::ZERO, 1 << 20).await.unwrap(),
            stored
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), logical);
        fill(&log, 1, 10).await;
        assert_eq!(log.durable_end_offset(), Offset(18));
        log.close().await.unwrap();
    });
}

fn last_log_file(dir: &Path) -> PathBuf {
    dir.join(segment_files(dir).last().unwrap())
}

/// A log cut in the middle of its last batch loses only that batch at recovery.
#[test]
fn torn_tail_is_truncated() {
    run(|dir| async move {
        let log = open(&dir, config(1 << 20)).await;
        let stored = fill(&log, 10, 500).await;
        drop(log);
        let path = last_log_file(&dir);
        let logical: usize = stored.iter().map(Bytes::len).sum();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len((logical - 100) as u64).unwrap();
        let log = open(&dir, config(1 << 20)).await;
        assert_eq!(log.durable_end_offset(), Offset(27));
        assert_eq!(log.read_durable(Offset(24), 1).await.unwrap()[0], stored[8]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() as usize,
            logical - stored[9].len()
        );
        fill(&log, 1, 10).await;
        assert_eq!(log.durable_end_offset(), Offset(30));
        log.close().await.unwrap();
    });
}

/// A flipped byte inside the last batch fails its CRC; recovery drops that batch only.
#[test]
fn corrupt_last_batch_is_truncated() {
    run(|dir| async move {
        let log = open(&dir, config(1 << 20)).await;
        let stored = fill(&log, 10, 500).await;
        log.close().await.unwrap();
        let path = last_log_file(&dir);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 50;
        bytes[at] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let log = open(&dir, config(1 << 20)).await;
        assert_eq!(log.durable_end_offset(), Offset(27));
        assert_eq!(
            log.read_durable(Offset::ZERO, 1 << 20).await.unwrap(),
            stored[..9].to_vec()
        );
        log.close().await.unwrap();
    });
}

/// Missing or garbage index files are rebuilt and lookups still land on the right batch.
#[test]
fn missing_and_garbage_indexes_are_rebuilt() {
    run(|dir| async move {
        let log = open(&dir, config(16 * 1024)).await;
        let stored = fill(&log, 60, 700).await;
        log.close().await.unwrap();
        let indexes: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "index" || e == "timeindex")
            })
            .collect();
        assert!(indexes.len() >= 4);
        for (i, path) in indexes.iter().enumerate() {
            if i % 2 == 0 {
                std::fs::remove_file(path).unwrap();
            } else {
                std::fs::write(path, b"garbage, not an index!").unwrap();
            }
        }
        let log = open(&dir, config(16 * 1024)).await;
        assert_eq!(log.durable_end_offset(), Offset(180));
        for (i, bytes) in stored.iter().enumerate() {
            assert_eq!(
                &log.read_durable(Offset(3 * i as i64 + 2), 1).await.unwrap()[0],
                bytes
            );
        }
        assert_eq!(
            log.find_batch_by_timestamp(30_500, Offset(i64::MAX))
                .await
                .unwrap()
                .unwrap(),
            stored[31]
        );
        log.close().await.unwrap();
    });
}

/// A max_bytes smaller than the first batch still returns that whole batch, and only it.
#[test]
fn read_returns_at_least_one_whole_batch() {
    run(|dir| async move {
        let log = open(&dir, config(1 << 20)).await;
        let stored = fill(&log, 5, 2000).await;
        let batches = log.read_durable(Offset::ZERO, 10).await.unwrap();
        assert_eq!(batches, vec![stored[0].clone()]);
        let two = log
            .read_durable(Offset(3), stored[1].len() + stored[2].len())
            .await
            .unwrap();
        assert_eq!(two, stored[1..3].to_vec());
        log.close().await.unwrap();
    });
}

/// Offsets below the start or above the watermark are out of range; the watermark is empty;
/// staged but unflushed batches are invisible.
#[test]
fn offset_out_of_range_cases() {
    run(|dir| async move {
        let log = open(&dir, config(1 << 20)).await;
        fill(&log, 2, 10).await;
        assert!(log.read_durable(Offset(6), 100).await.unwrap().is_empty());
        let bytes = batch(1, 0, 10);
        let summary = validate(&bytes).unwrap();
        log.append_validated(bytes, &summary, None).unwrap();
        assert_eq!(log.log_end_offset(), Offset(7));
        assert!(log.read_durable(Offset(6), 100).await.unwrap().is_empty());
        for bad in [-1, 7, 100].map(Offset) {
            match log.read_durable(bad, 100).await {
                Err(StorageError::OffsetOutOfRange {
                    requested,
                    log_start,
                    end,
                }) => {
                    assert_eq!((requested, log_start, end), (bad, Offset::ZERO, Offset(6)));
                }
                other => panic!("offset {bad}: {other:?}"),
            }
        }
        log.close().await.unwrap();
    });
}

/// Retention by bytes deletes whole old segments, never the active one, and moves the start.
#[test]
fn retention_by_bytes_deletes_old_segments() {
    run(|dir| async move {
        let log = open(&dir, config(8 * 1024)).await;
        fill(&log, 100, 300).await;
        let before = segment_files(&dir).len();
        let size = log.size_bytes();
        log.set_config(LogConfig {
            retention_bytes: 20 * 1024,
            ..config(8 * 1024)
        });
        log.enforce_retention(0).await.unwrap();
        let after = segment_files(&dir);
        assert!(
            after.len() < before && after.len() >= 3,
            "{before} -> {after:?}"
        );
        assert!(log.size_bytes() <= 20 * 1024 + 8 * 1024 && log.size_bytes() < size);
        let start = log.log_start_offset();
        assert_eq!(after[0], format!("{start:020}.log"));
        assert!(matches!(
            log.read_durable(start - 1, 1).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        let first = validate(&log.read_durable(start, 1).await.unwrap()[0]).unwrap();
        assert_eq!(Offset(first.base_offset), start);
        log.close().await.unwrap();
        let log = open(&dir, config(8 * 1024)).await;
        assert_eq!(log.log_start_offset(), start);
        log.close().await.unwrap();
    });
}

/// A replica's log (one with a retention floor) is not cut by retention itself: retention
/// says where the log start should go, and once the layer above moves it there, the segments
/// below it go, except those holding offsets at or past the floor.
#[test]
fn a_replicas_retention_moves_only_by_its_log_start() {
    run(|dir| async move {
        let log = open(&dir, config(8 * 1024)).await;
        fill(&log, 100, 300).await;
        log.set_config(LogConfig {
            retention_ms: 1,
            segment_ms: 1_000_000,
            ..config(8 * 1024)
        });
        log.set_retention_floor(Offset(0));
        log.enforce_retention(10_000_000).await.unwrap();
        assert_eq!(
            log.log_start_offset(),
            Offset(0),
            "retention alone deletes nothing"
        );
        let wanted = log
            .retention_start(10_000_000)
            .expect("old segments expire");
        assert!(
            wanted > Offset(150),
            "every closed segment expires: {wanted}"
        );
        log.truncate_prefix(wanted, 10_000_000).await.unwrap();
        assert_eq!(log.log_start_offset(), wanted);
        let first_segment = |dir: &Path| {
            std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with(".log"))
                .min()
                .unwrap()
        };
        assert_eq!(
            first_segment(&dir),
            format!("{:020}.log", 0),
            "the floor keeps them"
        );
        log.set_retention_floor(Offset(150));
        log.enforce_retention(10_000_000).await.unwrap();
        let first: i64 = first_segment(&dir)[..20].parse().unwrap();
        assert!(
            first > 0 && first <= 150,
            "segments below the floor go: {first}"
        );
        assert_eq!(
            log.retention_start(10_000_000),
            None,
            "the start is there already"
        );
        log.close().await.unwrap();
    });
}

/// A restart empties the log and begins it again past its old end: staged batches are
/// discarded, the old segments are gone, appends continue at the new start, and a reopen
/// finds the log as it was left.
#[test]
fn a_restarted_log_begins_at_the_new_start() {
    run(|dir| async move {
        let log = open(&dir, config(8 * 1024)).await;
        fill(&log, 40, 300).await;
        let staged = batch(3, 0, 10);
        let summary = validate(&staged).unwrap();
        let appended = log.append_validated(staged, &summary, None).unwrap();
        log.restart_at(Offset(1000)).await.unwrap();
        assert_eq!(appended.ticket.settled(), Settled::Discarded);
        assert_eq!(log.log_start_offset(), Offset(1000));
        assert_eq!(log.log_end_offset(), Offset(1000));
        assert!(matches!(
            log.read_durable(Offset(0), 1).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        fill(&log, 5, 300).await;
        assert_eq!(log.durable_end_offset(), Offset(1015));
        log.close().await.unwrap();
        let segments: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".log"))
            .collect();
        assert_eq!(segments, vec![format!("{:020}.log", 1000)]);
        let log = open(&dir, config(8 * 1024)).await;
        assert_eq!(log.log_start_offset(), Offset(1000));
        assert_eq!(log.log_end_offset(), Offset(1015));
        let batches = log.read_durable(Offset(1003), 1).await.unwrap();
        let header = record_batch::header(&batches[0]).unwrap();
        assert_eq!(header.base_offset.get(), 1003);
        log.close().await.unwrap();
    });
}

/// Retention by time deletes segments whose newest batch is older than retention_ms, and
/// segment_ms rolls an old active segment so it can expire too.
#[test]
fn retention_by_time_deletes_old_segments() {
    run(|dir| async move {
        let log = open(&dir, config(8 * 1024)).await;
        fill(&log, 100, 300).await; // timestamps 0 ..= 99_002
        let policy = LogConfig {
            retention_ms: 50_000,
            segment_ms: 1_000_000,
            ..config(8 * 1024)
        };
        log.set_config(policy.clone());
        log.enforce_retention(100_000).await.unwrap();
        let start = log.log_start_offset();
        let first = validate(&log.read_durable(start, 1).await.unwrap()[0]).unwrap();
        assert!(
            start > Offset::ZERO && first.max_timestamp >= 40_000,
            "start {start}"
        );
        // Everything is old now: the active segment rolls (segment_ms) and then expires.
        log.set_config(LogConfig {
            segment_ms: 10,
            ..policy
        });
        log.enforce_retention(10_000_000).await.unwrap();
        assert_eq!(log.log_start_offset(), Offset(300));
        assert_eq!(segment_files(&dir).len(), 1);
        assert!(log.read_durable(Offset(300), 1).await.unwrap().is_empty());
        log.close().await.unwrap();
    });
}

/// Lookup by time returns the first batch whose max timestamp reaches the target.
#[test]
fn find_batch_by_timestamp_and_max_timestamp() {
    run(|dir| async move {
        let log = open(&dir, config(8 * 1024)).await;
        let stored = fill(&log, 100, 300).await;
        assert_eq!(
            log.find_batch_by_timestamp(-5, Offset(i64::MAX))
                .await
                .unwrap()
                .unwrap(),
            stored[0]
        );
        assert_eq!(
            log.find_batch_by_timestamp(42_001, Offset(i64::MAX))
                .await
                .unwrap()
                .unwrap(),
            stored[42]
        );
        assert_eq!(
            log.find_batch_by_timestamp(42_003, Offset(i64::MAX))
                .await
                .unwrap()
                .unwrap(),
            stored[43]
        );
        assert_eq!(
            log.find_batch_by_timestamp(99_003, Offset(i64::MAX))
                .await
                .unwrap(),
            None
        );
        assert_eq!(log.max_timestamp(), Some((99_002, Offset(299))));
        let bytes = batch(2, 5, 10);
        let summary = validate(&bytes).unwrap();
        log.append_validated(bytes, &summary, Some(1_000_000))
            .unwrap();
        log.flush().await.unwrap();
        assert_eq!(log.max_timestamp(), Some((1_000_000, Offset(301))));
        let appended = log
            .find_batch_by_timestamp(500_000, Offset(i64::MAX))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(validate(&appended).unwrap().max_timestamp, 1_000_000);
        log.close().await.unwrap();
    });
}

/// remove() deletes the partition directory.
#[test]
fn remove_deletes_directory() {
    run(|dir| async move {
        let log = open(&dir, config(8 * 1024)).await;
        fill(&log, 3, 10).await;
        log.remove().await.unwrap();
        assert!(!dir.exists());
        let parent = std::fs::read_dir(dir.parent().unwrap()).unwrap();
        assert!(parent
            .map(|e| e.unwrap().file_name())
            .all(|n| !n.to_string_lossy().contains("topic-0")));
    });
}

/// The names of the files in `dir`, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A close persists only what changed since open: a log never written leaves just its empty
/// segment (and reopens without rewriting anything), a written one gets its indexes, and
/// closing it again after a reopen rewrites nothing.
#[test]
fn close_persists_only_what_changed() {
    run(|dir| async move {
        let log = open(&dir, config(1 << 20)).await;
        log.close().await.unwrap();
        assert_eq!(file_names(&dir), ["00000000000000000000.log"]);
        let log = open(&dir, config(1 << 20)).await;
        assert_eq!(
            file_names(&dir),
            ["00000000000000000000.log"],
            "open writes nothing"
        );
        fill(&log, 2, 100).await;
        log.close().await.unwrap();
        let written = file_names(&dir);
        assert_eq!(
            written,
            [
                "00000000000000000000.index",
                "00000000000000000000.log",
                "00000000000000000000.timeindex",
            ]
        );
        let modified = |name: &str| {
            std::fs::metadata(dir.join(name))
                .unwrap()
                .modified()
                .unwrap()
        };
        let before: Vec<_> = written.iter().map(|name| modified(name)).collect();
        let log = open(&dir, config(1 << 20)).await;
        assert_eq!(log.durable_end_offset(), Offset(6));
        log.close().await.unwrap();
        let after: Vec<_> = written.iter().map(|name| modified(name)).collect();
        assert_eq!(file_names(&dir), written);
        assert_eq!(before, after, "an unchanged log rewrites no file");
    });
}

/// Pre-writing is spent on hot logs only, within the shard's budget: a log that wrote little
/// gets none, hot logs get theirs until the budget runs out, appends that overwrite the zeros
/// give bytes back, and so do closes.
#[test]
fn pre_writing_is_for_hot_logs_within_the_budget() {
    run_in_root("corelog-prewrite", |root| async move {
        const MIB: u64 = 1024 * 1024;
        let cache = BatchCache::with_budgets(1 << 20, 1 << 20, 20 * MIB);
        let mut logs = Vec::new();
        for index in 0..4 {
            let dir = root.join(format!("topic-{index}"));
            let log = Log::open(dir, config(64 * MIB), cache.clone())
                .await
                .unwrap();
            logs.push(log);
        }
        fill(&logs[0], 1, 100).await;
        assert!(!logs[0].needs_preparing(), "a cold log gets no zeros");
        for log in &logs[1..] {
            // 3 x 100 KB: hot.
            fill(log, 1, 100_000).await;
            assert!(log.needs_preparing());
            while log.prepare_step().await {}
        }
        let held: Vec<u64> = logs.iter().map(|log| log.prewritten_bytes()).collect();
        assert_eq!(
            held,
            [0, 8 * MIB, 8 * MIB, 4 * MIB],
            "the third hot log got what was left"
        );
        assert_eq!(cache.prewritten_bytes(), 20 * MIB);
        assert!(!logs[3].needs_preparing(), "nothing left to spend");
        let file = last_log_file(&root.join("topic-1"));
        let on_disk = std::fs::metadata(&file).unwrap().len();
        fill(&logs[1], 1, 100_000).await;
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            on_disk,
            "the append overwrote zeros"
        );
        assert!(logs[1].prewritten_bytes() < 8 * MIB - 290_000);
        assert_eq!(cache.prewritten_bytes(), held_sum(&logs));
        for log in &logs {
            log.close().await.unwrap();
        }
        assert_eq!(cache.prewritten_bytes(), 0, "closes give everything back");
    });
}

fn held_sum(logs: &[Rc<Log>]) -> u64 {
    logs.iter().map(|log| log.prewritten_bytes()).sum()
}

/// A retention pass trims the zeros of a log that has gone cold and gives them back; the
/// log keeps working and recovers as before.
#[test]
fn retention_pass_releases_a_cold_logs_zeros() {
    // Neither time-based roll nor retention: the records' timestamps are from 1970.
    let config = LogConfig {
        segment_ms: i64::MAX,
        retention_ms: -1,
        ..config(64 * 1024 * 1024)
    };
    run(|dir| async move {
        let log = open(&dir, config.clone()).await;
        let stored = fill(&log, 1, 100_000).await;
        while log.prepare_step().await {}
        assert_eq!(log.prewritten_bytes(), crate::limits::PREWRITE_AHEAD_BYTES);
        let path = last_log_file(&dir);
        log.enforce_retention(crate::metadata::now_ms())
            .await
            .unwrap();
        assert_ne!(log.prewritten_bytes(), 0, "still hot: kept");
        log.cool_down();
        log.enforce_retention(crate::metadata::now_ms())
            .await
            .unwrap();
        assert_eq!(log.prewritten_bytes(), 0);
        let logical: u64 = stored.iter().map(|b| b.len() as u64).sum();
        let file_bytes = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            file_bytes,
            logical.next_multiple_of(4096),
            "cut after the last block"
        );
        fill(&log, 1, 10).await;
        drop(log);
        let log = open(&dir, config).await;
        assert_eq!(log.durable_end_offset(), Offset(6));
        log.close().await.unwrap();
    });
}

/// Base offsets of the segment files in `dir`, ascending.
fn segment_bases(dir: &Path) -> Vec<Offset> {
    let names = segment_files(dir);
    let bases = names
        .iter()
        .map(|name| Offset(name.trim_end_matches(".log").parse().unwrap()));
    bases.collect()
}

/// Appends (unflushed) one batch of 3 records whose values are `value_bytes` copies of `fill`.
fn stage(log: &Log, fill: u8, value_bytes: usize) -> (Appended, Bytes) {
    let records = (0..3).map(|i| PlainRecord {
        timestamp: 5000 + i,
        key: None,
        value: Some(Bytes::from(vec![fill; value_bytes])),
    });
    let bytes = encode_plain_batch(records, Compression::None).unwrap();
    let summary = validate(&bytes).unwrap();
    let base_offset = log.log_end_offset();
    let (stored, meta) = stamp_batch(bytes, &summary, base_offset, None);
    let ticket = log.append(stored.clone(), meta).unwrap();
    let appended = Appended {
        base_offset,
        last_offset: meta.last_offset,
        ticket,
    };
    (appended, stored)
}

/// Reads every batch from the log start to the durable end.
async fn read_all(log: &Log) -> Vec<Bytes> {
    let mut all = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.durable_end_offset() {
        let batches = log.read_durable(offset, 1 << 20).await.unwrap();
        for batch in batches {
            offset = Offset(record_batch::validate(&batch).unwrap().base_offset) + 3;
            all.push(batch);
        }
    }
    all
}

/// A suffix truncation of durable batches cuts the log at the batch boundary asked for,
/// wherever it lies (inside the active segment, at a segment's base, inside a closed
/// segment): later batches and segments are gone, the old bytes are never served again (not
/// from the cache, not from the read-ahead), new batches take the freed offsets and roll on
/// as usual, and a reopen finds exactly the same log.
#[test]
fn truncate_suffix_cuts_durable_batches() {
    run(|dir| async move {
        let log = open(&dir, config(8 * 1024)).await;
        let mut expected = fill(&log, 100, 300).await;
        let bases = segment_bases(&dir);
        assert!(bases.len() > 8, "segments {bases:?}");
        let active = *bases.last().unwrap();
        let boundary = bases[bases.len() / 2];
        let inside_closed = bases[2] + 3;
        for (case, cut) in [
            ("inside the active segment", active + 3),
            ("at a segment's base", boundary),
            ("inside a closed segment", inside_closed),
        ] {
            // Read-ahead and cache both hold the tail about to go.
            let _ = read_all(&log).await;
            log.truncate_suffix(cut).await.unwrap();
            expected.truncate((cut.get() / 3) as usize);
            assert_eq!(log.durable_end_offset(), cut, "{case}");
            assert_eq!(log.log_end_offset(), cut, "{case}");
            assert!(log.read_durable(cut, 1).await.unwrap().is_empty(), "{case}");
            assert!(
                matches!(
                    log.read_durable(cut + 3, 1).await,
                    Err(StorageError::OffsetOutOfRange { .. })
                ),
                "{case}"
            );
            assert!(
                segment_bases(&dir).iter().all(|base| *base <= cut),
                "{case}: {:?}",
                segment_bases(&dir)
            );
            assert_eq!(read_all(&log).await, expected, "{case}");
            // New batches take the freed offsets, with other bytes.
            for fill in [b'n', b'm'] {
                let (appended, bytes) = stage(&log, fill, 300);
                assert_eq!(
                    appended.base_offset,
                    Offset((expected.len() * 3) as i64),
                    "{case}"
                );
                expected.push(bytes);
            }
            log.flush().await.unwrap();
            assert_eq!(read_all(&log).await, expected, "{case}: new batches served");
        }
        log.close().await.unwrap();
        let log = open(&dir, config(8 * 1024)).await;
        assert_eq!(read_all(&log).await, expected, "after a reopen");
        log.close().await.unwrap();
    });
}

/// A suffix truncation of staged batches only settles them as discarded and moves the end
/// back; one inside a batch, or past the end, changes nothing.
#[test]
fn truncate_suffix_of_staged_batches_and_bad_offsets() {
    run(|dir| async move {
        let log = open(&dir, config(1 << 20)).await;
        let durable = fill(&log, 2, 100).await;
        let (kept, kept_bytes) = stage(&log, b'k', 100);
        let (gone, _) = stage(&log, b'g', 100);
        let (also_gone, _) = stage(&log, b'a', 100);
        for bad in [1, 7, 10, 16, -1].map(Offset) {
            assert!(log.truncate_suffix(bad).await.is_err(), "offset {bad}");
        }
        assert_eq!(log.log_end_offset(), Offset(15));
        log.truncate_suffix(gone.base_offset).await.unwrap();
        assert_eq!(gone.ticket.settled(), Settled::Discarded);
        assert_eq!(also_gone.ticket.settled(), Settled::Discarded);
        assert_eq!(log.log_end_offset(), Offset(9));
        assert_eq!(log.flush().await.unwrap(), Offset(9));
        assert_eq!(kept.ticket.settled(), Settled::Durable);
        let mut expected = durable;
        expected.push(kept_bytes);
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
    });
}

/// Whether a log is hot (and so is given pre-written space) follows the thread's clock: under
/// a simulated clock a log that wrote enough stays hot while the clock stands still, however
/// long that takes in real time, and goes cold once the clock is moved past two quiet
/// windows.
#[test]
fn heat_follows_the_simulated_clock() {
    use crate::limits::{PREWRITE_HOT_BYTES, PREWRITE_HOT_WINDOW_MS};
    use crate::runtime::clock::SimClock;
    run(|dir| async move {
        let clock = SimClock::install(1_000_000_000);
        let log = open(&dir, config(64 << 20)).await;
        let batches = PREWRITE_HOT_BYTES as i64 / 3000 + 1;
        fill(&log, batches, 1000).await;
        assert!(log.needs_preparing(), "hot after {batches} batches");
        clock.advance(std::time::Duration::from_millis(PREWRITE_HOT_WINDOW_MS));
        assert!(log.needs_preparing(), "still hot through the next window");
        clock.advance(std::time::Duration::from_millis(2 * PREWRITE_HOT_WINDOW_MS));
        assert!(!log.needs_preparing(), "cold after quiet windows");
        clock.uninstall();
        log.close().await.unwrap();
    });
}
