//! Recovery of a partition's segments at open: trust the indexes only as far as they agree
//! with the log, re-check every batch after the last index entry, and cut the log at the first
//! bad batch.
//!
//! A batch is good if its framing fits the file and `reader::check_batch` accepts it (length,
//! magic, CRC, counts, base offset continuing the previous batch). What the indexes cover was
//! written and synced before they were, so it is not re-read at open; damage there is caught
//! when a read checks the batch (see `Log::read`). Partition leader epochs lie outside the CRC
//! in the v2 format, so a flipped bit there cannot be seen by anyone.
//!
//! What is dropped, and what is said about it:
//! - The zero padding and pre-written zeros (see `appender`) after the active segment's last
//!   batch: normal, logged at debug.
//! - Anything else after the last good batch of a segment, or any tail of a closed segment
//!   (closed segments are trimmed to their last batch): a warning with path, position, first
//!   offset dropped, bytes dropped and the reason.
//! - A closed segment that ends before the next segment's base offset cuts the log there, as
//!   Kafka does: every later segment is deleted with a warning each, so offsets stay
//!   contiguous. Segments that overlap are refused (`StorageError::Corrupt`).
//!
//! Invariant after recovery: index files on disk either describe a prefix of their segment as
//! it now is, or are rewritten here; stale entries past a cut never survive.

use crate::ids::Offset;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use crate::limits::{INDEX_FILE_BYTES_MAX, STORAGE_READ_BYTES_MAX};
use crate::storage::compact::Compacted;
use crate::storage::file::{self, SegmentFile};
use crate::storage::index;
use crate::storage::reader::{check_batch, Continuity, ScanError, Scanner};
use crate::storage::segment::{read_small_file, segment_path, Segment};
use crate::storage::StorageError;

/// Opens and recovers the segments with base offsets `bases` (ascending) in `dir`. In a
/// dense log they come back contiguous: if one ends short of the next, the later ones are
/// deleted. In a sparse (compacted) log a segment may end short of the next (a compaction
/// removed its last batches: it then spans up to the next one). In a compacted log, sparse or
/// not, one may end past the next ones: those are segments a compaction merged into it and
/// had not deleted yet when it stopped.
pub(super) async fn recover_segments(
    dir: &Path,
    bases: &[Offset],
    index_interval_bytes: u64,
    compacted: Compacted,
) -> Result<BTreeMap<Offset, Segment>, StorageError> {
    let continuity = compacted.continuity;
    let mut segments = BTreeMap::new();
    let mut index = 0;
    while index < bases.len() {
        let base = bases[index];
        let closed = index + 1 < bases.len();
        let mut recovered =
            recover_segment(dir, base, index_interval_bytes, closed, continuity).await?;
        if recovered.indexes_stale {
            recovered.segment.persist_indexes(dir).await?;
        }
        let end = recovered.segment.next_offset;
        let mut segment = recovered.segment;
        let later = &bases[index + 1..];
        let merged = match compacted.merged {
            true => later.iter().take_while(|next| **next < end).count(),
            false => 0,
        };
        if merged > 0 {
            let reason = "a compaction merged it into the segment before";
            delete_segments(dir, &later[..merged], reason).await?;
        }
        index += merged;
        let later = &later[merged..];
        if continuity == Continuity::Sparse {
            if let Some(&next_base) = later.first() {
                segment.next_offset = next_base;
            }
            segments.insert(base, segment);
            index += 1;
            continue;
        }
        segments.insert(base, segment);
        let Some(&next_base) = later.first() else {
            break;
        };
        if end > next_base {
            return Err(StorageError::Corrupt(format!(
                "segments overlap in {}: one ends at offset {end}, the next starts at {next_base}",
                dir.display()
            )));
        }
        if end < next_base {
            let reason = format!(
                "the segment before ends at offset {end} but this one starts at {next_base}"
            );
            delete_segments(dir, later, &reason).await?;
            break;
        }
        index += 1;
    }
    Ok(segments)
}

/// A recovered segment and whether its index files must be rewritten.
struct Recovered {
    segment: Segment,
    indexes_stale: bool,
}

