//! Sparse in-memory indexes of one segment and their on-disk encodings.
//!
//! Offset index (`.index`): entries of (u32 offset relative to the segment base, u32 file
//! position), big-endian, strictly increasing in both. The first batch of a segment is always
//! indexed, then one batch every `index_interval_bytes` of log.
//!
//! Time index (`.timeindex`): entries of (i64 largest max timestamp so far in the segment, u32
//! relative last offset of the batch that holds it), written at the same points when the
//! largest timestamp grew, plus once when the segment is closed. Timestamps are non-decreasing.
//! Lookup by time relies on: every batch up to and including the one holding entry.offset has
//! a max timestamp <= entry.timestamp.
//!
//! Both files end in a trailer the size of one entry: a magic number and the CRC-32C of the
//! entries before it. A file whose trailer does not match (a flipped bit, garbage, a cut, or a
//! file from before trailers existed) is rejected as a whole and recovery rebuilds it by
//! scanning, so a lookup never trusts an entry that was not written as it reads.
//!
//! Hot lookups are free functions over slices so they can be benchmarked alone.

/// One offset index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// One time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

/// First half of the offset index trailer ("CLX1"); the second half is the CRC.
const OFFSET_TRAILER_MAGIC: u32 = u32::from_be_bytes(*b"CLX1");
/// First two thirds of the time index trailer; the last third is the CRC.
const TIME_TRAILER_MAGIC: u64 = u64::from_be_bytes(*b"CLTIMEX1");

/// The entry with the largest relative offset <= `relative_offset`, if any.
pub fn lookup_offset(entries: &[OffsetEntry], relative_offset: u32) -> Option<OffsetEntry> {
    let after = entries.partition_point(|entry| entry.relative_offset <= relative_offset);
    after.checked_sub(1).map(|index| entries[index])
}

/// The last entry whose timestamp is strictly below `timestamp`: every batch up to the one
/// holding its offset is too old, so a scan for `timestamp` may start from there.
pub fn lookup_time_below(entries: &[TimeEntry], timestamp: i64) -> Option<TimeEntry> {
    let after = entries.partition_point(|entry| entry.timestamp < timestamp);
    after.checked_sub(1).map(|index| entries[index])
}

pub fn encode_offsets(entries: &[OffsetEntry]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * OFFSET_ENTRY_BYTES);
    for entry in entries {
        bytes.extend_from_slice(&entry.relative_offset.to_be_bytes());
        bytes.extend_from_slice(&entry.position.to_be_bytes());
    }
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&OFFSET_TRAILER_MAGIC.to_be_bytes());
    bytes.extend_from_slice(&crc.to_be_bytes());
    bytes
}

pub fn encode_times(entries: &[TimeEntry]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * TIME_ENTRY_BYTES);
    for entry in entries {
        bytes.extend_from_slice(&entry.timestamp.to_be_bytes());
        bytes.extend_from_slice(&entry.relative_offset.to_be_bytes());
    }
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&TIME_TRAILER_MAGIC.to_be_bytes());
    bytes.extend_from_slice(&crc.to_be_bytes());
    bytes
}

/// The entry bytes of an index file whose trailer (`magic`, then the CRC-32C of the entries)
/// matches, or None.
fn checked_entries<'a>(bytes: &'a [u8], entry_bytes: usize, magic: &[u8]) -> Option<&'a [u8]> {
    if bytes.len() % entry_bytes != 0 || bytes.len() < entry_bytes {
        return None;
    }
    let (entries, trailer) = bytes.split_at(bytes.len() - entry_bytes);
    let (stored_magic, stored_crc) = trailer.split_at(magic.len());
    let crc_ok = u32_at(stored_crc, 0) == crc32c::crc32c(entries);
    (stored_magic == magic && crc_ok).then_some(entries)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Decodes an offset index, or None if it is not a well-formed one for a log of `log_bytes`:
/// matching trailer, first entry (0, 0), strictly increasing, positions inside the log.
pub fn decode_offsets(bytes: &[u8], log_bytes: u64) -> Option<Vec<OffsetEntry>> {
    let bytes = checked_entries(
        bytes,
        OFFSET_ENTRY_BYTES,
        &OFFSET_TRAILER_MAGIC.to_be_bytes(),
    )?;
    let entries: Vec<OffsetEntry> = bytes
        .chunks_exact(OFFSET_ENTRY_BYTES)
        .map(|chunk| OffsetEntry {
            relative_offset: u32_at(chunk, 0),
            position: u32_at(chunk, 4),
        })
        .collect();
    if let Some(first) = entries.first() {
        if first.relative_offset != 0 || first.position != 0 {
            return None;
        }
    }
    let increasing = entries.windows(2).all(|pair| {
        pair[0].relative_offset < pair[1].relative_offset && pair[0].position < pair[1].position
    });
    let inside = entries
        .iter()
        .all(|entry| u64::from(entry.position) < log_bytes);
    (increasing && inside).then_some(entries)
}

