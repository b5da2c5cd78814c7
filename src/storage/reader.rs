//! Sequential batch scanning over a segment file with bounded DMA reads.
//!
//! The scanner reads chunks of at most `STORAGE_READ_BYTES_MAX` and hands out whole batches as
//! `Bytes` slices of the chunk (no copy per batch). A batch larger than a chunk is read on its
//! own, in pieces if it exceeds the read limit. It checks framing only (length fields); callers
//! check each batch's content with `check_batch` (CRC, counts, offset continuity), recovery
//! and disk reads alike, so that no damaged batch is accepted or served.

use crate::ids::Offset;
use std::io;

use bytes::{Bytes, BytesMut};

use crate::limits::{STORAGE_BATCH_BYTES_MAX, STORAGE_READ_BYTES_MAX};
use crate::protocol::record_batch::{self, declared_batch_bytes, LOG_OVERHEAD_BYTES};
use crate::storage::file::SegmentFile;
use crate::storage::segment::BatchMeta;

/// How a stored batch's base offset follows the batch before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// It is the offset after the batch before: a log compaction never rewrote.
    Dense,
    /// It is that offset or a later one: compaction removed whole batches (see `compact`).
    Sparse,
}

/// The facts of a stored batch if `record_batch::validate` accepts it (length, magic, CRC,
/// counts) and its base offset continues the log at `expected_base_offset` as `continuity`
/// says. The base offset lies outside the CRC, so only continuity catches damage there
/// (in a sparse log only a base offset that goes backwards).
pub fn check_batch(
    batch: &[u8],
    expected_base_offset: Offset,
    continuity: Continuity,
) -> Result<BatchMeta, String> {
    let summary = record_batch::validate(batch).map_err(|error| error.to_string())?;
    let base = Offset(summary.base_offset);
    let continues = match continuity {
        Continuity::Dense => base == expected_base_offset,
        Continuity::Sparse => base >= expected_base_offset,
    };
    if !continues {
        return Err(format!(
            "base offset {} does not continue the log at {expected_base_offset}",
            summary.base_offset
        ));
    }
    Ok(BatchMeta {
        base_offset: Offset(summary.base_offset),
        last_offset: Offset(summary.base_offset) + i64::from(summary.last_offset_delta),
        max_timestamp: summary.max_timestamp,
        bytes: summary.batch_bytes as u64,
    })
}

/// Why a scan stopped before `end`.
#[derive(Debug)]
pub enum ScanError {
    Io(io::Error),
    /// The bytes at `position` do not frame a whole batch inside the scanned range.
    Torn {
        position: u64,
        reason: String,
    },
}

pub struct Scanner {
    file: SegmentFile,
    position: u64,
    end: u64,
    chunk_bytes: usize,
    chunk: Bytes,
    chunk_start: u64,
}

impl Scanner {
    /// Scans `[position, end)` of `file`, reading about `chunk_bytes` at a time.
    pub fn new(file: SegmentFile, position: u64, end: u64, chunk_bytes: usize) -> Scanner {
        let chunk_bytes = chunk_bytes.clamp(LOG_OVERHEAD_BYTES, STORAGE_READ_BYTES_MAX);
        Scanner {
            file,
            position,
            end,
            chunk_bytes,
            chunk: Bytes::new(),
            chunk_start: position,
        }
    }

    fn buffered(&self, length: usize) -> Option<Bytes> {
        let from = (self.position - self.chunk_start) as usize;
        (self.position >= self.chunk_start && from + length <= self.chunk.len())
            .then(|| self.chunk.slice(from..from + length))
    }

    async fn fill(&mut self, length: usize) -> Result<Bytes, ScanError> {
        if let Some(bytes) = self.buffered(length) {
            return Ok(bytes);
        }
        let want = (length.max(self.chunk_bytes) as u64).min(self.end - self.position) as usize;
        let mut buffer = BytesMut::with_capacity(want);
        while buffer.len() < want {
            let at = self.position + buffer.len() as u64;
            let piece = (want - buffer.len()).min(STORAGE_READ_BYTES_MAX);
            let read = self.file.read_append(at, piece, &mut buffer).await;
            if read.map_err(ScanError::Io)? == 0 {
                break;
            }
        }
        self.chunk = buffer.freeze();
        self.chunk_start = self.position;
        self.buffered(length).ok_or_else(|| ScanError::Torn {
            position: self.position,
            reason: format!("file ends inside a batch of {length} bytes"),
        })
    }

    /// The next whole batch and its file position, or None at the end of the range.
    pub async fn next(&mut self) -> Result<Option<(u64, Bytes)>, ScanError> {
        if self.position >= self.end {
            return Ok(None);
        }
        let torn = |position, reason: String| ScanError::Torn { position, reason };
        if self.end - self.position < LOG_OVERHEAD_BYTES as u64 {
            return Err(torn(
                self.position,
                "range ends inside a batch header".into(),
            ));
        }
        let prefix = self.fill(LOG_OVERHEAD_BYTES).await?;
        let length =
            declared_batch_bytes(&prefix).map_err(|e| torn(self.position, e.to_string()))?;
        if length > STORAGE_BATCH_BYTES_MAX || self.position + length as u64 > self.end {
            return Err(torn(
                self.position,
                format!("batch length {length} overruns the range"),
            ));
        }
        let batch = self.fill(length).await?;
        let position = self.position;
        self.position += length as u64;
        Ok(Some((position, batch)))
    }
}