/// Opens and recovers the segment with `base_offset` in `dir`. `closed` says a later segment
/// follows, so no zero padding is expected after its last batch.
async fn recover_segment(
    dir: &Path,
    base_offset: Offset,
    index_interval_bytes: u64,
    closed: bool,
    continuity: Continuity,
) -> Result<Recovered, StorageError> {
    let log_path = segment_path(dir, base_offset, "log");
    let file = SegmentFile::open_or_create(&log_path).await?;
    let file_bytes = file.size().await?;
    let mut segment = Segment::new(base_offset, file.clone());
    let loaded = load_indexes(dir, &segment, file_bytes).await?;
    let mut indexes_stale = loaded.is_err();
    if let (Err(problem), true) = (&loaded, file_bytes > 0) {
        tracing::info!(path = %log_path.display(), problem, "rebuilding segment indexes");
    }
    let (offsets, times) = loaded.unwrap_or_default();
    let (start, _) = segment.resume_from(offsets, times);
    let mut stop = scan(
        &mut segment,
        start,
        file_bytes,
        index_interval_bytes,
        continuity,
    )
    .await?;
    if matches!(stop, Some((position, _)) if position == start && start > 0) {
        // The batch the last index entry names is bad: the index may be the stale part, so
        // let a scan of the whole segment decide where the log ends.
        segment = Segment::new(base_offset, file.clone());
        stop = scan(
            &mut segment,
            0,
            file_bytes,
            index_interval_bytes,
            continuity,
        )
        .await?;
        indexes_stale = true;
    }
    if let Some((position, reason)) = stop {
        let tail = Tail {
            path: &log_path,
            position,
            offset: segment.next_offset,
            file_bytes,
            closed,
        };
        indexes_stale |= report_dropped_tail(&file, &tail, &reason).await?;
    }
    if segment.size != file_bytes {
        file.truncate(segment.size).await?;
        file.fdatasync().await?;
    }
    Ok(Recovered {
        segment,
        indexes_stale,
    })
}

/// The in-memory state of `segment` after its file was cut to `end` bytes, where the batch
/// at `offset` began (a suffix truncation): the index entries of the batches before the cut
/// are kept, and the batches after the last of them are read again. Those were written and
/// synced, so a bad one is damage (`StorageError::Corrupt`), not a torn tail.
pub async fn rescan_segment(
    segment: Segment,
    end: u64,
    offset: Offset,
    index_interval_bytes: u64,
    continuity: Continuity,
) -> Result<Segment, StorageError> {
    let base = segment.base_offset;
    let offsets = segment
        .offsets
        .iter()
        .filter(|entry| u64::from(entry.position) < end);
    let times = segment.times.iter().filter(|entry| {
        // The batch holding the entry's offset lies wholly below the cut.
        base + i64::from(entry.relative_offset) < offset
    });
    let (offsets, times) = (offsets.copied().collect(), times.copied().collect());
    let mut fresh = Segment::new(base, segment.file);
    let (start, _) = fresh.resume_from(offsets, times);
    let stop = scan(&mut fresh, start, end, index_interval_bytes, continuity).await?;
    if let Some((position, reason)) = stop {
        return Err(StorageError::Corrupt(format!(
            "stored batch at position {position} of segment {base}: {reason}"
        )));
    }
    // In a compacted log the cut may follow a gap: the segment spans up to it.
    let gap = continuity == Continuity::Sparse && fresh.next_offset <= offset;
    assert!(
        fresh.size == end && (fresh.next_offset == offset || gap),
        "the cut is a batch boundary"
    );
    fresh.next_offset = offset;
    Ok(fresh)
}

/// Observes every good batch of `[start, end)` into `segment`; returns where and why the scan
/// stopped early, if it did.
async fn scan(
    segment: &mut Segment,
    start: u64,
    end: u64,
    index_interval_bytes: u64,
    continuity: Continuity,
) -> Result<Option<(u64, String)>, StorageError> {
    let mut scanner = Scanner::new(segment.file.clone(), start, end, STORAGE_READ_BYTES_MAX);
    loop {
        match scanner.next().await {
            Ok(None) => return Ok(None),
            Ok(Some((position, batch))) => {
                match check_batch(&batch, segment.next_offset, continuity) {
                    Ok(meta) => segment.observe(position, &meta, index_interval_bytes),
                    Err(reason) => return Ok(Some((position, reason))),
                }
            }
            Err(ScanError::Io(error)) => return Err(error.into()),
            Err(ScanError::Torn { position, reason }) => return Ok(Some((position, reason))),
        }
    }
}

type LoadedIndexes = (Vec<index::OffsetEntry>, Vec<index::TimeEntry>);

