//! Producer-state snapshots on disk and the rebuild of a partition's producer table at open.
//!
//! A snapshot `<offset>.snapshot` holds the producer state of every batch below `offset`. The
//! log writes one at each segment roll (offset = the new segment's base) and at a clean close
//! (offset = the log end), always from data already synced, through a temporary file renamed
//! into place. At open the newest snapshot not past the recovered log end is loaded and only
//! the batches from its offset on are scanned; an unreadable or corrupt one is deleted and the
//! next older one tried, and with none the whole log is scanned. Invariant: after a new
//! snapshot is written, at most `SNAPSHOTS_KEPT_COUNT` remain, and retention removes those
//! below the log start except the newest.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::limits::{PRODUCER_SNAPSHOT_BYTES_MAX, STORAGE_READ_BYTES_MAX};
use crate::protocol::record_batch;
use crate::storage::file;
use crate::storage::producer_state::{ProducerAppend, ProducerBatch, ProducerTable};
use crate::storage::reader::{ScanError, Scanner};
use crate::storage::segment::{read_small_file, segment_path, write_small_file, Segment};
use crate::storage::StorageError;

const EXTENSION: &str = "snapshot";
/// The newest snapshot plus one fallback in case the newest is damaged.
const SNAPSHOTS_KEPT_COUNT: usize = 2;

/// Offsets of the snapshot files in `dir`, ascending.
fn list_snapshots(dir: &Path) -> io::Result<Vec<i64>> {
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".snapshot")) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|byte| byte.is_ascii_digit()) {
            if let Ok(offset) = stem.parse::<i64>() {
                offsets.push(offset);
            }
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    segment_path(dir, offset, EXTENSION)
}

/// Writes the snapshot of `table` at `offset` durably, then drops all but the newest few.
pub async fn write_snapshot(dir: &Path, offset: i64, table: &ProducerTable) -> io::Result<()> {
    let bytes = table.encode_snapshot(offset);
    let temporary = segment_path(dir, offset, "snapshot.tmp");
    write_small_file(&temporary, &bytes).await?;
    file::rename(&temporary, &snapshot_path(dir, offset)).await?;
    file::sync_directory(dir).await?;
    let offsets = list_snapshots(dir)?;
    let doomed = offsets.len().saturating_sub(SNAPSHOTS_KEPT_COUNT);
    for old in &offsets[..doomed] {
        remove_if_exists(&snapshot_path(dir, *old)).await?;
    }
    Ok(())
}

/// After retention moved the log start: snapshots below it describe deleted data; all but
/// the newest go (the newest still carries the state of producers whose batches are gone).
pub async fn prune_below(dir: &Path, log_start: i64) -> io::Result<()> {
    let offsets = list_snapshots(dir)?;
    let Some((_, older)) = offsets.split_last() else {
        return Ok(());
    };
    for offset in older.iter().filter(|offset| **offset < log_start) {
        remove_if_exists(&snapshot_path(dir, *offset)).await?;
    }
    Ok(())
}

async fn remove_if_exists(path: &Path) -> io::Result<()> {
    match file::remove_file(path).await {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// The newest usable snapshot at or below `log_end`: its offset and table. Snapshots past the
/// end (the tail was cut at recovery) and corrupt ones are deleted on the way.
async fn load_newest(dir: &Path, log_end: i64) -> Result<Option<(i64, ProducerTable)>, io::Error> {
    for offset in list_snapshots(dir)?.into_iter().rev() {
        let path = snapshot_path(dir, offset);
        let problem = if offset > log_end {
            format!("snapshot at {offset} is past the log end {log_end}")
        } else {
            match read_small_file(&path, PRODUCER_SNAPSHOT_BYTES_MAX).await? {
                None => "snapshot is missing or too large".to_string(),
                Some(bytes) => match ProducerTable::decode_snapshot(&bytes) {
                    Ok((stored, table)) if stored == offset => return Ok(Some((offset, table))),
                    Ok((stored, _)) => format!("snapshot names offset {offset} but holds {stored}"),
                    Err(reason) => reason,
                },
            }
        };
        tracing::warn!(path = %path.display(), %problem, "ignoring producer snapshot");
        remove_if_exists(&path).await?;
    }
    Ok(None)
}

/// Rebuilds the producer table of a recovered log: the newest snapshot, then every batch
/// header from its offset (or the log start) to `log_end`. Also says whether any batch had to
/// be read (no snapshot at `log_end`): a snapshot written at close spares the next open that.
pub async fn rebuild(
    dir: &Path,
    segments: &BTreeMap<i64, Segment>,
    log_end: i64,
) -> Result<(ProducerTable, bool), StorageError> {
    let log_start = *segments.keys().next().expect("at least one segment");
    let (from, mut table) = match load_newest(dir, log_end).await? {
        Some((offset, table)) => (offset.max(log_start), table),
        None => (log_start, ProducerTable::default()),
    };
    if from < log_end {
        let dir = dir.display();
        tracing::info!(%dir, from, log_end, "rebuilding producer state from the log");
    }
    let start_segment = segments
        .range(..=from)
        .next_back()
        .map_or(log_start, |(base, _)| *base);
    for segment in segments.range(start_segment..).map(|(_, segment)| segment) {
        if segment.next_offset <= from {
            continue;
        }
        let position = segment.position_for_offset(from);
        let chunk_bytes = STORAGE_READ_BYTES_MAX;
        let mut scanner = Scanner::new(segment.file.clone(), position, segment.size, chunk_bytes);
        while let Some((_, batch)) = scanner.next().await.map_err(scan_error)? {
            record_stored_batch(&mut table, &batch, from);
        }
    }
    Ok((table, from < log_end))
}

/// Records a batch read back from the log (already validated at recovery) if it has a
/// producer id and lies at or past `from`.
fn record_stored_batch(table: &mut ProducerTable, batch: &[u8], from: i64) {
    let Some(header) = record_batch::header(batch) else {
        return;
    };
    let base_offset = header.base_offset.get();
    let last_offset_delta = header.last_offset_delta.get();
    if base_offset < from || header.attributes.get() & record_batch::ATTRIBUTE_CONTROL != 0 {
        return;
    }
    let producer = ProducerAppend::from_header(
        header.producer_id.get(),
        header.producer_epoch.get(),
        header.base_sequence.get(),
        last_offset_delta,
    );
    if let Some(producer) = producer {
        let batch = ProducerBatch {
            first_seq: producer.first_seq,
            last_seq: producer.last_seq,
            base_offset,
            last_offset: base_offset + i64::from(last_offset_delta),
            timestamp: header.max_timestamp.get(),
        };
        table.record(producer.producer_id, producer.epoch, batch);
    }
}

fn scan_error(error: ScanError) -> StorageError {
    match error {
        ScanError::Io(error) => StorageError::Io(error),
        ScanError::Torn { position, reason } => StorageError::Corrupt(format!(
            "bad batch framing at position {position} while rebuilding producer state: {reason}"
        )),
    }
}
