//! Idempotent-producer state of one partition: for each producer id, its epoch and the
//! sequence ranges and offsets of its last few batches (`PRODUCER_BATCHES_RETAINED_COUNT`).
//!
//! The rules follow Kafka 3.x/4.x (`ProducerAppendInfo`, `ProducerStateEntry`):
//! - a batch whose epoch and sequence range equal one of the retained batches is a duplicate
//!   and is answered with the original offsets, without a new append;
//! - an epoch below the producer's current one is INVALID_PRODUCER_EPOCH (since Kafka 2.7;
//!   before it was the fatal PRODUCER_FENCED);
//! - a newer epoch must start at sequence 0, the same epoch must continue the last sequence
//!   (wrapping from `i32::MAX` to 0), else OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - an unknown producer may start at any sequence: since KIP-360 (Kafka 2.5) the broker no
//!   longer answers UNKNOWN_PRODUCER_ID, because the state of a live producer can be gone
//!   through expiry or retention.
//!
//! The table is plain data with no I/O. It also encodes and decodes the snapshot files the
//! partition writes at segment rolls and at close (`<offset>.snapshot`), checked by a CRC-32C.

use crate::ids::Offset;
use std::collections::{HashMap, VecDeque};

use crate::limits::PRODUCER_BATCHES_RETAINED_COUNT;

/// One retained batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// The batch's max timestamp as stored (LogAppendTime already applied).
    pub timestamp: i64,
}

/// What the partition knows about one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first; never more than `PRODUCER_BATCHES_RETAINED_COUNT`.
    pub batches: VecDeque<ProducerBatch>,
    /// Timestamp of the producer's last batch: expiry counts idleness from it, as Kafka does.
    pub last_timestamp: i64,
}

/// The producer fields of one incoming or stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerAppend {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
}

impl ProducerAppend {
    /// The producer fields of a batch header, or None for a batch without a producer id.
    pub fn from_header(
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        last_offset_delta: i32,
    ) -> Option<ProducerAppend> {
        (producer_id >= 0).then(|| ProducerAppend {
            producer_id,
            epoch,
            first_seq: base_sequence,
            last_seq: last_sequence(base_sequence, last_offset_delta),
        })
    }
}

/// The idempotent producer of a stamped batch (read back from the log, or about to be
/// appended at the offsets it carries) and the batch as the producer state records it; None
/// for a batch without a producer id, a control batch, or bytes shorter than a header.
pub fn stored_batch_producer(batch: &[u8]) -> Option<(ProducerAppend, ProducerBatch)> {
    let header = crate::protocol::record_batch::header(batch)?;
    if header.attributes.get() & crate::protocol::record_batch::ATTRIBUTE_CONTROL != 0 {
        return None;
    }
    let last_offset_delta = header.last_offset_delta.get();
    let producer = ProducerAppend::from_header(
        header.producer_id.get(),
        header.producer_epoch.get(),
        header.base_sequence.get(),
        last_offset_delta,
    )?;
    let base_offset = Offset(header.base_offset.get());
    let batch = ProducerBatch {
        first_seq: producer.first_seq,
        last_seq: producer.last_seq,
        base_offset,
        last_offset: base_offset + i64::from(last_offset_delta),
        timestamp: header.max_timestamp.get(),
    };
    Some((producer, batch))
}

/// The sequence of a batch's last record: clients number records modulo 2^31, so a batch
/// starting near `i32::MAX` wraps to 0.
pub fn last_sequence(base_sequence: i32, last_offset_delta: i32) -> i32 {
    let last = i64::from(base_sequence) + i64::from(last_offset_delta.max(0));
    (last % (i64::from(i32::MAX) + 1)) as i32
}

/// Whether `next` is the sequence right after `last`.
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// Why a producer's batch is refused; each maps to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// INVALID_PRODUCER_EPOCH (47).
    #[error("epoch {epoch} of producer {producer_id} is older than its current epoch {current}")]
    InvalidEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    #[error("out of order sequence {sequence} of producer {producer_id}: expected {expected}")]
    OutOfOrder {
        producer_id: i64,
        sequence: i32,
        expected: i64,
    },
}

/// The outcome of checking an incoming batch against the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Append it, then `record` it.
    New,
    /// Already in the log (or staged for it): answer with this batch's offsets.
    Duplicate(ProducerBatch),
}

