//! One segment: a log file of verbatim batches plus its sparse offset and time indexes.
//!
//! The indexes live in memory (they are sparse: one entry per `index_interval_bytes`) and are
//! written to `.index` / `.timeindex` when the segment closes. Invariants: `next_offset` is one
//! past the last batch written, or, in a compacted segment, the base offset of the next
//! segment (offsets never change, so a compacted segment still spans its whole range);
//! every index entry points at a batch start below `size`.

use crate::ids::Offset;
use std::io;
use std::path::{Path, PathBuf};

use crate::limits::DIO_ALIGNMENT_BYTES;
use crate::storage::file::{self, SegmentFile};
use crate::storage::index::{self, OffsetEntry, TimeEntry};

/// The facts about one batch that the segment indexes.
#[derive(Debug, Clone, Copy)]
pub struct BatchMeta {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub max_timestamp: i64,
    pub bytes: u64,
}

/// Per-shard: lives on the core that owns the partition.
#[derive(Clone)]
pub struct Segment {
    pub base_offset: Offset,
    pub next_offset: Offset,
    pub size: u64,
    pub file: SegmentFile,
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    /// Largest max timestamp in the segment and the last offset of the first batch holding it.
    pub max_timestamp: Option<(i64, Offset)>,
    /// Max timestamp of the first batch: the segment's age for `segment_ms` rolls.
    pub first_timestamp: Option<i64>,
    last_indexed_position: Option<u64>,
}

