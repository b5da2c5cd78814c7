//! Offline damage to a partition's files and what `Log::open` makes of it: torn tails at every
//! byte, flipped bits in log and index files, missing and stale indexes, closed segments cut
//! short. Each test runs many cases on one executor, each case in its own directory.

use crate::ids::Offset;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kafka_protocol::records::Compression;
use rand::{Rng, SeedableRng};

use crate::protocol::record_batch::{encode_plain_batch, validate, PlainRecord};
use crate::storage::segment::file_name;
use crate::storage::{prime_device, BatchCache, Log, LogConfig, StorageError};

/// Runs `test` on one executor with a fresh root directory; returns what it logged at info
/// and above.
fn run<F, Fut>(test: F) -> String
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let root = tempfile::Builder::new()
        .prefix("corelog-recovery")
        .tempdir_in("/tmp")
        .unwrap();
    let path = root.path().to_path_buf();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    crate::runtime::run_on_new_executor(move || async move {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Capture(sink.clone()))
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        prime_device(&path).await.unwrap();
        test(path).await
    });
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    text
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A batch of `count` records with max timestamp `timestamp`, values `value_bytes` long.
fn batch(count: i64, timestamp: i64, value_bytes: usize) -> bytes::BytesMut {
    let records = (0..count).map(|i| PlainRecord {
        timestamp: timestamp - count + 1 + i,
        key: None,
        value: Some(Bytes::from(vec![b'v'; value_bytes])),
    });
    encode_plain_batch(records, Compression::None).unwrap()
}

fn config(segment_bytes: u64, index_interval_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes,
        ..LogConfig::default()
    }
}

async fn open(dir: &Path, config: &LogConfig) -> Result<Rc<Log>, StorageError> {
    Log::open(dir.to_path_buf(), config.clone(), BatchCache::new(0)).await
}

/// Appends one batch per (record count, value bytes), timestamps 1000 apart after the log's
/// current end, flushes, and returns the batches as stored.
async fn append(log: &Log, shapes: &[(i64, usize)]) -> Vec<Bytes> {
    let mut offsets = Vec::new();
    for &(count, value_bytes) in shapes {
        let timestamp = 1000 * (log.log_end_offset() + count).get();
        let bytes = batch(count, timestamp, value_bytes);
        let summary = validate(&bytes).unwrap();
        offsets.push(
            log.append_validated(bytes, &summary, None)
                .unwrap()
                .base_offset,
        );
    }
    log.flush().await.unwrap();
    let mut stored = Vec::new();
    for offset in offsets {
        stored.push(log.read_durable(offset, 1).await.unwrap()[0].clone());
    }
    stored
}

/// Checks that `log` holds exactly `expected`: the end, every batch read through the offset
/// index from each of its offsets and all at once, and every lookup by timestamp.
async fn assert_holds(log: &Log, expected: &[Bytes], case: &str) {
    let end = expected.last().map_or(Offset::ZERO, |b| last_offset(b) + 1);
    assert_eq!(log.durable_end_offset(), end, "{case}: end");
    assert_eq!(log.log_end_offset(), end, "{case}: log end");
    if expected.is_empty() {
        assert!(
            log.read_durable(Offset::ZERO, 1 << 20)
                .await
                .unwrap()
                .is_empty(),
            "{case}"
        );
        return;
    }
    let all = read_all(log).await;
    let offsets = |batches: &[Bytes]| -> Vec<(i64, usize)> {
        let summaries = batches.iter().map(|b| validate(b).unwrap());
        summaries.map(|s| (s.base_offset, s.batch_bytes)).collect()
    };
    assert_eq!(offsets(&all), offsets(expected), "{case}: all");
    assert!(all == expected, "{case}: bytes");
    for bytes in expected {
        let summary = validate(bytes).unwrap();
        for offset in [Offset(summary.base_offset), last_offset(bytes)] {
            let read = log.read_durable(offset, 1).await.unwrap();
            assert_eq!(&read[0], bytes, "{case}: read at {offset}");
        }
        let found = log
            .find_batch_by_timestamp(summary.max_timestamp, Offset(i64::MAX))
            .await;
        assert_eq!(found.unwrap().as_ref(), Some(bytes), "{case}: time lookup");
    }
}

