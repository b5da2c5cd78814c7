//! Producer-state snapshots on disk and the rebuild of a partition's producer table at open.
//!
//! A snapshot `<offset>.snapshot` beside the segments holds the producer state of every batch
//! below `offset`. The partition writes one for each segment roll its log reports (offset =
//! the new segment's base) and at a clean close (offset = the log end), always from durable
//! batches only, replaced whole through `side_file`. At open the newest snapshot not past the
//! recovered log end is loaded and only the batches from its offset on are read; an unreadable
//! or corrupt one is deleted and the next older one tried, and with none the whole log is
//! read. Invariant: after a new snapshot is written, at most `SNAPSHOTS_KEPT_COUNT` remain,
//! and retention removes those below the log start except the newest.

use crate::ids::Offset;
use std::io;
use std::path::{Path, PathBuf};

use crate::limits::PRODUCER_SNAPSHOT_BYTES_MAX;
use crate::partition::producer_state::{stored_batch_producer, ProducerTable};
use crate::protocol::record_batch;
use crate::storage::{side_file, Log, StorageError};

const EXTENSION: &str = "snapshot";
/// The newest snapshot plus one fallback in case the newest is damaged.
const SNAPSHOTS_KEPT_COUNT: usize = 2;
/// How much of the log one read of the rebuild asks for.
const REBUILD_READ_BYTES: usize = 1 << 20;

fn snapshot_path(dir: &Path, offset: Offset) -> PathBuf {
    side_file::offset_path(dir, offset, EXTENSION)
}

/// Writes the snapshot of `table` at `offset` durably, then drops all but the newest few.
pub async fn write_snapshot(dir: &Path, offset: Offset, table: &ProducerTable) -> io::Result<()> {
    let bytes = table.encode_snapshot(offset);
    side_file::replace(&snapshot_path(dir, offset), &bytes).await?;
    let offsets = side_file::list_offsets(dir, EXTENSION)?;
    let doomed = offsets.len().saturating_sub(SNAPSHOTS_KEPT_COUNT);
    for old in &offsets[..doomed] {
        side_file::remove_if_exists(&snapshot_path(dir, *old)).await?;
    }
    Ok(())
}

/// After retention moved the log start: snapshots below it describe deleted data; all but
/// the newest go (the newest still carries the state of producers whose batches are gone).
pub async fn prune_below(dir: &Path, log_start: Offset) -> io::Result<()> {
    let offsets = side_file::list_offsets(dir, EXTENSION)?;
    let Some((_, older)) = offsets.split_last() else {
        return Ok(());
    };
    for offset in older.iter().filter(|offset| **offset < log_start) {
        side_file::remove_if_exists(&snapshot_path(dir, *offset)).await?;
    }
    Ok(())
}

/// The newest usable snapshot at or below `log_end`: its offset and table. Snapshots past the
/// end (the tail was cut at recovery or truncated) and corrupt ones are deleted on the way.
async fn load_newest(
    dir: &Path,
    log_end: Offset,
) -> Result<Option<(Offset, ProducerTable)>, io::Error> {
    for offset in side_file::list_offsets(dir, EXTENSION)?.into_iter().rev() {
        let path = snapshot_path(dir, offset);
        let problem = if offset > log_end {
            format!("snapshot at {offset} is past the log end {log_end}")
        } else {
            match side_file::read(&path, PRODUCER_SNAPSHOT_BYTES_MAX).await? {
                None => "snapshot is missing or too large".to_string(),
                Some(bytes) => match ProducerTable::decode_snapshot(&bytes) {
                    Ok((stored, table)) if stored == offset => return Ok(Some((offset, table))),
                    Ok((stored, _)) => format!("snapshot names offset {offset} but holds {stored}"),
                    Err(reason) => reason,
                },
            }
        };
        tracing::warn!(path = %path.display(), %problem, "ignoring producer snapshot");
        side_file::remove_if_exists(&path).await?;
    }
    Ok(None)
}

/// The producer table of `log` as it is durable now: the newest snapshot, then every batch
/// header from its offset (or the log start) to the durable end. Also returns the offset of
/// the snapshot when it is at that end, so that a close with nothing new writes none.
pub async fn rebuild(log: &Log) -> Result<(ProducerTable, Option<Offset>), StorageError> {
    let end = log.durable_end_offset();
    let (from, mut table) = match load_newest(log.dir(), end).await? {
        Some((offset, table)) => (offset, table),
        None => (Offset::ZERO, ProducerTable::default()),
    };
    let mut offset = from.max(log.log_start_offset());
    if offset < end {
        let dir = log.dir().display();
        tracing::info!(%dir, from = %offset, log_end = %end, "rebuilding producer state from the log");
    }
    while offset < end {
        let batches = log.read(offset, REBUILD_READ_BYTES, end).await?;
        let Some(last) = batches.last() else { break };
        offset = record_batch::header(last)
            .map(|header| {
                Offset(header.base_offset.get()) + i64::from(header.last_offset_delta.get())
            })
            .ok_or_else(|| StorageError::Corrupt("a batch read back has no header".into()))?
            + 1;
        for batch in &batches {
            record_stored_batch(&mut table, batch, from);
        }
    }
    Ok((table, (from == end).then_some(end)))
}

/// Records a batch read back from the log (checked by the read) if it has a producer id and
/// starts at or past `from`, the offset of the snapshot the table was loaded from.
fn record_stored_batch(table: &mut ProducerTable, batch: &[u8], from: Offset) {
    if let Some((producer, batch)) = stored_batch_producer(batch) {
        if batch.base_offset >= from {
            table.record(producer.producer_id, producer.epoch, batch);
        }
    }
}
