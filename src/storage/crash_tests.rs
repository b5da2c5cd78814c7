//! Power cuts at every disk operation of seeded workloads on a simulated disk (`sim_disk`),
//! each followed by a crash that loses or tears what was not synced, and a reopen: recovery
//! always opens the log, never loses an acknowledged batch, and serves only batches that were
//! appended at the offsets it serves them at.

use crate::ids::Offset;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::records::Compression;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::protocol::record_batch::{encode_plain_batch, validate, PlainRecord};
use crate::storage::sim_disk::SimDisk;
use crate::storage::Gaps;
use crate::storage::{stamp_batch, BatchCache, Log, LogConfig, Settled, StorageError};

const SEEDS: u64 = 8;
const STEPS: usize = 30;

/// What the workload did, to check a recovered log against.
#[derive(Default, Clone)]
struct Model {
    /// Every batch ever appended, by base offset: what a recovered batch may be.
    appended: BTreeMap<Offset, Vec<Bytes>>,
    /// The acknowledged batch at each base offset: durable and not truncated since.
    acked: BTreeMap<Offset, Bytes>,
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

async fn open(dir: &Path) -> Result<Rc<Log>, StorageError> {
    Log::open(dir.to_path_buf(), config(), BatchCache::new(1 << 16)).await
}

/// Appends and flushes batches of random sizes, now and then truncating the suffix at an
/// acknowledged batch, until `STEPS` are done or the disk fails.
async fn workload(log: &Log, rng: &mut StdRng, model: &mut Model) -> Result<(), StorageError> {
    for _ in 0..STEPS {
        if rng.gen_range(0..8) == 0 && !model.acked.is_empty() {
            let keys: Vec<Offset> = model.acked.keys().copied().collect();
            let at = keys[rng.gen_range(0..keys.len())];
            // Removed from what must survive before the call: a cut midway may leave them
            // or not.
            model.acked.split_off(&at);
            log.truncate_suffix(at).await?;
            continue;
        }
        let mut staged = Vec::new();
        for _ in 0..rng.gen_range(1..4) {
            let fill = rng.gen::<u8>();
            let records = (0..rng.gen_range(1..4)).map(|i| PlainRecord {
                timestamp: 1_000 + i,
                key: None,
                value: Some(Bytes::from(vec![fill; rng.gen_range(10..1500)])),
            });
            let batch = encode_plain_batch(records, Compression::None).unwrap();
            let summary = validate(&batch).unwrap();
            let base_offset = log.log_end_offset();
            let (bytes, meta) = stamp_batch(batch, &summary, base_offset, None);
            let ticket = log.append(bytes.clone(), meta)?;
            let versions = model.appended.entry(base_offset).or_default();
            versions.push(bytes.clone());
            staged.push((base_offset, bytes, ticket));
        }
        let flushed = log.flush().await;
        for (base_offset, bytes, ticket) in staged {
            if ticket.settled() == Settled::Durable {
                model.acked.insert(base_offset, bytes);
            }
        }
        flushed?;
    }
    Ok(())
}

/// Reopens the crashed log and checks it against the model.
async fn check_recovered(dir: &Path, model: &Model, case: &str) {
    let log = open(dir)
        .await
        .unwrap_or_else(|error| panic!("{case}: recovery failed: {error}"));
    let end = log.durable_end_offset();
    let mut offset = log.log_start_offset();
    let mut served = BTreeMap::new();
    while offset < end {
        let batches = log
            .read(offset, 1 << 20, end)
            .await
            .unwrap_or_else(|error| panic!("{case}: read at {offset}: {error}"));
        for batch in batches {
            let summary = validate(&batch).unwrap();
            assert_eq!(
                Offset(summary.base_offset),
                offset,
                "{case}: offsets are dense"
            );
            let versions = model.appended.get(&offset);
            assert!(
                versions.is_some_and(|versions| versions.contains(&batch)),
                "{case}: the batch at {offset} was never appended there"
            );
            served.insert(offset, batch);
            offset = Offset(summary.base_offset) + i64::from(summary.last_offset_delta) + 1;
        }
    }
    for (base_offset, bytes) in &model.acked {
        assert_eq!(
            served.get(base_offset),
            Some(bytes),
            "{case}: acknowledged batch at {base_offset} lost (log end {end})"
        );
    }
}

/// Runs one seed's workload with the power cut after `cut` operations (none: the whole
/// workload), crashes, and checks the recovered log. Returns the operations the workload did.
async fn run_case(root: &Path, seed: u64, cut: Option<u64>) -> u64 {
    let disk = SimDisk::mount(root);
    let dir = root.join("topic-0");
    let log = open(&dir).await.unwrap();
    let started = disk.operations();
    if let Some(cut) = cut {
        disk.cut_power_after(cut);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let result = workload(&log, &mut rng, &mut model).await;
    assert!(
        cut.is_some() || result.is_ok(),
        "seed {seed}: the workload fails only on a power cut: {:?}",
        result.err()
    );
    let operations = disk.operations() - started;
    drop(log);
    // A new process sees the crashed disk; tasks the old one left behind find no power.
    let after = root.with_extension("after");
    let recovered = disk.crash_into(&after, seed ^ cut.unwrap_or(u64::MAX));
    let case = format!("seed {seed}, power cut after {cut:?} operations");
    check_recovered(&after.join("topic-0"), &model, &case).await;
    // Its files go; the recovered log left no task behind that names a path.
    recovered.unmount();
    operations
}

/// Every operation of every seed's workload is, in one case, the one the power is cut at.
#[test]
fn power_cut_at_any_operation_loses_no_acknowledged_batch() {
    crate::runtime::run_on_new_executor(|| async {
        let root = PathBuf::from("/corelog-simulated");
        for seed in 0..SEEDS {
            let operations = run_case(&root.join(format!("{seed}-all")), seed, None).await;
            assert!(operations > 50, "seed {seed}: only {operations} operations");
            for cut in 0..=operations {
                run_case(&root.join(format!("{seed}-{cut}")), seed, Some(cut)).await;
            }
        }
    });
}

/// The simulated disk itself: synced data and directory entries survive a crash, unsynced
/// ones do not (whole sectors at most), and a cut power fails every operation.
#[test]
fn simulated_disk_keeps_only_what_was_synced() {
    crate::runtime::run_on_new_executor(|| async {
        use crate::storage::file::{self, SegmentFile};
        let root = PathBuf::from("/corelog-simulated-disk");
        let disk = SimDisk::mount(&root);
        let synced = root.join("synced");
        let file = SegmentFile::open_or_create(&synced).await.unwrap();
        file.write_aligned(0, &[7u8; 4096]).await.unwrap();
        file.fdatasync().await.unwrap();
        file::sync_directory(&root).await.unwrap();
        file.write_aligned(4096, &[8u8; 4096]).await.unwrap();
        let unnamed = SegmentFile::open_or_create(&root.join("unnamed"))
            .await
            .unwrap();
        unnamed.write_aligned(0, &[9u8; 4096]).await.unwrap();
        unnamed.fdatasync().await.unwrap();
        disk.crash(3);
        assert!(
            file::is_missing(&root.join("unnamed")),
            "its directory was never synced"
        );
        let file = SegmentFile::open_read_only(&synced).await.unwrap();
        let bytes = file.read(0, 8192).await.unwrap();
        assert_eq!(bytes[..4096], [7u8; 4096]);
        let torn = |sector: &[u8]| sector == [8u8; 512] || sector == [0u8; 512];
        assert!(
            bytes[4096..].chunks(512).all(torn),
            "whole sectors or nothing"
        );
        disk.cut_power_after(1);
        file.read(0, 1).await.unwrap();
        let error = file.read(0, 1).await.unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EIO));
        disk.unmount();
    });
}