/// Every batch from the log start to the high watermark, one segment per read.
async fn read_all(log: &Log) -> Vec<Bytes> {
    let mut all = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.durable_end_offset() {
        let batches = log.read_durable(offset, 1 << 20).await.unwrap();
        offset = last_offset(batches.last().unwrap()) + 1;
        all.extend(batches);
    }
    all
}

fn last_offset(batch: &[u8]) -> Offset {
    let summary = validate(batch).unwrap();
    Offset(summary.base_offset) + i64::from(summary.last_offset_delta)
}

fn segment_bases(dir: &Path) -> Vec<Offset> {
    let mut bases: Vec<Offset> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log")
                .map(|stem| Offset(stem.parse().unwrap()))
        })
        .collect();
    bases.sort_unstable();
    bases
}

fn path(dir: &Path, base: Offset, extension: &str) -> PathBuf {
    dir.join(file_name(base, extension))
}

/// Copies every file of `from` into a fresh directory `to`.
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn remove_indexes(dir: &Path, base: Offset) {
    for extension in ["index", "timeindex"] {
        std::fs::remove_file(path(dir, base, extension)).unwrap();
    }
}

fn cut_file(file: &Path, length: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    file.set_len(length).unwrap();
}

fn flip_bit(file: &Path, bit: usize) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[bit / 8] ^= 1 << (bit % 8);
    std::fs::write(file, bytes).unwrap();
}

/// How the bytes after a torn batch look.
#[derive(Debug, Clone, Copy)]
enum After {
    /// The file ends right there.
    Nothing,
    /// Zeros to the block boundary, as the appender leaves them.
    Zeros,
    /// Garbage to the block boundary.
    Garbage,
}

/// A crash at every byte of the last batch loses that batch unless it is whole, keeps the
/// three before it at their offsets, lets the next append take the right offset, and a
/// second recovery of the recovered files finds the same log.
#[test]
fn torn_last_batch_at_every_byte_keeps_the_batches_before() {
    let logs = run(|root| async move {
        let config = config(4096, 1);
        let source = root.join("source");
        let log = open(&source, &config).await.unwrap();
        let stored = append(&log, &[(3, 20), (1, 5), (2, 30), (1, 10)]).await;
        log.close().await.unwrap();
        let data = std::fs::read(path(&source, Offset::ZERO, "log")).unwrap();
        let kept: usize = stored[..3].iter().map(Bytes::len).sum();
        assert_eq!(data.len(), kept + stored[3].len());
        let mut random = rand::rngs::StdRng::seed_from_u64(7);
        let mut cases = 0;
        for length in 0..=stored[3].len() {
            for after in [After::Nothing, After::Zeros, After::Garbage] {
                let dir = root.join(format!("case-{length}-{after:?}"));
                copy_dir(&source, &dir);
                let mut bytes = data[..kept + length].to_vec();
                let block_end = bytes.len().next_multiple_of(4096);
                match after {
                    After::Nothing => {}
                    After::Zeros => bytes.resize(block_end, 0),
                    After::Garbage => bytes.resize_with(block_end, || random.gen()),
                }
                std::fs::write(path(&dir, Offset::ZERO, "log"), &bytes).unwrap();
                if length % 2 == 1 {
                    remove_indexes(&dir, Offset::ZERO);
                }
                // Zeros may complete a batch whose last bytes are zeros: then it is whole.
                let written = bytes.get(kept..kept + stored[3].len());
                let whole = written == Some(&stored[3][..]);
                let expected = &stored[..if whole { 4 } else { 3 }];
                let case = format!("torn at {length} of {}, then {after:?}", stored[3].len());
                let log = open(&dir, &config).await.unwrap();
                assert_holds(&log, expected, &case).await;
                drop(log);
                let log = open(&dir, &config).await.unwrap();
                assert_holds(&log, expected, &format!("{case}, reopened")).await;
                let next = append(&log, &[(2, 8)]).await;
                let end = last_offset(expected.last().unwrap()) + 1;
                assert_eq!(
                    Offset(validate(&next[0]).unwrap().base_offset),
                    end,
                    "{case}"
                );
                drop(log);
                std::fs::remove_dir_all(&dir).unwrap();
                cases += 1;
            }
        }
        assert_eq!(cases, 3 * (stored[3].len() + 1));
    });
    assert!(
        logs.contains("truncating segment at first torn or corrupt batch"),
        "{logs}"
    );
}