/// The state of every producer of one partition. Per-shard: owned by the partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerTable {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerTable {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks an incoming client batch: duplicate first (as Kafka does), then epoch, then
    /// sequence.
    pub fn check(&self, append: &ProducerAppend) -> Result<Checked, ProducerError> {
        let Some(entry) = self.producers.get(&append.producer_id) else {
            return Ok(Checked::New);
        };
        if append.epoch == entry.epoch {
            let original = entry.batches.iter().find(|batch| {
                batch.first_seq == append.first_seq && batch.last_seq == append.last_seq
            });
            if let Some(original) = original {
                return Ok(Checked::Duplicate(*original));
            }
        }
        if append.epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id: append.producer_id,
                epoch: append.epoch,
                current: entry.epoch,
            });
        }
        let last_seq = if append.epoch > entry.epoch {
            -1
        } else {
            entry.batches.back().map_or(-1, |batch| batch.last_seq)
        };
        if in_sequence(last_seq, append.first_seq) {
            return Ok(Checked::New);
        }
        Err(ProducerError::OutOfOrder {
            producer_id: append.producer_id,
            sequence: append.first_seq,
            expected: (i64::from(last_seq) + 1) % (i64::from(i32::MAX) + 1),
        })
    }

    /// Records a batch written (or about to be written) to the log. A new epoch forgets the
    /// batches of the old one; only the last `PRODUCER_BATCHES_RETAINED_COUNT` are kept.
    pub fn record(&mut self, producer_id: i64, epoch: i16, batch: ProducerBatch) {
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch,
                batches: VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED_COUNT),
                last_timestamp: batch.timestamp,
            });
        if entry.epoch != epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == PRODUCER_BATCHES_RETAINED_COUNT {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        entry.last_timestamp = batch.timestamp;
        assert!(entry.batches.len() <= PRODUCER_BATCHES_RETAINED_COUNT);
    }

    /// Forgets producers idle for `expiration_ms` or longer. Returns how many were removed.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| now_ms.saturating_sub(entry.last_timestamp) < expiration_ms);
        before - self.producers.len()
    }
}

/// Snapshot layout, all big-endian: version u16, CRC-32C u32 of everything after it, offset
/// i64 (the snapshot holds the state of every batch below it), producer count u32, then per
/// producer: id i64, epoch i16, last timestamp i64, batch count u8, and per batch: first seq
/// i32, last seq i32, base offset i64, last offset i64, timestamp i64.
const SNAPSHOT_VERSION: u16 = 1;
const SNAPSHOT_HEADER_BYTES: usize = 2 + 4 + 8 + 4;
const SNAPSHOT_PRODUCER_BYTES: usize = 8 + 2 + 8 + 1;
const SNAPSHOT_BATCH_BYTES: usize = 4 + 4 + 8 + 8 + 8;

impl ProducerTable {
    /// The snapshot file content for the state of every batch below `offset`.
    pub fn encode_snapshot(&self, offset: Offset) -> Vec<u8> {
        let mut ids: Vec<i64> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + ids.len() * 64);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&offset.get().to_be_bytes());
        out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let entry = &self.producers[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            out.extend_from_slice(&entry.last_timestamp.to_be_bytes());
            out.push(entry.batches.len() as u8);
            for batch in &entry.batches {
                out.extend_from_slice(&batch.first_seq.to_be_bytes());
                out.extend_from_slice(&batch.last_seq.to_be_bytes());
                out.extend_from_slice(&batch.base_offset.get().to_be_bytes());
                out.extend_from_slice(&batch.last_offset.get().to_be_bytes());
                out.extend_from_slice(&batch.timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out[6..]);
        out[2..6].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a snapshot file: its offset and table, or why it cannot be trusted.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<(Offset, ProducerTable), String> {
        let mut reader = Reader { bytes, position: 0 };
        let version = reader.u16()?;
        if version != SNAPSHOT_VERSION {
            return Err(format!("unknown snapshot version {version}"));
        }
        let crc = reader.u32()?;
        let computed = crc32c::crc32c(&bytes[6..]);
        if crc != computed {
            return Err(format!("crc mismatch: {crc:#010x} != {computed:#010x}"));
        }
        let offset = Offset(reader.i64()?);
        let count = reader.u32()? as usize;
        if count > bytes.len() / SNAPSHOT_PRODUCER_BYTES {
            return Err(format!("producer count {count} exceeds the file"));
        }
        let mut table = ProducerTable::default();
        for _ in 0..count {
            let (id, entry) = decode_entry(&mut reader)?;
            if table.producers.insert(id, entry).is_some() {
                return Err(format!("producer {id} appears twice"));
            }
        }
        if reader.position != bytes.len() {
            return Err("trailing bytes after the last producer".into());
        }
        Ok((offset, table))
    }
}

fn decode_entry(reader: &mut Reader<'_>) -> Result<(i64, ProducerEntry), String> {
    let id = reader.i64()?;
    let epoch = reader.i16()?;
    let last_timestamp = reader.i64()?;
    let batch_count = reader.u8()? as usize;
    if id < 0 || batch_count == 0 || batch_count > PRODUCER_BATCHES_RETAINED_COUNT {
        return Err(format!("producer {id} with {batch_count} batches"));
    }
    let mut batches = VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED_COUNT);
    for _ in 0..batch_count {
        batches.push_back(ProducerBatch {
            first_seq: reader.i32()?,
            last_seq: reader.i32()?,
            base_offset: Offset(reader.i64()?),
            last_offset: Offset(reader.i64()?),
            timestamp: reader.i64()?,
        });
    }
    let entry = ProducerEntry {
        epoch,
        batches,
        last_timestamp,
    };
    Ok((id, entry))
}

