//! Our own O_DIRECT appender over one segment file.
//!
//! Direct I/O only writes whole aligned blocks, so the appender keeps the partial last block
//! (`tail`) in memory and rewrites it, extended, on the next write. The file therefore ends
//! with zero padding up to the block boundary; recovery treats trailing zeros after the last
//! batch as normal. Invariant: `tail` equals the file bytes from `align_down(size)` to `size`.
//!
//! Each write copies the tail and the batches once, straight into DMA buffers from the
//! executor's registered-buffer pool: no intermediate staging buffer.
//!
//! Pre-writing: `fdatasync` after writing into blocks the file never had (or only had
//! fallocated) must also commit the file's new size and extents through the ext4 journal,
//! which costs more than a plain data sync. So the appender keeps a region ahead of the log
//! end already written with zeros and synced (`prepared`); appends then only overwrite blocks
//! that exist. The zeros go out in small steps (`prepare_step`) that the log interleaves with
//! flushes, so that a flush never waits for more than one step. Recovery and `trim_and_sync`
//! cut the zeros off, and so does `release_prepared` for a log gone cold. How many zeros
//! there may be, and for which logs, is `prewrite`'s decision: a step writes no more than
//! the allowance it is given.
//!
//! A full device: a failed write leaves the appender as it was; after a failed sync,
//! `rewind_unsynced` takes it back to the last synced end, so that the next write rewrites
//! the same bytes in place (direct I/O: no page of ours waits in the page cache, so a failed
//! sync leaves nothing behind to distrust). `trim_and_sync` seals the segment: once a roll
//! has begun, nothing more is written to it, even if the roll fails and is begun again.

use crate::ids::Offset;
use std::io;

use bytes::Bytes;

use crate::limits::{DIO_ALIGNMENT_BYTES, STORAGE_WRITE_BYTES_MAX};
use crate::limits::{PREWRITE_AHEAD_BYTES, PREWRITE_LOW_BYTES, PREWRITE_STEP_BYTES};
use crate::storage::file::{SegmentFile, ZEROS_BYTES};

const ALIGNMENT: u64 = DIO_ALIGNMENT_BYTES as u64;

// A step writes from the shared block of zeros.
const _: () = assert!(PREWRITE_STEP_BYTES as usize <= ZEROS_BYTES);

/// Writes batches at the end of one segment file. Per-shard: lives on the shard's core.
pub struct Appender {
    file: SegmentFile,
    base_offset: Offset,
    size: u64,
    tail: Vec<u8>,
    /// The file's first `prepared` bytes exist on disk (data or zeros) with their metadata
    /// synced, so overwriting them needs no journal commit.
    prepared: u64,
    /// The file's first `zeroed` bytes exist (data or zeros), synced or not; pre-writing
    /// continues from here.
    zeroed: u64,
    /// Where the pre-writing run under way stops, if one is.
    prepare_target: Option<u64>,
    /// After a failed run, no new run starts until the log end passes this (a full disk
    /// would otherwise fail a step after every flush).
    prepare_paused_until: u64,
    /// The size and tail at the last sync (or open), while writes since have not been
    /// synced: what `rewind_unsynced` goes back to.
    unsynced: Option<(u64, Vec<u8>)>,
    /// Set by `trim_and_sync`: the segment is being closed and takes no more writes.
    sealed: bool,
}