/// Batches of a log that compactions rewrite: what was appended, and what a filter dropped.
#[derive(Default)]
struct CompactionModel {
    appended: BTreeMap<Offset, Bytes>,
    dropped: std::collections::BTreeSet<Offset>,
}

/// Appends 40 batches (segments roll every few), then replaces the first three closed
/// segments keeping every third batch, then the first two of what is left dropping every
/// batch with an odd base offset.
async fn compaction_workload(
    log: &Log,
    model: &mut CompactionModel,
    gaps: Gaps,
) -> Result<(), StorageError> {
    for index in 0..40u8 {
        let records = (0..(index % 3 + 1)).map(|i| PlainRecord {
            timestamp: 1_000 + i64::from(i),
            key: Some(Bytes::from(vec![index; 8])),
            value: Some(Bytes::from(vec![index; 300 + 40 * usize::from(index % 5)])),
        });
        let batch = encode_plain_batch(records, Compression::None).unwrap();
        let summary = validate(&batch).unwrap();
        let (bytes, meta) = stamp_batch(batch, &summary, log.log_end_offset(), None);
        log.append(bytes.clone(), meta)?;
        // Appended before the flush: a cut midway may leave it on disk or not.
        model.appended.insert(meta.base_offset, bytes);
        log.flush().await?;
    }
    /// Which batches of a replacement (counted from 1) its filter drops.
    type Drops = fn(usize) -> bool;
    let passes: [(usize, Drops); 2] = [(3, |index| index % 3 != 0), (2, |index| index % 2 == 1)];
    for (segments, drops) in passes {
        let bases: Vec<Offset> = log
            .closed_segments()
            .iter()
            .take(segments)
            .map(|span| span.base_offset)
            .collect();
        let mut index = 0;
        let mut dropped = Vec::new();
        let filter = |batch: Bytes| {
            let base = crate::storage::batch_meta(&batch).unwrap().base_offset;
            index += 1;
            if drops(index) {
                dropped.push(base);
                None
            } else {
                Some(batch)
            }
        };
        // A batch counts as dropped from the call on: a cut midway may leave it or not.
        let replaced = log.replace_segments(&bases, filter, gaps).await;
        model.dropped.extend(dropped);
        assert!(replaced?.is_some(), "nothing else changes the segments");
    }
    Ok(())
}

