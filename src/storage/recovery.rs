//! Recovery of one segment at open: trust the indexes only as far as they agree with the log,
//! re-check every batch after the last index entry, and cut the log at the first bad batch.
//!
//! A batch is good if its framing fits the file, `record_batch::validate` accepts it (length,
//! magic, CRC, counts) and its base offset continues the previous one. The zero padding the
//! appender leaves after the last batch (less than one block) is normal and dropped silently;
//! anything else after the last good batch is logged as a warning and dropped.

use std::path::Path;

use bytes::Bytes;

use crate::limits::{INDEX_FILE_BYTES_MAX, STORAGE_READ_BYTES_MAX};
use crate::protocol::record_batch;
use crate::storage::file::SegmentFile;
use crate::storage::index;
use crate::storage::reader::{ScanError, Scanner};
use crate::storage::segment::{read_small_file, segment_path, BatchMeta, Segment};
use crate::storage::StorageError;

/// A recovered segment and whether its index files must be rewritten.
pub struct Recovered {
    pub segment: Segment,
    pub indexes_stale: bool,
}

/// Opens and recovers the segment with `base_offset` in `dir`.
pub async fn recover_segment(
    dir: &Path,
    base_offset: i64,
    index_interval_bytes: u64,
) -> Result<Recovered, StorageError> {
    let log_path = segment_path(dir, base_offset, "log");
    let file = SegmentFile::open_or_create(&log_path).await?;
    let file_bytes = file.size().await?;
    let mut segment = Segment::new(base_offset, file.clone());
    let loaded = load_indexes(dir, &segment, file_bytes).await?;
    let indexes_stale = loaded.is_none();
    if indexes_stale && file_bytes > 0 {
        tracing::info!(path = %log_path.display(), "rebuilding segment indexes by scanning");
    }
    let (offsets, times) = loaded.unwrap_or_default();
    let (start, _) = segment.resume_from(offsets, times);
    let mut scanner = Scanner::new(file.clone(), start, file_bytes, STORAGE_READ_BYTES_MAX);
    let stop = loop {
        match scanner.next().await {
            Ok(None) => break None,
            Ok(Some((position, batch))) => match check_batch(&segment, &batch) {
                Ok(meta) => segment.observe(position, &meta, index_interval_bytes),
                Err(reason) => break Some((position, reason)),
            },
            Err(ScanError::Io(error)) => return Err(error.into()),
            Err(ScanError::Torn { position, reason }) => break Some((position, reason)),
        }
    };
    if let Some((position, reason)) = stop {
        report_dropped_tail(&file, &log_path, position, file_bytes, &reason).await?;
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

fn check_batch(segment: &Segment, batch: &Bytes) -> Result<BatchMeta, String> {
    let summary = record_batch::validate(batch).map_err(|error| error.to_string())?;
    if summary.base_offset != segment.next_offset {
        return Err(format!(
            "base offset {} does not continue the log at {}",
            summary.base_offset, segment.next_offset
        ));
    }
    Ok(BatchMeta {
        base_offset: summary.base_offset,
        last_offset: summary.base_offset + i64::from(summary.last_offset_delta),
        max_timestamp: summary.max_timestamp,
        bytes: summary.batch_bytes as u64,
    })
}

/// Index entries from disk if both files exist, are well formed, and the last offset entry
/// points at a batch with the offset it claims.
async fn load_indexes(
    dir: &Path,
    segment: &Segment,
    file_bytes: u64,
) -> Result<Option<(Vec<index::OffsetEntry>, Vec<index::TimeEntry>)>, StorageError> {
    let base = segment.base_offset;
    let (offset_path, time_path) = (
        segment_path(dir, base, "index"),
        segment_path(dir, base, "timeindex"),
    );
    let Some(offset_bytes) = read_small_file(&offset_path, INDEX_FILE_BYTES_MAX).await? else {
        return Ok(None);
    };
    let Some(time_bytes) = read_small_file(&time_path, INDEX_FILE_BYTES_MAX).await? else {
        return Ok(None);
    };
    let Some(offsets) = index::decode_offsets(&offset_bytes, file_bytes) else {
        return Ok(None);
    };
    let Some(times) = index::decode_times(&time_bytes) else {
        return Ok(None);
    };
    if let Some(last) = offsets.last() {
        let header = segment.file.read(u64::from(last.position), 8).await?;
        let claimed = base + i64::from(last.relative_offset);
        if header.len() != 8 || i64::from_be_bytes(header[..8].try_into().expect("8")) != claimed {
            return Ok(None);
        }
    }
    Ok(Some((offsets, times)))
}

/// Largest zero tail recovery reads to tell pre-written space from a damaged tail.
const PREPARED_ZEROS_CHECK_BYTES: u64 = 16 * 1024 * 1024;

async fn report_dropped_tail(
    file: &SegmentFile,
    path: &Path,
    position: u64,
    file_bytes: u64,
    reason: &str,
) -> Result<(), StorageError> {
    let dropped = file_bytes - position;
    // Block padding and the pre-written region (see `appender`) are zeros: not a loss.
    if dropped <= PREPARED_ZEROS_CHECK_BYTES {
        let rest = file.read(position, dropped as usize).await?;
        if rest.iter().all(|byte| *byte == 0) {
            return Ok(());
        }
    }
    tracing::warn!(
        path = %path.display(),
        position,
        bytes_dropped = dropped,
        reason,
        "truncating segment at first torn or corrupt batch"
    );
    Ok(())
}