/// Index entries from disk if both files exist, are well formed with matching trailers, and
/// the last offset entry points at a batch with the offset it claims; else why not.
async fn load_indexes(
    dir: &Path,
    segment: &Segment,
    file_bytes: u64,
) -> Result<Result<LoadedIndexes, &'static str>, StorageError> {
    let base = segment.base_offset;
    let (offset_path, time_path) = (
        segment_path(dir, base, "index"),
        segment_path(dir, base, "timeindex"),
    );
    if file_bytes == 0 && file::is_missing(&offset_path) && file::is_missing(&time_path) {
        // An empty segment has nothing to index: a log closed before its first write (see
        // `Log::close`) leaves no index files, and writing empty ones here for each of
        // thousands of idle partitions would cost two syncs each at every start.
        return Ok(Ok((Vec::new(), Vec::new())));
    }
    let Some(offset_bytes) = read_small_file(&offset_path, INDEX_FILE_BYTES_MAX).await? else {
        return Ok(Err("offset index missing or too large"));
    };
    let Some(time_bytes) = read_small_file(&time_path, INDEX_FILE_BYTES_MAX).await? else {
        return Ok(Err("time index missing or too large"));
    };
    let Some(offsets) = index::decode_offsets(&offset_bytes, file_bytes) else {
        return Ok(Err("offset index corrupt or past the end of the log"));
    };
    let Some(times) = index::decode_times(&time_bytes) else {
        return Ok(Err("time index corrupt"));
    };
    if let Some(last) = offsets.last() {
        let header = segment.file.read(u64::from(last.position), 8).await?;
        let claimed = base + i64::from(last.relative_offset);
        if header.len() != 8
            || i64::from_be_bytes(header[..8].try_into().expect("8")) != claimed.get()
        {
            return Ok(Err("last offset index entry does not match the log"));
        }
    }
    Ok(Ok((offsets, times)))
}

/// Where a segment's scan stopped before the end of its file.
struct Tail<'a> {
    path: &'a Path,
    position: u64,
    /// The first offset not kept: the offset the next batch gets.
    offset: Offset,
    file_bytes: u64,
    closed: bool,
}

/// Largest zero tail recovery reads to tell pre-written space from a damaged tail.
const PREPARED_ZEROS_CHECK_BYTES: u64 = 16 * 1024 * 1024;

/// Logs the tail about to be cut off. Returns whether it held anything but the active
/// segment's zero padding (then the index files may name batches that are gone).
async fn report_dropped_tail(
    file: &SegmentFile,
    tail: &Tail<'_>,
    reason: &str,
) -> Result<bool, StorageError> {
    let dropped = tail.file_bytes - tail.position;
    let padding = !tail.closed
        && dropped <= PREPARED_ZEROS_CHECK_BYTES
        && all_zeros(file, tail.position, tail.file_bytes).await?;
    if padding {
        tracing::debug!(
            path = %tail.path.display(),
            position = tail.position,
            bytes_dropped = dropped,
            "cutting zero padding after the last batch"
        );
        return Ok(false);
    }
    tracing::warn!(
        path = %tail.path.display(),
        position = tail.position,
        offset = %tail.offset,
        bytes_dropped = dropped,
        reason,
        "truncating segment at first torn or corrupt batch"
    );
    Ok(true)
}

/// Whether `[from, to)` of `file` holds only zeros, read in bounded pieces.
async fn all_zeros(file: &SegmentFile, from: u64, to: u64) -> io::Result<bool> {
    let mut position = from;
    while position < to {
        let length = ((to - position) as usize).min(STORAGE_READ_BYTES_MAX);
        let bytes = file.read(position, length).await?;
        if bytes.is_empty() {
            break;
        }
        if bytes.iter().any(|byte| *byte != 0) {
            return Ok(false);
        }
        position += bytes.len() as u64;
    }
    Ok(true)
}

/// Deletes whole segments after a cut in the log, index files first so that an index never
/// outlives its log file if this is interrupted.
async fn delete_segments(dir: &Path, bases: &[Offset], reason: &str) -> Result<(), StorageError> {
    for &base in bases {
        let path = segment_path(dir, base, "log");
        let bytes_dropped = file::file_len(&path).ok().flatten().unwrap_or(0);
        tracing::warn!(
            path = %path.display(),
            base_offset = %base,
            bytes_dropped,
            reason,
            "deleting segment after a cut in the log"
        );
        for extension in ["index", "timeindex", "log"] {
            match file::remove_file(&segment_path(dir, base, extension)).await {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error)?,
                _ => {}
            }
        }
    }
    file::sync_directory(dir).await?;
    Ok(())
}