/// Decodes a time index, or None if it is not well formed (matching trailer, both fields
/// non-decreasing).
pub fn decode_times(bytes: &[u8]) -> Option<Vec<TimeEntry>> {
    let bytes = checked_entries(bytes, TIME_ENTRY_BYTES, &TIME_TRAILER_MAGIC.to_be_bytes())?;
    let entries: Vec<TimeEntry> = bytes
        .chunks_exact(TIME_ENTRY_BYTES)
        .map(|chunk| TimeEntry {
            timestamp: i64::from_be_bytes(chunk[0..8].try_into().expect("8 bytes")),
            relative_offset: u32_at(chunk, 8),
        })
        .collect();
    let ordered = entries.windows(2).all(|pair| {
        pair[0].timestamp <= pair[1].timestamp && pair[0].relative_offset <= pair[1].relative_offset
    });
    ordered.then_some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offset lookup returns the floor entry and None below the first one.
    #[test]
    fn lookup_offset_finds_floor() {
        let entries: Vec<OffsetEntry> = (0..10)
            .map(|i| OffsetEntry {
                relative_offset: i * 10,
                position: i * 4096,
            })
            .collect();
        assert_eq!(lookup_offset(&entries, 0).unwrap().position, 0);
        assert_eq!(lookup_offset(&entries, 9).unwrap().position, 0);
        assert_eq!(lookup_offset(&entries, 10).unwrap().position, 4096);
        assert_eq!(lookup_offset(&entries, 1000).unwrap().position, 9 * 4096);
        assert_eq!(lookup_offset(&entries[1..], 5), None);
    }

    /// Time lookup returns the last entry strictly below the target.
    #[test]
    fn lookup_time_finds_last_below() {
        let entries = [
            TimeEntry {
                timestamp: 10,
                relative_offset: 0,
            },
            TimeEntry {
                timestamp: 20,
                relative_offset: 5,
            },
            TimeEntry {
                timestamp: 30,
                relative_offset: 9,
            },
        ];
        assert_eq!(lookup_time_below(&entries, 10), None);
        assert_eq!(lookup_time_below(&entries, 20).unwrap().relative_offset, 0);
        assert_eq!(lookup_time_below(&entries, 31).unwrap().relative_offset, 9);
    }

    /// Encoded indexes decode to the same entries; malformed bytes are rejected.
    #[test]
    fn encode_decode_round_trip_and_rejects_garbage() {
        let offsets = vec![
            OffsetEntry {
                relative_offset: 0,
                position: 0,
            },
            OffsetEntry {
                relative_offset: 7,
                position: 5000,
            },
        ];
        assert_eq!(
            decode_offsets(&encode_offsets(&offsets), 6000),
            Some(offsets.clone())
        );
        assert_eq!(decode_offsets(&encode_offsets(&offsets), 5000), None);
        assert_eq!(decode_offsets(&[1, 2, 3], 6000), None);
        let reversed: Vec<_> = offsets.iter().rev().copied().collect();
        assert_eq!(decode_offsets(&encode_offsets(&reversed), 6000), None);
        let times = vec![TimeEntry {
            timestamp: 5,
            relative_offset: 3,
        }];
        assert_eq!(decode_times(&encode_times(&times)), Some(times.clone()));
        assert_eq!(decode_times(&[0; 13]), None);
        assert_eq!(decode_times(&[0; 12]), None);
        assert_eq!(decode_offsets(&encode_offsets(&[]), 0), Some(Vec::new()));
        assert_eq!(decode_offsets(&[], 6000), None);
    }

    /// Every single flipped bit and every cut of an index file is rejected by its trailer.
    #[test]
    fn trailer_rejects_every_bit_flip_and_cut() {
        let offsets: Vec<OffsetEntry> = (0..4)
            .map(|i| OffsetEntry {
                relative_offset: i * 3,
                position: i * 100,
            })
            .collect();
        let times: Vec<TimeEntry> = (0..4)
            .map(|i| TimeEntry {
                timestamp: i64::from(i) * 10,
                relative_offset: i * 3,
            })
            .collect();
        let offset_bytes = encode_offsets(&offsets);
        let time_bytes = encode_times(&times);
        for bit in 0..offset_bytes.len() * 8 {
            let mut damaged = offset_bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                decode_offsets(&damaged, 1000),
                None,
                "offset index bit {bit}"
            );
        }
        for bit in 0..time_bytes.len() * 8 {
            let mut damaged = time_bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_times(&damaged), None, "time index bit {bit}");
        }
        for cut in 0..offset_bytes.len() {
            assert_eq!(
                decode_offsets(&offset_bytes[..cut], 1000),
                None,
                "cut {cut}"
            );
        }
        for cut in 0..time_bytes.len() {
            assert_eq!(decode_times(&time_bytes[..cut]), None, "cut {cut}");
        }
    }
}