/// Byte offsets inside a batch worth a flipped bit: every header field the CRC covers and the
/// base offset and length it does not, plus record bytes. Not the partition leader epoch
/// (bytes 12..16): the v2 format leaves it outside the CRC, so no flip there is detectable.
fn flip_positions(batch_bytes: usize) -> Vec<usize> {
    let mut positions = vec![0, 7, 8, 11, 16, 17, 20, 21, 24, 30, 38, 46, 52, 56, 60];
    positions.extend([61, batch_bytes / 2 + 13, batch_bytes - 1]);
    positions
}

/// A flipped bit anywhere in a batch of a segment without indexes (the state a crash leaves)
/// cuts the log at that batch: never accepted, never an earlier batch lost.
#[test]
fn bit_flip_in_unindexed_log_cuts_at_the_damaged_batch() {
    run(|root| async move {
        let config = config(64 * 1024, 1);
        let source = root.join("source");
        let log = open(&source, &config).await.unwrap();
        let shapes = [(3, 20), (1, 5), (4, 100), (2, 7), (1, 300), (2, 40)];
        let stored = append(&log, &shapes).await;
        log.close().await.unwrap();
        remove_indexes(&source, Offset::ZERO);
        let mut start = 0;
        for (damaged, bytes) in stored.iter().enumerate() {
            for position in flip_positions(bytes.len()) {
                let bit = 8 * (start + position) + position % 8;
                let dir = root.join("case");
                copy_dir(&source, &dir);
                flip_bit(&path(&dir, Offset::ZERO, "log"), bit);
                let case = format!("bit {} of batch {damaged}", position * 8 + position % 8);
                let log = open(&dir, &config).await.unwrap();
                assert_holds(&log, &stored[..damaged], &case).await;
                let file_bytes = std::fs::metadata(path(&dir, Offset::ZERO, "log"))
                    .unwrap()
                    .len();
                assert_eq!(file_bytes, start as u64, "{case}: cut");
                let next = append(&log, &[(1, 1)]).await;
                let end = stored[..damaged]
                    .last()
                    .map_or(Offset::ZERO, |b| last_offset(b) + 1);
                assert_eq!(
                    Offset(validate(&next[0]).unwrap().base_offset),
                    end,
                    "{case}"
                );
                drop(log);
            }
            start += bytes.len();
        }
    });
}