pub fn file_name(base_offset: Offset, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

pub fn segment_path(dir: &Path, base_offset: Offset, extension: &str) -> PathBuf {
    dir.join(file_name(base_offset, extension))
}

impl Segment {
    pub fn new(base_offset: Offset, file: SegmentFile) -> Segment {
        Segment {
            base_offset,
            next_offset: base_offset,
            size: 0,
            file,
            offsets: Vec::new(),
            times: Vec::new(),
            max_timestamp: None,
            first_timestamp: None,
            last_indexed_position: None,
        }
    }

    /// Whether `meta` can go in this segment after `pending_bytes` not yet observed: always
    /// into an empty segment, else only within `segment_bytes` and the relative fields.
    pub fn fits(&self, pending_bytes: u64, meta: &BatchMeta, segment_bytes: u64) -> bool {
        let size = self.size + pending_bytes;
        let bytes_after = size + meta.bytes;
        let relative_ok = meta.last_offset - self.base_offset <= i64::from(u32::MAX);
        size == 0 || (bytes_after <= segment_bytes.min(u64::from(u32::MAX)) && relative_ok)
    }

    /// Accounts for a batch written at `position` (the current end), indexing it if due.
    pub fn observe(&mut self, position: u64, meta: &BatchMeta, index_interval_bytes: u64) {
        assert_eq!(position, self.size, "batches are observed in file order");
        // Equal in a log never compacted; past it where a compaction removed batches.
        assert!(meta.base_offset >= self.next_offset, "offsets ascend");
        // A batch without a timestamp (-1: a replication control batch) counts for neither
        // the time index nor the segment's age, as in Kafka.
        let timed = meta.max_timestamp >= 0;
        if timed
            && self
                .max_timestamp
                .is_none_or(|(max, _)| meta.max_timestamp > max)
        {
            self.max_timestamp = Some((meta.max_timestamp, meta.last_offset));
        }
        if timed {
            self.first_timestamp.get_or_insert(meta.max_timestamp);
        }
        let due = self
            .last_indexed_position
            .is_none_or(|last| position - last >= index_interval_bytes);
        if due {
            let relative_offset = (meta.base_offset - self.base_offset) as u32;
            self.offsets.push(OffsetEntry {
                relative_offset,
                position: position as u32,
            });
            self.last_indexed_position = Some(position);
            self.push_time_entry();
        }
        self.size += meta.bytes;
        self.next_offset = meta.last_offset + 1;
    }

    fn push_time_entry(&mut self) {
        if let Some((timestamp, offset)) = self.max_timestamp {
            if self
                .times
                .last()
                .is_none_or(|last| timestamp > last.timestamp)
            {
                let relative_offset = (offset - self.base_offset) as u32;
                self.times.push(TimeEntry {
                    timestamp,
                    relative_offset,
                });
            }
        }
    }

    /// Restores index state from entries loaded from disk, before a scan re-observes the
    /// batches from the last offset entry on. Returns where that scan starts.
    pub fn resume_from(
        &mut self,
        offsets: Vec<OffsetEntry>,
        times: Vec<TimeEntry>,
    ) -> (u64, Offset) {
        let mut offsets = offsets;
        let Some(last) = offsets.pop() else {
            return (0, self.base_offset);
        };
        let mut times = times;
        times.retain(|entry| entry.relative_offset < last.relative_offset);
        self.max_timestamp = times.last().map(|entry| {
            (
                entry.timestamp,
                self.base_offset + i64::from(entry.relative_offset),
            )
        });
        self.first_timestamp = times.first().map(|entry| entry.timestamp);
        self.last_indexed_position = offsets.last().map(|entry| u64::from(entry.position));
        self.offsets = offsets;
        self.times = times;
        self.size = u64::from(last.position);
        self.next_offset = self.base_offset + i64::from(last.relative_offset);
        (self.size, self.next_offset)
    }

    /// File position and base offset of the batch holding `offset` or an earlier one (never
    /// past it): where a scan starts, and the offset its first batch must have.
    pub fn start_for_offset(&self, offset: Offset) -> (u64, Offset) {
        let relative = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        match index::lookup_offset(&self.offsets, relative) {
            Some(entry) => (
                u64::from(entry.position),
                self.base_offset + i64::from(entry.relative_offset),
            ),
            None => (0, self.base_offset),
        }
    }

    /// Like `start_for_offset`, for a scan for the first batch with max timestamp >=
    /// `timestamp`: every batch before the start is older.
    pub fn start_for_timestamp(&self, timestamp: i64) -> (u64, Offset) {
        match index::lookup_time_below(&self.times, timestamp) {
            Some(entry) => {
                self.start_for_offset(self.base_offset + i64::from(entry.relative_offset))
            }
            None => (0, self.base_offset),
        }
    }

    /// Writes both index files (exact length, synced). Called when the segment closes.
    pub async fn persist_indexes(&mut self, dir: &Path) -> io::Result<()> {
        let encoded = self.encode_indexes();
        encoded.write(dir).await
    }

    /// The index files' content, the time index completed with the segment's last batch:
    /// taken synchronously, so that the segment can stay where readers find it while the
    /// files are written.
    pub fn encode_indexes(&mut self) -> EncodedIndexes {
        self.push_time_entry();
        EncodedIndexes {
            base_offset: self.base_offset,
            offsets: index::encode_offsets(&self.offsets),
            times: index::encode_times(&self.times),
        }
    }
}

/// A segment's index files, encoded (see `Segment::encode_indexes`).
pub struct EncodedIndexes {
    base_offset: Offset,
    offsets: Vec<u8>,
    times: Vec<u8>,
}

impl EncodedIndexes {
    pub async fn write(&self, dir: &Path) -> io::Result<()> {
        let base = self.base_offset;
        write_small_file(&segment_path(dir, base, "index"), &self.offsets).await?;
        write_small_file(&segment_path(dir, base, "timeindex"), &self.times).await
    }
}

/// Replaces the content of a small file with `data` through direct I/O: aligned padded write,
/// then truncate to the exact length and sync.
pub async fn write_small_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let file = SegmentFile::open_or_create(path).await?;
    let mut padded = data.to_vec();
    padded.resize(data.len().next_multiple_of(DIO_ALIGNMENT_BYTES), 0);
    if !padded.is_empty() {
        file.write_aligned(0, &padded).await?;
    }
    file.truncate(data.len() as u64).await?;
    file.fdatasync().await?;
    file.close().await
}

/// The whole content of a small file, or None if it does not exist or is implausibly large.
pub async fn read_small_file(path: &Path, bytes_max: u64) -> io::Result<Option<Vec<u8>>> {
    let Some(length) = file::file_len(path)? else {
        return Ok(None);
    };
    if length == 0 {
        return Ok(Some(Vec::new()));
    }
    if length > bytes_max {
        return Ok(None);
    }
    let file = SegmentFile::open_read_only(path).await?;
    let data = file.read(0, length as usize).await;
    file.close().await?;
    data.map(Some)
}
