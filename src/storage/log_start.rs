//! The log-start-offset checkpoint: one small file per partition directory that makes an
//! advanced log start (DeleteRecords) survive a restart.
//!
//! Kafka keeps one `log-start-offset-checkpoint` per data directory, rewritten periodically;
//! corelog keeps one file per partition (`log-start-offset`), rewritten before DeleteRecords is
//! answered, so that an acknowledged deletion is durable like an acknowledged produce, and so
//! that removing the partition directory removes its checkpoint too. The file is replaced by
//! write-to-temporary, fdatasync, rename and directory sync, so a crash leaves the old value or
//! the new one, never a torn one. Segments whose data lies wholly below the log start are
//! deleted afterwards; one left behind by a crash is deleted by the next retention pass.

use crate::ids::Offset;
use std::path::Path;

use crate::storage::side_file;
use crate::storage::StorageError;

/// Name of the checkpoint file inside a partition directory.
pub const LOG_START_FILE: &str = "log-start-offset";
/// A checkpoint is one decimal number and a newline; anything larger is not ours.
const LOG_START_FILE_BYTES_MAX: u64 = 64;

/// Durably records `offset` as the partition's log start.
pub async fn write(dir: &Path, offset: Offset) -> Result<(), StorageError> {
    assert!(
        offset >= Offset::ZERO,
        "log start offsets are never negative"
    );
    let checkpoint = format!("{offset}\n");
    side_file::replace(&dir.join(LOG_START_FILE), checkpoint.as_bytes()).await?;
    Ok(())
}

/// The recorded log start, if any. An unreadable checkpoint is reported and ignored: the log
/// then starts at its first segment, which shows deleted records again but loses nothing.
pub async fn read(dir: &Path) -> Result<Option<Offset>, StorageError> {
    let Some(bytes) = side_file::read(&dir.join(LOG_START_FILE), LOG_START_FILE_BYTES_MAX).await?
    else {
        return Ok(None);
    };
    let parsed = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .filter(|offset| *offset >= 0)
        .map(Offset);
    if parsed.is_none() {
        tracing::warn!(dir = %dir.display(), "ignoring an unreadable log-start-offset checkpoint");
    }
    Ok(parsed)
}