/// A flipped bit in a batch the indexes cover (data synced before a clean close) is not
/// re-read at open, but reads check every batch they return: the damaged one is refused,
/// the others are served; a flip in the last indexed batch is cut at open.
#[test]
fn bit_flip_under_the_index_is_never_served() {
    run(|root| async move {
        let config = config(64 * 1024, 1);
        let source = root.join("source");
        let log = open(&source, &config).await.unwrap();
        let shapes = [(3, 20), (1, 5), (4, 100), (2, 7), (1, 300)];
        let stored = append(&log, &shapes).await;
        log.close().await.unwrap();
        let mut start = 0;
        for (damaged, bytes) in stored.iter().enumerate() {
            for position in flip_positions(bytes.len()) {
                let dir = root.join("case");
                copy_dir(&source, &dir);
                flip_bit(&path(&dir, Offset::ZERO, "log"), 8 * (start + position) + 3);
                let case = format!("byte {position} of batch {damaged}");
                let log = open(&dir, &config).await.unwrap();
                if damaged + 1 == stored.len() {
                    assert_holds(&log, &stored[..damaged], &case).await;
                    continue;
                }
                assert_eq!(log.durable_end_offset(), last_offset(&stored[4]) + 1);
                let all = log.read_durable(Offset::ZERO, 1 << 20).await;
                if damaged == 0 {
                    assert!(matches!(all, Err(StorageError::Corrupt(_))), "{case}");
                } else {
                    assert_eq!(all.unwrap(), &stored[..damaged], "{case}");
                }
                for (index, bytes) in stored.iter().enumerate() {
                    let base = Offset(validate(bytes).unwrap().base_offset);
                    match log.read_durable(base, 1).await {
                        Ok(read) => assert!(index != damaged && read[0] == bytes, "{case}"),
                        Err(StorageError::Corrupt(_)) => assert_eq!(index, damaged, "{case}"),
                        Err(error) => panic!("{case}: {error}"),
                    }
                }
                drop(log);
            }
            start += bytes.len();
        }
    });
}

/// Writes a log of several segments (two batches each) and closes it; returns the stored
/// batches.
async fn several_segments(dir: &Path, config: &LogConfig) -> Vec<Bytes> {
    let log = open(dir, config).await.unwrap();
    let mut stored = Vec::new();
    for round in 0..12 {
        stored.extend(append(&log, &[(2, 300 + round), (3, 150), (1, 90)]).await);
    }
    log.close().await.unwrap();
    assert!(segment_bases(dir).len() >= 4, "{:?}", segment_bases(dir));
    stored
}

/// Flipped bits, garbage and cuts in the `.index` and `.timeindex` of a closed and of the
/// active segment: the log opens with every batch at its offset, lookups by offset and time
/// are right, and the damaged file is rewritten as it was.
#[test]
fn damaged_index_files_are_rebuilt() {
    run(|root| async move {
        let config = config(4096, 512);
        let source = root.join("source");
        let stored = several_segments(&source, &config).await;
        let bases = segment_bases(&source);
        let mut random = rand::rngs::StdRng::seed_from_u64(11);
        for base in [bases[1], *bases.last().unwrap()] {
            for extension in ["index", "timeindex"] {
                let original = std::fs::read(path(&source, base, extension)).unwrap();
                let mut damages: Vec<(String, Vec<u8>)> = Vec::new();
                // Every bit of the encoding is covered in `index::tests`; here a spread.
                for bit in (0..original.len() * 8).step_by(29) {
                    let mut bytes = original.clone();
                    bytes[bit / 8] ^= 1 << (bit % 8);
                    damages.push((format!("bit {bit}"), bytes));
                }
                for length in [0, 1, 8, original.len() / 2, original.len() - 1] {
                    damages.push((format!("cut to {length}"), original[..length].to_vec()));
                }
                let garbage = (0..original.len()).map(|_| random.gen()).collect();
                damages.push(("garbage".into(), garbage));
                for (what, bytes) in damages {
                    let dir = root.join("case");
                    copy_dir(&source, &dir);
                    std::fs::write(path(&dir, base, extension), bytes).unwrap();
                    let case = format!("{extension} of segment {base}: {what}");
                    let log = open(&dir, &config).await.unwrap();
                    assert_holds(&log, &stored, &case).await;
                    let rewritten = std::fs::read(path(&dir, base, extension)).unwrap();
                    assert_eq!(rewritten, original, "{case}: rewritten");
                    drop(log);
                }
            }
        }
    });
}

