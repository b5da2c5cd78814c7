//! Our own O_DIRECT appender over one segment file.
//!
//! Direct I/O only writes whole aligned blocks, so the appender keeps the partial last block
//! (`tail`) in memory and rewrites it, extended, on the next write. The file therefore ends
//! with zero padding up to the block boundary; recovery treats trailing zeros after the last
//! batch as normal. Invariant: `tail` equals the file bytes from `align_down(size)` to `size`.

use std::io;

use bytes::Bytes;

use crate::limits::{DIO_ALIGNMENT_BYTES, STORAGE_WRITE_BYTES_MAX};
use crate::storage::file::SegmentFile;

const ALIGNMENT: u64 = DIO_ALIGNMENT_BYTES as u64;

/// Writes batches at the end of one segment file. Per-shard: lives on the shard's core.
pub struct Appender {
    file: SegmentFile,
    base_offset: i64,
    size: u64,
    tail: Vec<u8>,
}

impl Appender {
    /// An appender for `file` whose valid content is its first `size` bytes.
    pub async fn open(file: SegmentFile, base_offset: i64, size: u64) -> io::Result<Appender> {
        let tail_start = size - size % ALIGNMENT;
        let tail_length = (size - tail_start) as usize;
        let tail = if tail_length == 0 {
            Vec::new()
        } else {
            file.read(tail_start, tail_length).await?
        };
        if tail.len() != tail_length {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "segment tail block short",
            ));
        }
        Ok(Appender {
            file,
            base_offset,
            size,
            tail,
        })
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Bytes of valid log in the file (written, not necessarily synced).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes `batches` after the current end, in aligned chunks of at most
    /// `STORAGE_WRITE_BYTES_MAX`. On error the appender state is unchanged.
    pub async fn write(&mut self, batches: &[Bytes]) -> io::Result<()> {
        let added: usize = batches.iter().map(Bytes::len).sum();
        if added == 0 {
            return Ok(());
        }
        let mut pending: Vec<u8> = Vec::with_capacity(self.tail.len() + added);
        pending.extend_from_slice(&self.tail);
        for batch in batches {
            pending.extend_from_slice(batch);
        }
        let start = self.size - self.size % ALIGNMENT;
        let logical = pending.len();
        pending.resize(logical.next_multiple_of(DIO_ALIGNMENT_BYTES), 0);
        for (index, chunk) in pending.chunks(STORAGE_WRITE_BYTES_MAX).enumerate() {
            let position = start + (index * STORAGE_WRITE_BYTES_MAX) as u64;
            self.file.write_aligned(position, chunk).await?;
        }
        let tail_start = logical - logical % DIO_ALIGNMENT_BYTES;
        self.tail = pending[tail_start..logical].to_vec();
        self.size += added as u64;
        Ok(())
    }

    pub async fn sync(&self) -> io::Result<()> {
        self.file.fdatasync().await
    }

    /// Cuts the zero padding so a closed segment's file size equals its log size.
    pub async fn trim_and_sync(&self) -> io::Result<()> {
        self.file.truncate(self.size).await?;
        self.file.fdatasync().await
    }
}
