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
//!
//! The aborted-transaction files (`<end>.txnindex`, see `aborted`) live here too: the
//! partition writes the file of the range since the last one before each snapshot, and skips
//! the snapshot when the file cannot be written, so that every snapshot has the files of the
//! aborts below it. Opening loads the files up to the snapshot it rebuilds from, deletes
//! those past it (the log after the snapshot is read again), and falls back to reading the
//! whole log when one of them is damaged. Compaction removes the entries of aborted
//! transactions none of whose batches are left from the files (`forget_aborted`).

use crate::ids::Offset;
use std::io;
use std::path::{Path, PathBuf};

use crate::limits::{ABORTED_TXN_FILE_BYTES_MAX, PRODUCER_SNAPSHOT_BYTES_MAX};
use crate::partition::aborted::{self, AbortedTxn, AbortedTxns};
use crate::partition::producer_state::{ProducerChange, ProducerTable};
use crate::partition::producers::Rebuilt;
use crate::protocol::record_batch;
use crate::storage::{side_file, Log, StorageError};

const EXTENSION: &str = "snapshot";
const ABORTED_EXTENSION: &str = "txnindex";
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

fn aborted_path(dir: &Path, end: Offset) -> PathBuf {
    side_file::offset_path(dir, end, ABORTED_EXTENSION)
}

/// Writes the aborted transactions with markers in `[from, end)` durably as `<end>.txnindex`;
/// nothing for a range without any.
pub async fn write_aborted(
    dir: &Path,
    from: Offset,
    end: Offset,
    entries: &[AbortedTxn],
) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let bytes = aborted::encode_file(from, end, entries);
    side_file::replace(&aborted_path(dir, end), &bytes).await
}

/// The offset of the oldest snapshot, if there is one: the lowest offset a rebuild may start
/// replaying the log from (or the log start, with none left).
pub fn oldest_snapshot(dir: &Path) -> io::Result<Option<Offset>> {
    Ok(side_file::list_offsets(dir, EXTENSION)?.first().copied())
}

/// Removes the entries of the aborted transactions whose markers are at `markers` from the
/// files that hold them: a file left without entries goes (a range without a file has no
/// aborts). A file that cannot be read stays as it is (opening then reads the whole log).
pub async fn forget_aborted(dir: &Path, markers: &[Offset]) -> io::Result<()> {
    for end in side_file::list_offsets(dir, ABORTED_EXTENSION)? {
        let path = aborted_path(dir, end);
        let Some(bytes) = side_file::read(&path, ABORTED_TXN_FILE_BYTES_MAX).await? else {
            continue;
        };
        let Ok((from, _, entries)) = aborted::decode_file(&bytes) else {
            continue;
        };
        let kept: Vec<AbortedTxn> = entries
            .iter()
            .filter(|entry| !markers.contains(&entry.last_offset))
            .copied()
            .collect();
        if kept.len() == entries.len() {
            continue;
        }
        if kept.is_empty() {
            side_file::remove_durably(&path).await?;
        } else {
            write_aborted(dir, from, end, &kept).await?;
        }
    }
    Ok(())
}

/// After retention moved the log start: snapshots below it describe deleted data; all but
/// the newest go (the newest still carries the state of producers whose batches are gone).
/// Aborted-transaction files of ranges wholly below it go too.
pub async fn prune_below(dir: &Path, log_start: Offset) -> io::Result<()> {
    for end in side_file::list_offsets(dir, ABORTED_EXTENSION)? {
        if end <= log_start {
            side_file::remove_if_exists(&aborted_path(dir, end)).await?;
        }
    }
    let offsets = side_file::list_offsets(dir, EXTENSION)?;
    let Some((_, older)) = offsets.split_last() else {
        return Ok(());
    };
    for offset in older.iter().filter(|offset| **offset < log_start) {
        side_file::remove_if_exists(&snapshot_path(dir, *offset)).await?;
    }
    Ok(())
}

/// Deletes the aborted-transaction files of ranges ending past `offset` (all of them for
/// `Offset::ZERO`).
async fn remove_aborted_past(dir: &Path, offset: Offset) -> io::Result<()> {
    for end in side_file::list_offsets(dir, ABORTED_EXTENSION)? {
        if end > offset || offset == Offset::ZERO {
            side_file::remove_if_exists(&aborted_path(dir, end)).await?;
        }
    }
    Ok(())
}

/// Forgets every aborted-transaction file: the log starts again empty.
pub async fn remove_aborted(dir: &Path) -> io::Result<()> {
    remove_aborted_past(dir, Offset::ZERO).await
}

/// The aborted transactions of the files that end at or below `snapshot`, or None when one
/// of them cannot be read or trusted (then the whole log is to be read).
async fn load_aborted(dir: &Path, snapshot: Offset) -> io::Result<Option<Vec<AbortedTxn>>> {
    let mut entries = Vec::new();
    for end in side_file::list_offsets(dir, ABORTED_EXTENSION)? {
        if end > snapshot {
            break;
        }
        let path = aborted_path(dir, end);
        let problem = match side_file::read(&path, ABORTED_TXN_FILE_BYTES_MAX).await? {
            None => "aborted-transaction file is missing or too large".to_string(),
            Some(bytes) => match aborted::decode_file(&bytes) {
                Ok((_, stored_end, found)) if stored_end == end => {
                    entries.extend(found);
                    continue;
                }
                Ok((_, stored_end, _)) => format!("file names {end} but holds {stored_end}"),
                Err(reason) => reason,
            },
        };
        tracing::warn!(path = %path.display(), %problem, "ignoring aborted-transaction files; reading the whole log");
        return Ok(None);
    }
    Ok(Some(entries))
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

/// The producer state of `log` as it is durable now: the newest snapshot and the aborted
/// transactions below it, then every batch header from its offset (or the log start) to
/// the durable end. Also the offset of the snapshot when it is at that end, so that a close
/// with nothing new writes none.
pub async fn rebuild(log: &Log) -> Result<Rebuilt, StorageError> {
    let end = log.durable_end_offset();
    let dir = log.dir();
    let newest = load_newest(dir, end).await?;
    let (from, mut table, mut aborted) = match newest {
        Some((offset, table)) => match load_aborted(dir, offset).await? {
            Some(aborted) => (offset, table, aborted),
            None => (Offset::ZERO, ProducerTable::default(), Vec::new()),
        },
        None => (Offset::ZERO, ProducerTable::default(), Vec::new()),
    };
    remove_aborted_past(dir, from).await?;
    let mut completed = Vec::new();
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
            // The batch holding the log start may begin below the snapshot's offset.
            let change = ProducerChange::of_stored(batch).filter(|c| c.offset() >= from);
            let Some(done) = change.and_then(|change| table.apply(&change)) else {
                continue;
            };
            aborted.extend(AbortedTxn::of(&done));
            completed.push(done);
        }
    }
    let mut aborted = AbortedTxns::from_entries(aborted);
    aborted.remove_below(log.log_start_offset());
    Ok(Rebuilt {
        durable: table,
        saved_at: (from == end).then_some(end),
        aborted,
        completed,
        aborted_saved_to: from,
    })
}