/// Missing index files everywhere: rebuilt by scanning, identical to the ones a clean close
/// wrote, and every lookup is right.
#[test]
fn missing_index_files_are_rebuilt() {
    run(|root| async move {
        let config = config(4096, 512);
        let dir = root.join("log");
        let stored = several_segments(&dir, &config).await;
        let mut originals = Vec::new();
        for base in segment_bases(&dir) {
            originals.push(std::fs::read(path(&dir, base, "index")).unwrap());
            originals.push(std::fs::read(path(&dir, base, "timeindex")).unwrap());
            remove_indexes(&dir, base);
        }
        let log = open(&dir, &config).await.unwrap();
        assert_holds(&log, &stored, "no indexes").await;
        let mut rebuilt = Vec::new();
        for base in segment_bases(&dir) {
            rebuilt.push(std::fs::read(path(&dir, base, "index")).unwrap());
            rebuilt.push(std::fs::read(path(&dir, base, "timeindex")).unwrap());
        }
        assert_eq!(rebuilt, originals);
        log.close().await.unwrap();
    });
}

/// Index files from an older, shorter state of the active segment (copied before more
/// appends, put back after), after a clean close and after a crash: the log is whole.
#[test]
fn stale_shorter_index_is_resumed_from() {
    run(|root| async move {
        let config = config(1 << 20, 256);
        let dir = root.join("log");
        let log = open(&dir, &config).await.unwrap();
        let mut stored = append(&log, &[(2, 300), (3, 200), (1, 500)]).await;
        log.close().await.unwrap();
        let old_index = std::fs::read(path(&dir, Offset::ZERO, "index")).unwrap();
        let old_times = std::fs::read(path(&dir, Offset::ZERO, "timeindex")).unwrap();
        let log = open(&dir, &config).await.unwrap();
        stored.extend(append(&log, &[(2, 100), (4, 250), (1, 900)]).await);
        drop(log); // A crash: the old index files are still there.
        let log = open(&dir, &config).await.unwrap();
        assert_holds(&log, &stored, "crash after appends").await;
        stored.extend(append(&log, &[(3, 50)]).await);
        log.close().await.unwrap();
        std::fs::write(path(&dir, Offset::ZERO, "index"), &old_index).unwrap();
        std::fs::write(path(&dir, Offset::ZERO, "timeindex"), &old_times).unwrap();
        let log = open(&dir, &config).await.unwrap();
        assert_holds(&log, &stored, "old index put back").await;
        log.close().await.unwrap();
    });
}

/// Index files from a longer state of the log, put back after the log was cut and written
/// again with different batches: the log is served as it now is, never by the old entries.
#[test]
fn stale_longer_index_is_not_trusted() {
    run(|root| async move {
        let config = config(1 << 20, 1);
        let dir = root.join("log");
        let log = open(&dir, &config).await.unwrap();
        let mut stored = append(&log, &[(2, 300), (3, 200), (1, 500), (2, 80), (5, 10)]).await;
        log.close().await.unwrap();
        let old_index = std::fs::read(path(&dir, Offset::ZERO, "index")).unwrap();
        let old_times = std::fs::read(path(&dir, Offset::ZERO, "timeindex")).unwrap();
        let kept: usize = stored[..2].iter().map(Bytes::len).sum();
        cut_file(&path(&dir, Offset::ZERO, "log"), kept as u64 + 10);
        stored.truncate(2);
        let log = open(&dir, &config).await.unwrap();
        assert_holds(&log, &stored, "cut").await;
        stored.extend(append(&log, &[(1, 41), (1, 33), (4, 100), (1, 7), (2, 2)]).await);
        drop(log);
        for crashed in [true, false] {
            std::fs::write(path(&dir, Offset::ZERO, "index"), &old_index).unwrap();
            std::fs::write(path(&dir, Offset::ZERO, "timeindex"), &old_times).unwrap();
            let log = open(&dir, &config).await.unwrap();
            assert_holds(&log, &stored, &format!("longer index, crashed {crashed}")).await;
            log.close().await.unwrap();
        }
    });
}