/// Runs the compaction workload with the power cut after `cut` operations, crashes, and
/// checks the recovered log: every batch no filter dropped is served, at its offset and
/// unchanged; nothing else is served but batches appended there; offsets only ascend.
/// Returns the operations the workload did.
async fn run_compaction_case(root: &Path, cut: Option<u64>, gaps: Gaps) -> u64 {
    let disk = SimDisk::mount(root);
    let dir = root.join("topic-0");
    let log = open(&dir).await.unwrap();
    let started = disk.operations();
    if let Some(cut) = cut {
        disk.cut_power_after(cut);
    }
    let mut model = CompactionModel::default();
    let result = compaction_workload(&log, &mut model, gaps).await;
    assert!(
        cut.is_some() || result.is_ok(),
        "the workload fails only on a power cut: {:?}",
        result.err()
    );
    let operations = disk.operations() - started;
    drop(log);
    let after = root.with_extension("after");
    let recovered = disk.crash_into(&after, cut.unwrap_or(u64::MAX));
    let case = format!("compaction ({gaps:?}), power cut after {cut:?} operations");
    let log = open(&after.join("topic-0"))
        .await
        .unwrap_or_else(|error| panic!("{case}: recovery failed: {error}"));
    let end = log.durable_end_offset();
    let mut offset = log.log_start_offset();
    let mut served = BTreeMap::new();
    while offset < end {
        let batches = log
            .read(offset, 1 << 20, end)
            .await
            .unwrap_or_else(|error| panic!("{case}: read at {offset}: {error}"));
        assert!(
            !batches.is_empty(),
            "{case}: nothing served at {offset} below {end}"
        );
        for batch in batches {
            let meta = crate::storage::batch_meta(&batch).unwrap();
            assert!(meta.base_offset >= offset, "{case}: offsets ascend");
            if gaps == Gaps::Fill {
                assert_eq!(meta.base_offset, offset, "{case}: no gap");
                let header = crate::protocol::record_batch::header(&batch).unwrap();
                if crate::protocol::records::is_filler(header) {
                    let inside = model.appended.range(meta.base_offset..=meta.last_offset);
                    for (base, appended) in inside {
                        let last = crate::storage::batch_meta(appended).unwrap().last_offset;
                        assert!(
                            model.dropped.contains(base) && last <= meta.last_offset,
                            "{case}: the filler [{}, {}] holds {base}, not dropped whole",
                            meta.base_offset,
                            meta.last_offset
                        );
                    }
                    offset = meta.last_offset + 1;
                    continue;
                }
            }
            assert_eq!(
                model.appended.get(&meta.base_offset),
                Some(&batch),
                "{case}: the batch at {} was never appended there",
                meta.base_offset
            );
            served.insert(meta.base_offset, batch);
            offset = meta.last_offset + 1;
        }
    }
    for (base_offset, bytes) in &model.appended {
        let durable = *base_offset < end;
        if durable && !model.dropped.contains(base_offset) {
            assert_eq!(
                served.get(base_offset),
                Some(bytes),
                "{case}: {base_offset} lost"
            );
        }
    }
    if cut.is_none() {
        assert!(
            model.dropped.len() > 5,
            "{case}: the filters dropped batches"
        );
        let kept = model.appended.len() - model.dropped.len();
        assert_eq!(served.len(), kept, "{case}: every dropped batch is gone");
    }
    recovered.unmount();
    operations
}

/// Every operation of a compaction (two replacements of closed segments) is, in one case, the
/// one the power is cut at: the log always opens, and holds each segment's batches as they
/// were or as the filter left them, never a mixture that loses a kept batch; a replica's
/// compaction (fillers for dropped batches) leaves its log without a gap.
#[test]
fn power_cut_at_any_operation_of_a_compaction_loses_no_kept_batch() {
    crate::runtime::run_on_new_executor(|| async {
        for gaps in [Gaps::Leave, Gaps::Fill] {
            let root = PathBuf::from(format!("/corelog-simulated-compaction-{gaps:?}"));
            let operations = run_compaction_case(&root.join("all"), None, gaps).await;
            assert!(operations > 40, "only {operations} operations");
            for cut in 0..=operations {
                run_compaction_case(&root.join(cut.to_string()), Some(cut), gaps).await;
            }
        }
    });
}