/// A bounds-checked big-endian reader: running out of bytes is an error, never a panic.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.position + N;
        let slice = self
            .bytes
            .get(self.position..end)
            .ok_or_else(|| "snapshot truncated".to_string())?;
        self.position = end;
        Ok(slice.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        self.take().map(u16::from_be_bytes)
    }

    fn i16(&mut self) -> Result<i16, String> {
        self.take().map(i16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, String> {
        self.take().map(i32::from_be_bytes)
    }

    fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_be_bytes)
    }
}

const _: () = assert!(SNAPSHOT_BATCH_BYTES == 32);
const _: () = assert!(PRODUCER_BATCHES_RETAINED_COUNT <= u8::MAX as usize);

#[cfg(test)]
mod tests {
    use super::*;

    fn append(producer_id: i64, epoch: i16, first_seq: i32, count: i32) -> ProducerAppend {
        ProducerAppend::from_header(producer_id, epoch, first_seq, count - 1).unwrap()
    }

    /// Checks `append` and, if new, records it at `*next_offset`; returns the check.
    fn produce(
        table: &mut ProducerTable,
        next_offset: &mut Offset,
        append: ProducerAppend,
    ) -> Checked {
        let checked = table.check(&append).unwrap();
        if checked == Checked::New {
            let count =
                i64::from(append.last_seq.wrapping_sub(append.first_seq)).rem_euclid(1 << 31);
            let batch = ProducerBatch {
                first_seq: append.first_seq,
                last_seq: append.last_seq,
                base_offset: *next_offset,
                last_offset: *next_offset + count,
                timestamp: 1_000,
            };
            table.record(append.producer_id, append.epoch, batch);
            *next_offset += count + 1;
        }
        checked
    }

    /// A retry of any of the last five batches is a duplicate with its original offsets; a
    /// retry of an older one is out of order.
    #[test]
    fn duplicates_of_the_last_five_batches() {
        let mut table = ProducerTable::default();
        let mut next = Offset::ZERO;
        for batch in 0..7 {
            assert_eq!(
                produce(&mut table, &mut next, append(7, 0, batch * 2, 2)),
                Checked::New
            );
        }
        for batch in 2..7 {
            match table.check(&append(7, 0, batch * 2, 2)).unwrap() {
                Checked::Duplicate(original) => {
                    assert_eq!(original.base_offset, Offset(i64::from(batch) * 2));
                    assert_eq!(original.last_offset, Offset(i64::from(batch) * 2 + 1));
                }
                Checked::New => panic!("batch {batch} not recognized as a duplicate"),
            }
        }
        assert!(matches!(
            table.check(&append(7, 0, 2, 2)),
            Err(ProducerError::OutOfOrder { .. })
        ));
        // Same first sequence, different length: not the same batch.
        assert!(table.check(&append(7, 0, 12, 1)).is_err());
    }