/// A closed segment cut short (inside a batch, at a batch boundary, or to nothing) cuts the
/// log there, as Kafka does: the batches before are served, every later segment is deleted
/// and logged, and appends continue at the cut.
#[test]
fn closed_segment_cut_short_truncates_the_log_after_it() {
    let logs = run(|root| async move {
        let config = config(4096, 512);
        let source = root.join("source");
        let stored = several_segments(&source, &config).await;
        let bases = segment_bases(&source);
        let cut_base = bases[1];
        let in_segment: Vec<&Bytes> = stored
            .iter()
            .filter(|b| {
                let base = Offset(validate(b).unwrap().base_offset);
                base >= cut_base && base < bases[2]
            })
            .collect();
        let first = in_segment[0].len() as u64;
        let keep_before = stored
            .iter()
            .position(|b| Offset(validate(b).unwrap().base_offset) == cut_base)
            .unwrap();
        for (cut, batches_kept) in [(first + 30, 1), (first, 1), (0, 0), (5, 0)] {
            let dir = root.join("case");
            copy_dir(&source, &dir);
            cut_file(&path(&dir, cut_base, "log"), cut);
            let expected = &stored[..keep_before + batches_kept];
            let case = format!("segment {cut_base} cut to {cut}");
            for _ in 0..2 {
                let log = open(&dir, &config).await.unwrap();
                assert_holds(&log, expected, &case).await;
                assert_eq!(segment_bases(&dir), bases[..2], "{case}");
                for base in &bases[2..] {
                    assert!(!path(&dir, *base, "index").exists(), "{case}");
                    assert!(!path(&dir, *base, "timeindex").exists(), "{case}");
                }
                drop(log);
            }
            let log = open(&dir, &config).await.unwrap();
            let next = append(&log, &[(1, 10)]).await;
            let end = last_offset(expected.last().unwrap()) + 1;
            assert_eq!(
                Offset(validate(&next[0]).unwrap().base_offset),
                end,
                "{case}"
            );
            log.close().await.unwrap();
            let log = open(&dir, &config).await.unwrap();
            let mut now = expected.to_vec();
            now.extend(next);
            assert_holds(&log, &now, &case).await;
            log.close().await.unwrap();
        }
    });
    assert!(
        logs.contains("deleting segment after a cut in the log"),
        "{logs}"
    );
}

/// Recovery says what it cut: a warning with the segment path, position, first offset
/// dropped, bytes dropped and reason; the appender's zero padding is cut without a warning.
#[test]
fn recovery_logs_what_it_truncated() {
    let (tx, rx) = std::sync::mpsc::channel();
    let logs = run(move |root| async move {
        let config = config(1 << 20, 4096);
        let dir = root.join("log");
        let log = open(&dir, &config).await.unwrap();
        let stored = append(&log, &[(2, 100), (3, 100)]).await;
        drop(log); // A crash with pre-written zeros after the log: no warning for those.
        let log = open(&dir, &config).await.unwrap();
        log.close().await.unwrap();
        let log_path = path(&dir, Offset::ZERO, "log");
        let mut data = std::fs::read(&log_path).unwrap();
        let position = stored[0].len();
        let end = data.len();
        data[end - 3] ^= 0x10;
        std::fs::write(&log_path, &data).unwrap();
        let log = open(&dir, &config).await.unwrap();
        assert_holds(&log, &stored[..1], "flip").await;
        log.close().await.unwrap();
        tx.send((log_path, position, end - position)).unwrap();
    });
    let (log_path, position, dropped) = rx.recv().unwrap();
    // Only one cut lost data; the zero padding of the crash before it is no warning.
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("truncating"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    let warning = warnings[0];
    for expected in [
        "truncating segment at first torn or corrupt batch".to_string(),
        format!("path={}", log_path.display()),
        format!("position={position}"),
        "offset=2".to_string(),
        format!("bytes_dropped={dropped}"),
        "reason=".to_string(),
        "crc mismatch".to_string(),
    ] {
        assert!(warning.contains(&expected), "{expected} in {warning}");
    }
}
