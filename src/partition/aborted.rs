//! The aborted-transaction index of one partition: for every transaction aborted in it, the
//! producer, the first offset and the marker's offset (Kafka's `.txnindex` entries). A
//! read_committed Fetch hands the consumer the aborted transactions that overlap the batches
//! it returns, and the consumer drops their records.
//!
//! Entries come in marker order. On disk they are side files beside the segments,
//! `<end>.txnindex`, each holding the entries whose markers lie in `[from, end)`: the
//! partition writes the file for the range since the last one right before each producer
//! snapshot (at a segment roll, or at a clean close), so that the files of the ranges below a
//! snapshot exist whenever the snapshot does, and none is written for a range without
//! aborts. Opening loads the files up to the snapshot it rebuilds from and finds the rest
//! again in the log after it; retention deletes the files of ranges wholly below the log
//! start, and compaction removes the entries of transactions none of whose batches are left
//! (`forget_markers`). The entries are held in memory (24 bytes each plus the bound below).

use std::collections::VecDeque;

use crate::ids::Offset;
use crate::partition::producer_state::{CompletedTxn, Reader};

/// One aborted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: Offset,
    /// The abort marker's offset.
    pub last_offset: Offset,
    /// The last stable offset right after the marker (see `CompletedTxn`).
    pub last_stable_offset: Offset,
}

impl AbortedTxn {
    pub fn of(completed: &CompletedTxn) -> Option<AbortedTxn> {
        completed.aborted.then_some(AbortedTxn {
            producer_id: completed.producer_id,
            first_offset: completed.first_offset,
            last_offset: completed.last_offset,
            last_stable_offset: completed.last_stable_offset,
        })
    }
}

/// The aborted transactions of a partition, in marker order. Per-shard: owned by its
/// partition's producer state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AbortedTxns {
    entries: VecDeque<AbortedTxn>,
}