impl Appender {
    /// An appender for `file` whose valid content is its first `size` bytes.
    pub async fn open(file: SegmentFile, base_offset: Offset, size: u64) -> io::Result<Appender> {
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
            zeroed: prepared,
            prepare_target: None,
            prepare_paused_until: 0,
            unsynced: None,
            sealed: false,
        })
    }

    pub fn base_offset(&self) -> Offset {
        self.base_offset
    }

    /// Bytes of valid log in the file (written, not necessarily synced).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether a roll has begun on this segment (see `trim_and_sync`).
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Writes `batches` after the current end, in aligned chunks of at most
    /// `STORAGE_WRITE_BYTES_MAX`. On error the appender state is unchanged.
    pub async fn write(&mut self, batches: &[Bytes]) -> io::Result<()> {
        assert!(!self.sealed, "a sealed segment takes no writes");
        let added: usize = batches.iter().map(Bytes::len).sum();
        if added == 0 {
            return Ok(());
        }
        let start = self.size - self.size % ALIGNMENT;
        let logical = self.tail.len() + added;
        let mut source = Gather::new(&self.tail, batches);
        let mut new_tail = Vec::new();
        let mut written = 0;
        while written < logical {
            let data = (logical - written).min(STORAGE_WRITE_BYTES_MAX);
            let mut buffer = self
                .file
                .alloc_buffer(data.next_multiple_of(DIO_ALIGNMENT_BYTES));
            let bytes = buffer.as_bytes_mut();
            source.copy_into(&mut bytes[..data]);
            bytes[data..].fill(0);
            if written + data == logical {
                let tail_length = logical % DIO_ALIGNMENT_BYTES;
                new_tail.extend_from_slice(&bytes[data - tail_length..data]);
            }
            self.file
                .write_buffer(start + written as u64, buffer)
                .await?;
            written += data;
        }
        let old_tail = std::mem::replace(&mut self.tail, new_tail);
        self.unsynced.get_or_insert((self.size, old_tail));
        self.size += added as u64;
        self.zeroed = self.zeroed.max(self.size.next_multiple_of(ALIGNMENT));
        Ok(())
    }

    /// fdatasync; also commits every block written before it, zeros included.
    pub async fn sync(&mut self) -> io::Result<()> {
        let written = self.zeroed.max(self.size.next_multiple_of(ALIGNMENT));
        self.file.fdatasync().await?;
        self.prepared = self.prepared.max(written);
        self.unsynced = None;
        Ok(())
    }

    /// After a failed sync: forgets the writes since the last good one, so that the log end
    /// is the synced end again and the next write starts over from there. The blocks written
    /// stay allocated (`zeroed`), which only spares the retry an extension; until the retry
    /// overwrites them they count as space ahead of the log end (`zeros_ahead`), so the log
    /// holds them in the shard's pre-writing budget like zeros.
    pub fn rewind_unsynced(&mut self) {
        if let Some((size, tail)) = self.unsynced.take() {
            self.size = size;
            self.tail = tail;
        }
    }

    /// Whether a pre-writing run should start or is under way: fewer than
    /// `PREWRITE_LOW_BYTES` of prepared space are left after the log end and the segment
    /// (which rolls at `limit` bytes) has room for more.
    pub fn needs_preparing(&self, limit: u64) -> bool {
        if self.sealed {
            return false;
        }
        if self.prepare_target.is_some() {
            return true;
        }
        let end = self.size.next_multiple_of(ALIGNMENT);
        let prepared = self.prepared.max(end);
        end >= self.prepare_paused_until
            && prepared < end + PREWRITE_LOW_BYTES
            && prepared < limit.next_multiple_of(ALIGNMENT)
    }

    /// Zeros on disk ahead of the log end (past its last block): the pre-written bytes this
    /// segment holds.
    pub fn zeros_ahead(&self) -> u64 {
        self.zeroed
            .saturating_sub(self.size.next_multiple_of(ALIGNMENT))
    }

    /// One step of pre-writing: writes up to `PREWRITE_STEP_BYTES` of zeros past everything
    /// written, at most `allowance` bytes (whole blocks), or, once the run's target
    /// (`PREWRITE_AHEAD_BYTES` past the end where the run started, never past `limit`) is
    /// written or the allowance is spent, syncs them. Returns whether more steps remain.
    pub async fn prepare_step(&mut self, limit: u64, allowance: u64) -> io::Result<bool> {
        if !self.needs_preparing(limit) {
            return Ok(false);
        }
        let result = self.prepare_step_unchecked(limit, allowance).await;
        if result.is_err() {
            self.prepare_target = None;
            self.prepare_paused_until =
                self.size.next_multiple_of(ALIGNMENT) + PREWRITE_AHEAD_BYTES;
        }
        result
    }

    async fn prepare_step_unchecked(&mut self, limit: u64, allowance: u64) -> io::Result<bool> {
        let end = self.size.next_multiple_of(ALIGNMENT);
        let limit = limit.next_multiple_of(ALIGNMENT);
        let target = *self
            .prepare_target
            .get_or_insert((end + PREWRITE_AHEAD_BYTES).min(limit));
        let from = self.zeroed.max(end);
        let length = target
            .saturating_sub(from)
            .min(PREWRITE_STEP_BYTES)
            .min(allowance - allowance % ALIGNMENT);
        if length > 0 {
            self.file.write_zeros(from, length as usize).await?;
            self.zeroed = from + length;
            return Ok(true);
        }
        // The target is reached, or the shard's budget is spent: the run ends with what it
        // wrote made durable.
        self.prepare_target = None;
        if self.prepared < self.zeroed {
            self.sync().await?;
        }
        Ok(false)
    }

    /// Gives the pre-written zeros back: cuts the file after the block holding the log end
    /// and syncs that. Appends then extend the file again, as before any pre-writing.
    pub async fn release_prepared(&mut self) -> io::Result<()> {
        let end = self.size.next_multiple_of(ALIGNMENT);
        if self.zeroed <= end {
            return Ok(());
        }
        self.prepare_target = None;
        self.file.truncate(end).await?;
        self.zeroed = end;
        self.prepared = self.prepared.min(end);
        self.file.fdatasync().await?;
        self.prepared = end;
        Ok(())
    }

    /// Cuts the zero padding so a closed segment's file size equals its log size, and seals
    /// the segment first: the blocks past the end are gone (or may be), so a write there
    /// would find none, and a roll that fails midway is retried, never written past.
    /// Safe to repeat.
    pub async fn trim_and_sync(&mut self) -> io::Result<()> {
        debug_assert!(self.unsynced.is_none(), "only synced segments are closed");
        self.sealed = true;
        self.prepare_target = None;
        self.file.truncate(self.size).await?;
        let end = self.size.next_multiple_of(ALIGNMENT);
        self.zeroed = self.zeroed.min(end);
        self.prepared = self.prepared.min(end);
        self.file.fdatasync().await
    }
}