    /// Gaps and repeats that are not duplicates are out of order; the expected sequence is
    /// the one after the last batch.
    #[test]
    fn out_of_order_sequences() {
        let mut table = ProducerTable::default();
        let mut next = Offset::ZERO;
        produce(&mut table, &mut next, append(1, 3, 0, 5));
        assert_eq!(
            table.check(&append(1, 3, 6, 1)),
            Err(ProducerError::OutOfOrder {
                producer_id: 1,
                sequence: 6,
                expected: 5
            })
        );
        assert_eq!(table.check(&append(1, 3, 5, 1)), Ok(Checked::New));
    }

    /// An older epoch is refused; a newer one must start at sequence 0 and then forgets the
    /// old epoch's batches.
    #[test]
    fn epochs() {
        let mut table = ProducerTable::default();
        let mut next = Offset::ZERO;
        produce(&mut table, &mut next, append(1, 2, 0, 1));
        assert!(matches!(
            table.check(&append(1, 1, 1, 1)),
            Err(ProducerError::InvalidEpoch { current: 2, .. })
        ));
        assert!(matches!(
            table.check(&append(1, 3, 1, 1)),
            Err(ProducerError::OutOfOrder { expected: 0, .. })
        ));
        assert_eq!(
            produce(&mut table, &mut next, append(1, 3, 0, 1)),
            Checked::New
        );
        assert_eq!(table.get(1).unwrap().batches.len(), 1);
        // The old epoch's batch is no longer a duplicate but a fenced write.
        assert!(matches!(
            table.check(&append(1, 2, 0, 1)),
            Err(ProducerError::InvalidEpoch { .. })
        ));
    }

    /// An unknown producer may start at any sequence (KIP-360), as Kafka 2.5+ accepts.
    #[test]
    fn unknown_producer_any_sequence() {
        let table = ProducerTable::default();
        assert_eq!(table.check(&append(9, 0, 42, 3)), Ok(Checked::New));
    }

    /// Sequences wrap from i32::MAX to 0, inside a batch and between batches.
    #[test]
    fn sequence_wrap_around() {
        assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(last_sequence(i32::MAX, 0), i32::MAX);
        let mut table = ProducerTable::default();
        let mut next = Offset::ZERO;
        produce(&mut table, &mut next, append(4, 0, i32::MAX - 2, 2));
        assert_eq!(
            produce(&mut table, &mut next, append(4, 0, i32::MAX, 3)),
            Checked::New
        );
        let last = table.get(4).unwrap().batches.back().copied().unwrap();
        assert_eq!((last.first_seq, last.last_seq), (i32::MAX, 1));
        assert!(matches!(
            table.check(&append(4, 0, i32::MAX, 3)),
            Ok(Checked::Duplicate(_))
        ));
        assert_eq!(table.check(&append(4, 0, 2, 1)), Ok(Checked::New));
        assert!(table.check(&append(4, 0, 3, 1)).is_err());
    }

    /// Producers idle for the expiration time are forgotten; active ones stay.
    #[test]
    fn expiry() {
        let mut table = ProducerTable::default();
        let batch = |timestamp| ProducerBatch {
            first_seq: 0,
            last_seq: 0,
            base_offset: Offset::ZERO,
            last_offset: Offset::ZERO,
            timestamp,
        };
        table.record(1, 0, batch(1_000));
        table.record(2, 0, batch(5_000));
        assert_eq!(table.remove_expired(6_000, 5_000), 1);
        assert!(table.get(1).is_none() && table.get(2).is_some());
    }

    /// A snapshot decodes to the same table and offset; any flipped byte or truncation is
    /// detected rather than loaded.
    #[test]
    fn snapshot_round_trip_and_corruption() {
        let mut table = ProducerTable::default();
        let mut next = Offset::ZERO;
        for id in 0..3 {
            for batch in 0..7 {
                produce(&mut table, &mut next, append(id, 1, batch, 1));
            }
        }
        let bytes = table.encode_snapshot(next);
        assert_eq!(
            ProducerTable::decode_snapshot(&bytes),
            Ok((next, table.clone()))
        );
        for position in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[position] ^= 0x40;
            assert!(
                ProducerTable::decode_snapshot(&corrupt).is_err(),
                "byte {position}"
            );
        }
        for length in 0..bytes.len() {
            assert!(ProducerTable::decode_snapshot(&bytes[..length]).is_err());
        }
        let empty = ProducerTable::default().encode_snapshot(Offset(5));
        assert_eq!(
            ProducerTable::decode_snapshot(&empty),
            Ok((Offset(5), ProducerTable::default()))
        );
    }
}