impl AbortedTxns {
    pub fn from_entries(mut entries: Vec<AbortedTxn>) -> AbortedTxns {
        entries.sort_by_key(|entry| entry.last_offset);
        entries.dedup_by_key(|entry| entry.last_offset);
        AbortedTxns {
            entries: entries.into(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the transaction of a marker past every marker held.
    pub fn push(&mut self, entry: AbortedTxn) {
        if let Some(last) = self.entries.back() {
            assert!(
                last.last_offset < entry.last_offset,
                "markers come in order"
            );
        }
        self.entries.push_back(entry);
    }

    /// The aborted transactions a consumer reading from `from` up to (not including) `upper`
    /// must know: those whose marker is at or past `from` and that began below `upper`, as
    /// (producer id, first offset). The search ends at the first marker after which the
    /// last stable offset reached `upper`: every transaction aborted later began at or past it.
    pub fn overlapping(&self, from: Offset, upper: Offset) -> Vec<(i64, Offset)> {
        let start = self
            .entries
            .partition_point(|entry| entry.last_offset < from);
        let mut found = Vec::new();
        for entry in self.entries.range(start..) {
            if entry.first_offset < upper {
                found.push((entry.producer_id, entry.first_offset));
            }
            if entry.last_stable_offset >= upper {
                break;
            }
        }
        found
    }

    /// The entries whose markers lie in `[from, end)`.
    pub fn between(&self, from: Offset, end: Offset) -> Vec<AbortedTxn> {
        let start = self
            .entries
            .partition_point(|entry| entry.last_offset < from);
        let stop = self
            .entries
            .partition_point(|entry| entry.last_offset < end);
        self.entries
            .range(start..stop.max(start))
            .copied()
            .collect()
    }

    /// Whether the transaction whose abort marker is at `marker` is held.
    pub fn holds_marker(&self, marker: Offset) -> bool {
        let at = self
            .entries
            .partition_point(|entry| entry.last_offset < marker);
        self.entries
            .get(at)
            .is_some_and(|entry| entry.last_offset == marker)
    }

    /// Forgets the transactions whose abort markers are at `markers`: compaction removed
    /// every batch of theirs (see `partition::cleaner`).
    pub fn forget_markers(&mut self, markers: &[Offset]) {
        self.entries
            .retain(|entry| !markers.contains(&entry.last_offset));
    }

    /// Forgets the transactions whose markers lie below `log_start`: no fetch reaches them.
    pub fn remove_below(&mut self, log_start: Offset) {
        let below = self
            .entries
            .partition_point(|entry| entry.last_offset < log_start);
        self.entries.drain(..below);
    }
}

/// File layout, all big-endian: version u16, CRC-32C u32 of everything after it, from i64,
/// end i64, entry count u32, then per entry: producer id i64, first offset i64, marker offset
/// i64, last stable offset i64.
const FILE_VERSION: u16 = 1;
const FILE_HEADER_BYTES: usize = 2 + 4 + 8 + 8 + 4;
const FILE_ENTRY_BYTES: usize = 8 * 4;

/// The file content for `entries`, the aborted transactions with markers in `[from, end)`.
pub fn encode_file(from: Offset, end: Offset, entries: &[AbortedTxn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_HEADER_BYTES + entries.len() * FILE_ENTRY_BYTES);
    out.extend_from_slice(&FILE_VERSION.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&from.get().to_be_bytes());
    out.extend_from_slice(&end.get().to_be_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for entry in entries {
        out.extend_from_slice(&entry.producer_id.to_be_bytes());
        out.extend_from_slice(&entry.first_offset.get().to_be_bytes());
        out.extend_from_slice(&entry.last_offset.get().to_be_bytes());
        out.extend_from_slice(&entry.last_stable_offset.get().to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[6..]);
    out[2..6].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes a file: its range and entries, or why it cannot be trusted.
pub fn decode_file(bytes: &[u8]) -> Result<(Offset, Offset, Vec<AbortedTxn>), String> {
    let mut reader = Reader::new(bytes);
    let version = reader.u16()?;
    if version != FILE_VERSION {
        return Err(format!(
            "unknown aborted-transaction file version {version}"
        ));
    }
    let crc = reader.u32()?;
    let computed = crc32c::crc32c(&bytes[6..]);
    if crc != computed {
        return Err(format!("crc mismatch: {crc:#010x} != {computed:#010x}"));
    }
    let from = Offset(reader.i64()?);
    let end = Offset(reader.i64()?);
    let count = reader.u32()? as usize;
    if bytes.len() != FILE_HEADER_BYTES + count.saturating_mul(FILE_ENTRY_BYTES) {
        return Err(format!("{count} entries do not fill {} bytes", bytes.len()));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let entry = AbortedTxn {
            producer_id: reader.i64()?,
            first_offset: Offset(reader.i64()?),
            last_offset: Offset(reader.i64()?),
            last_stable_offset: Offset(reader.i64()?),
        };
        if !(from..end).contains(&entry.last_offset) || entry.first_offset > entry.last_offset {
            return Err(format!("entry {entry:?} outside [{from}, {end})"));
        }
        entries.push(entry);
    }
    Ok((from, end, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aborted(producer_id: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset: Offset(first),
            last_offset: Offset(last),
            last_stable_offset: Offset(lso),
        }
    }

    /// A fetch is told the transactions that overlap what it reads, and the search stops
    /// once the last stable offset passed the fetch's end.
    #[test]
    fn overlapping_transactions() {
        let mut index = AbortedTxns::default();
        // Producer 1 aborts [0, 10] while producer 2's transaction from 5 stays open.
        index.push(aborted(1, 0, 10, 5));
        // Producer 2 aborts [5, 20]; nothing is open after it.
        index.push(aborted(2, 5, 20, 21));
        index.push(aborted(3, 30, 40, 41));
        assert_eq!(
            index.overlapping(Offset(0), Offset(25)),
            vec![(1, Offset(0)), (2, Offset(5))]
        );
        assert_eq!(
            index.overlapping(Offset(11), Offset(25)),
            vec![(2, Offset(5))]
        );
        assert_eq!(index.overlapping(Offset(21), Offset(30)), vec![]);
        assert_eq!(
            index.overlapping(Offset(21), Offset(31)),
            vec![(3, Offset(30))]
        );
        assert_eq!(index.overlapping(Offset(41), Offset(100)), vec![]);
        assert_eq!(index.between(Offset(10), Offset(40)).len(), 2);
        assert!(index.holds_marker(Offset(20)) && !index.holds_marker(Offset(21)));
        index.remove_below(Offset(11));
        assert_eq!(index.len(), 2);
        index.forget_markers(&[Offset(20), Offset(99)]);
        assert!(!index.holds_marker(Offset(20)) && index.holds_marker(Offset(40)));
        assert_eq!(
            index.overlapping(Offset(0), Offset(100)),
            vec![(3, Offset(30))]
        );
    }

    /// A file decodes to what was written; any flipped byte or truncation is detected.
    #[test]
    fn files_round_trip_and_detect_damage() {
        let entries = vec![aborted(1, 0, 10, 11), aborted(2, 12, 14, 15)];
        let bytes = encode_file(Offset(0), Offset(20), &entries);
        assert_eq!(
            decode_file(&bytes),
            Ok((Offset(0), Offset(20), entries.clone()))
        );
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x10;
            assert!(decode_file(&damaged).is_err(), "byte {position}");
        }
        for length in 0..bytes.len() {
            assert!(decode_file(&bytes[..length]).is_err());
        }
        let outside = encode_file(Offset(0), Offset(10), &entries);
        assert!(decode_file(&outside).is_err());
    }
}
