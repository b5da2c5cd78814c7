//! Our own O_DIRECT appender over one segment file.
//!
//! Direct I/O only writes whole aligned blocks, so the appender keeps the partial last block
//! (`tail`) in memory and rewrites it, extended, on the next write. The file therefore ends
//! with zero padding up to the block boundary; recovery treats trailing zeros after the last
//! batch as normal. Invariant: `tail` equals the file bytes from `align_down(size)` to `size`.
//!
//! Pre-writing: `fdatasync` after writing into blocks the file never had (or only had
//! fallocated) must also commit the file's new size and extents through the ext4 journal,
//! which costs several times a plain data sync. So after a flush the appender keeps a region
//! ahead of the log end already written with zeros and synced (`prepared`); appends then only
//! overwrite blocks that exist. Recovery and `trim_and_sync` cut the zeros off.

use std::io;

use bytes::Bytes;

use crate::limits::{DIO_ALIGNMENT_BYTES, STORAGE_WRITE_BYTES_MAX};
use crate::storage::file::SegmentFile;

const ALIGNMENT: u64 = DIO_ALIGNMENT_BYTES as u64;

/// Pre-written space kept ahead of the log end (see the module documentation).
const PREPARE_AHEAD_BYTES: u64 = 8 * 1024 * 1024;

/// Pre-writing starts again when less than this is left.
const PREPARE_LOW_BYTES: u64 = 2 * 1024 * 1024;

const _: () = assert!(PREPARE_LOW_BYTES < PREPARE_AHEAD_BYTES);
const _: () = assert!(PREPARE_AHEAD_BYTES % ALIGNMENT == 0);

/// Writes batches at the end of one segment file. Per-shard: lives on the shard's core.
pub struct Appender {
    file: SegmentFile,
    base_offset: i64,
    size: u64,
    tail: Vec<u8>,
    /// The file's first `prepared` bytes exist on disk (data or zeros) with their metadata
    /// synced, so overwriting them needs no journal commit.
    prepared: u64,
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
        let file_bytes = file.size().await?;
        let prepared = file_bytes - file_bytes % ALIGNMENT;
        Ok(Appender {
            file,
            base_offset,
            size,
            tail,
            prepared,
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

    pub async fn sync(&mut self) -> io::Result<()> {
        self.file.fdatasync().await?;
        self.prepared = self.prepared.max(self.size.next_multiple_of(ALIGNMENT));
        Ok(())
    }

    /// If fewer than `PREPARE_LOW_BYTES` of pre-written space are left after the log end,
    /// writes zeros up to `PREPARE_AHEAD_BYTES` past it (never past `limit`, the size at which
    /// the segment rolls) and syncs them.
    pub async fn prepare_ahead(&mut self, limit: u64) -> io::Result<()> {
        let end = self.size.next_multiple_of(ALIGNMENT);
        let limit = limit.next_multiple_of(ALIGNMENT);
        let start = self.prepared.max(end);
        if start >= end + PREPARE_LOW_BYTES || start >= limit {
            return Ok(());
        }
        let target = (end + PREPARE_AHEAD_BYTES).min(limit);
        let zeros = vec![0u8; STORAGE_WRITE_BYTES_MAX];
        let mut position = start;
        while position < target {
            let length = ((target - position) as usize).min(STORAGE_WRITE_BYTES_MAX);
            self.file.write_aligned(position, &zeros[..length]).await?;
            position += length as u64;
        }
        self.file.fdatasync().await?;
        self.prepared = target;
        Ok(())
    }

    /// Cuts the zero padding so a closed segment's file size equals its log size.
    pub async fn trim_and_sync(&self) -> io::Result<()> {
        self.file.truncate(self.size).await?;
        self.file.fdatasync().await
    }
}