/// Reads the concatenation of a tail block and batches front to back, without joining them.
struct Gather<'a> {
    parts: Vec<&'a [u8]>,
    part: usize,
    within: usize,
}

impl<'a> Gather<'a> {
    fn new(tail: &'a [u8], batches: &'a [Bytes]) -> Gather<'a> {
        let mut parts = Vec::with_capacity(batches.len() + 1);
        parts.push(tail);
        parts.extend(batches.iter().map(|batch| &batch[..]));
        Gather {
            parts,
            part: 0,
            within: 0,
        }
    }

    /// Fills `out` with the next `out.len()` bytes. The caller never asks past the end.
    fn copy_into(&mut self, mut out: &mut [u8]) {
        while !out.is_empty() {
            let part = self.parts[self.part];
            let take = (part.len() - self.within).min(out.len());
            out[..take].copy_from_slice(&part[self.within..self.within + take]);
            out = &mut out[take..];
            self.within += take;
            if self.within == part.len() {
                self.part += 1;
                self.within = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gather cursor yields the tail and the batches in order across any chunking.
    #[test]
    fn gather_concatenates_across_chunks() {
        let tail = b"ab".to_vec();
        let batches = [
            Bytes::from_static(b"cde"),
            Bytes::new(),
            Bytes::from_static(b"fg"),
        ];
        for chunk in 1..=7 {
            let mut gather = Gather::new(&tail, &batches);
            let mut out = Vec::new();
            let mut left = 7;
            while left > 0 {
                let mut piece = vec![0u8; chunk.min(left)];
                gather.copy_into(&mut piece);
                out.extend_from_slice(&piece);
                left -= piece.len();
            }
            assert_eq!(out, b"abcdefg");
        }
    }
}
