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
//! Transactions (Kafka's `ProducerStateManager`): a transactional batch opens the producer's
//! transaction in this partition at its first offset unless one is open; a marker (COMMIT or
//! ABORT) closes it. The open transactions, by first offset, are what holds the last stable
//! offset back. A marker from an older producer epoch is INVALID_PRODUCER_EPOCH, one from an
//! older coordinator epoch than the last marker's TRANSACTION_COORDINATOR_FENCED; a marker
//! with a newer producer epoch (the coordinator bumped it) moves the producer to that epoch.
//!
//! The table is plain data with no I/O. It also encodes and decodes the snapshot files the
//! partition writes at segment rolls and at close (`<offset>.snapshot`), checked by a CRC-32C.

use crate::ids::Offset;
use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;

use crate::limits::PRODUCER_BATCHES_RETAINED_COUNT;
use crate::protocol::control::TxnMarker;

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
    /// Oldest first; never more than `PRODUCER_BATCHES_RETAINED_COUNT`. Empty for a producer
    /// known only from a marker.
    pub batches: VecDeque<ProducerBatch>,
    /// Timestamp of the producer's last batch or marker: expiry counts idleness from it, as
    /// Kafka does.
    pub last_timestamp: i64,
    /// Where the producer's open transaction in this partition begins (Kafka's
    /// `currentTxnFirstOffset`), if one is open.
    pub txn_first_offset: Option<Offset>,
    /// The coordinator epoch of the last marker written for the producer (-1: none).
    pub coordinator_epoch: i32,
}

impl ProducerEntry {
    fn new(epoch: i16, timestamp: i64) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED_COUNT),
            last_timestamp: timestamp,
            txn_first_offset: None,
            coordinator_epoch: -1,
        }
    }

    /// Moves the producer to `epoch` if it is newer, forgetting the old epoch's batches.
    fn take_epoch(&mut self, epoch: i16) {
        if self.epoch != epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }
}

/// The producer fields of one incoming or stored batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerAppend {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
    /// Part of a transaction.
    pub transactional: bool,
}

impl ProducerAppend {
    /// The producer fields of a batch header, or None for a batch without a producer id.
    pub fn from_header(
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        last_offset_delta: i32,
        transactional: bool,
    ) -> Option<ProducerAppend> {
        (producer_id >= 0).then(|| ProducerAppend {
            producer_id,
            epoch,
            first_seq: base_sequence,
            last_seq: last_sequence(base_sequence, last_offset_delta),
            transactional,
        })
    }
}

/// What a stamped batch changes in the producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerChange {
    /// A data batch of an idempotent or transactional producer.
    Batch(ProducerAppend, ProducerBatch),
    /// A transaction marker at `offset`, stamped `timestamp`.
    Marker {
        marker: TxnMarker,
        offset: Offset,
        timestamp: i64,
    },
}

impl ProducerChange {
    /// What `batch` (read back from the log, or about to be appended at the offsets it
    /// carries) changes: None for a batch without a producer id or a control batch other
    /// than a marker.
    pub fn of_stored(batch: &Bytes) -> Option<ProducerChange> {
        let header = crate::protocol::record_batch::header(batch)?;
        if header.attributes.get() & crate::protocol::record_batch::ATTRIBUTE_CONTROL != 0 {
            let marker = TxnMarker::from_batch(batch)?;
            return Some(ProducerChange::Marker {
                marker,
                offset: Offset(header.base_offset.get()),
                timestamp: header.max_timestamp.get(),
            });
        }
        stored_batch_producer(batch).map(|(append, batch)| ProducerChange::Batch(append, batch))
    }
    /// Where the batch or marker begins in the log.
    pub fn offset(&self) -> Offset {
        match self {
            ProducerChange::Batch(_, batch) => batch.base_offset,
            ProducerChange::Marker { offset, .. } => *offset,
        }
    }
}

/// A transaction whose marker is written: Kafka's `CompletedTxn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: Offset,
    /// The marker's offset.
    pub last_offset: Offset,
    pub aborted: bool,
    /// The last stable offset right after the marker: the first offset of the earliest
    /// transaction still open, or the offset after the marker. No transaction completed
    /// later began below it, which bounds the search for aborted transactions.
    pub last_stable_offset: Offset,
}

/// The idempotent producer of a stamped batch (read back from the log, or about to be
/// appended at the offsets it carries) and the batch as the producer state records it; None
/// for a batch without a producer id, a control batch, or bytes shorter than a header.
pub fn stored_batch_producer(batch: &[u8]) -> Option<(ProducerAppend, ProducerBatch)> {
    let header = crate::protocol::record_batch::header(batch)?;
    let attributes = header.attributes.get();
    if attributes & crate::protocol::record_batch::ATTRIBUTE_CONTROL != 0 {
        return None;
    }
    let last_offset_delta = header.last_offset_delta.get();
    let producer = ProducerAppend::from_header(
        header.producer_id.get(),
        header.producer_epoch.get(),
        header.base_sequence.get(),
        last_offset_delta,
        attributes & crate::protocol::record_batch::ATTRIBUTE_TRANSACTIONAL != 0,
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
    /// TRANSACTION_COORDINATOR_FENCED (52): a marker from an older coordinator.
    #[error(
        "coordinator epoch {epoch} of a marker for producer {producer_id} is older than {current}"
    )]
    CoordinatorFenced {
        producer_id: i64,
        epoch: i32,
        current: i32,
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
    /// The open transactions: first offset -> producer id (Kafka's `ongoingTxns`).
    open_txns: BTreeMap<Offset, i64>,
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
    /// batches of the old one; only the last `PRODUCER_BATCHES_RETAINED_COUNT` are kept. A
    /// transactional batch opens the producer's transaction here unless one is open.
    pub fn record(&mut self, append: &ProducerAppend, batch: ProducerBatch) {
        let entry = self
            .producers
            .entry(append.producer_id)
            .or_insert_with(|| ProducerEntry::new(append.epoch, batch.timestamp));
        entry.take_epoch(append.epoch);
        if entry.batches.len() == PRODUCER_BATCHES_RETAINED_COUNT {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        entry.last_timestamp = batch.timestamp;
        assert!(entry.batches.len() <= PRODUCER_BATCHES_RETAINED_COUNT);
        if append.transactional && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(batch.base_offset);
            self.open_txns.insert(batch.base_offset, append.producer_id);
        }
    }

    /// Records any change a stamped batch makes (see `ProducerChange::of_stored`); returns
    /// the transaction a marker completed.
    pub fn apply(&mut self, change: &ProducerChange) -> Option<CompletedTxn> {
        match change {
            ProducerChange::Batch(append, batch) => {
                self.record(append, *batch);
                None
            }
            ProducerChange::Marker {
                marker,
                offset,
                timestamp,
            } => self.complete(marker, *offset, *timestamp),
        }
    }

    /// Checks a marker about to be written: its producer epoch must not be older than the
    /// producer's, its coordinator epoch not older than the last marker's.
    pub fn check_marker(&self, marker: &TxnMarker) -> Result<(), ProducerError> {
        let Some(entry) = self.producers.get(&marker.producer_id) else {
            return Ok(());
        };
        if marker.producer_epoch < entry.epoch {
            return Err(ProducerError::InvalidEpoch {
                producer_id: marker.producer_id,
                epoch: marker.producer_epoch,
                current: entry.epoch,
            });
        }
        if marker.coordinator_epoch < entry.coordinator_epoch {
            return Err(ProducerError::CoordinatorFenced {
                producer_id: marker.producer_id,
                epoch: marker.coordinator_epoch,
                current: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records a marker written at `offset`: closes the producer's open transaction, if it
    /// has one here, and returns it. A marker without an open transaction (the transaction
    /// wrote nothing here, or the coordinator sent the marker again) completes none.
    pub fn complete(
        &mut self,
        marker: &TxnMarker,
        offset: Offset,
        timestamp: i64,
    ) -> Option<CompletedTxn> {
        let entry = self
            .producers
            .entry(marker.producer_id)
            .or_insert_with(|| ProducerEntry::new(marker.producer_epoch, timestamp));
        if marker.producer_epoch > entry.epoch {
            entry.take_epoch(marker.producer_epoch);
        }
        entry.coordinator_epoch = marker.coordinator_epoch;
        entry.last_timestamp = entry.last_timestamp.max(timestamp);
        let first_offset = entry.txn_first_offset.take()?;
        self.open_txns.remove(&first_offset);
        let last_stable_offset = self.first_open_txn().unwrap_or(offset + 1);
        Some(CompletedTxn {
            producer_id: marker.producer_id,
            first_offset,
            last_offset: offset,
            aborted: !marker.commit,
            last_stable_offset,
        })
    }

    /// The first offset of the earliest open transaction.
    pub fn first_open_txn(&self) -> Option<Offset> {
        self.open_txns.keys().next().copied()
    }

    /// Forgets producers idle for `expiration_ms` or longer, except those with an open
    /// transaction (the coordinator aborts it first). Returns how many were removed.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, entry| {
            entry.txn_first_offset.is_some()
                || now_ms.saturating_sub(entry.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }
}

/// Snapshot layout, all big-endian: version u16, CRC-32C u32 of everything after it, offset
/// i64 (the snapshot holds the state of every batch below it), producer count u32, then per
/// producer: id i64, epoch i16, last timestamp i64, open transaction's first offset i64 (-1:
/// none), coordinator epoch i32, batch count u8, and per batch: first seq i32, last seq i32,
/// base offset i64, last offset i64, timestamp i64. Version 1 (before transactions) had
/// neither transaction field and at least one batch per producer; it is still read.
const SNAPSHOT_VERSION: u16 = 2;
const SNAPSHOT_VERSION_BEFORE_TRANSACTIONS: u16 = 1;
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
            let txn_first_offset = entry.txn_first_offset.unwrap_or(Offset::NONE);
            out.extend_from_slice(&txn_first_offset.get().to_be_bytes());
            out.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
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
        let mut reader = Reader::new(bytes);
        let version = reader.u16()?;
        let transactions = match version {
            SNAPSHOT_VERSION => true,
            SNAPSHOT_VERSION_BEFORE_TRANSACTIONS => false,
            _ => return Err(format!("unknown snapshot version {version}")),
        };
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
            let (id, entry) = decode_entry(&mut reader, transactions)?;
            if let Some(first_offset) = entry.txn_first_offset {
                if table.open_txns.insert(first_offset, id).is_some() {
                    return Err(format!("two transactions begin at {first_offset}"));
                }
            }
            if table.producers.insert(id, entry).is_some() {
                return Err(format!("producer {id} appears twice"));
            }
        }
        if !reader.is_done() {
            return Err("trailing bytes after the last producer".into());
        }
        Ok((offset, table))
    }
}

fn decode_entry(
    reader: &mut Reader<'_>,
    transactions: bool,
) -> Result<(i64, ProducerEntry), String> {
    let id = reader.i64()?;
    let epoch = reader.i16()?;
    let last_timestamp = reader.i64()?;
    let (txn_first_offset, coordinator_epoch) = match transactions {
        true => {
            let first = Offset(reader.i64()?);
            let first = (first != Offset::NONE).then_some(first);
            (first, reader.i32()?)
        }
        false => (None, -1),
    };
    if txn_first_offset.is_some_and(|first| first < Offset::ZERO) {
        return Err(format!(
            "producer {id} with a transaction at a negative offset"
        ));
    }
    let batch_count = reader.u8()? as usize;
    let batches_min = usize::from(!transactions);
    if id < 0 || batch_count < batches_min || batch_count > PRODUCER_BATCHES_RETAINED_COUNT {
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
        txn_first_offset,
        coordinator_epoch,
    };
    Ok((id, entry))
}

/// A bounds-checked big-endian reader of the partition's side files (producer snapshots,
/// aborted-transaction files): running out of bytes is an error, never a panic.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    /// Whether every byte has been read.
    pub(super) fn is_done(&self) -> bool {
        self.position == self.bytes.len()
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.position + N;
        let slice = self
            .bytes
            .get(self.position..end)
            .ok_or_else(|| "file truncated".to_string())?;
        self.position = end;
        Ok(slice.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, String> {
        self.take().map(u16::from_be_bytes)
    }

    fn i16(&mut self) -> Result<i16, String> {
        self.take().map(i16::from_be_bytes)
    }

    pub(super) fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, String> {
        self.take().map(i32::from_be_bytes)
    }

    pub(super) fn i64(&mut self) -> Result<i64, String> {
        self.take().map(i64::from_be_bytes)
    }
}

const _: () = assert!(SNAPSHOT_BATCH_BYTES == 32);
const _: () = assert!(PRODUCER_BATCHES_RETAINED_COUNT <= u8::MAX as usize);

#[cfg(test)]
mod tests {
    use super::*;

    fn append(producer_id: i64, epoch: i16, first_seq: i32, count: i32) -> ProducerAppend {
        ProducerAppend::from_header(producer_id, epoch, first_seq, count - 1, false).unwrap()
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
            table.record(&append, batch);
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
        table.record(&append(1, 0, 0, 1), batch(1_000));
        table.record(&append(2, 0, 0, 1), batch(5_000));
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

    fn marker(producer_id: i64, epoch: i16, coordinator_epoch: i32, commit: bool) -> TxnMarker {
        TxnMarker {
            producer_id,
            producer_epoch: epoch,
            coordinator_epoch,
            commit,
        }
    }

    fn transactional(producer_id: i64, epoch: i16, first_seq: i32, count: i32) -> ProducerAppend {
        ProducerAppend::from_header(producer_id, epoch, first_seq, count - 1, true).unwrap()
    }

    /// A transaction opens at its first batch and closes at its marker, which reports where
    /// it began and the last stable offset after it; a marker with a newer epoch moves the
    /// producer to it (its next batch starts at sequence 0); older producer or coordinator
    /// epochs are refused.
    #[test]
    fn transactions_open_and_close() {
        let mut table = ProducerTable::default();
        let mut next = Offset::ZERO;
        produce(&mut table, &mut next, transactional(1, 0, 0, 2));
        produce(&mut table, &mut next, transactional(2, 0, 0, 2));
        produce(&mut table, &mut next, transactional(1, 0, 2, 2));
        assert_eq!(table.get(1).unwrap().txn_first_offset, Some(Offset(0)));
        assert_eq!(table.first_open_txn(), Some(Offset(0)));
        let done = table.complete(&marker(1, 0, 3, false), Offset(6), 2_000);
        assert_eq!(
            done,
            Some(CompletedTxn {
                producer_id: 1,
                first_offset: Offset(0),
                last_offset: Offset(6),
                aborted: true,
                last_stable_offset: Offset(2),
            })
        );
        assert_eq!(table.first_open_txn(), Some(Offset(2)));
        assert_eq!(
            table.complete(&marker(1, 0, 3, true), Offset(7), 2_000),
            None
        );
        assert!(matches!(
            table.check_marker(&marker(1, 0, 2, true)),
            Err(ProducerError::CoordinatorFenced { current: 3, .. })
        ));
        // The coordinator bumped producer 2's epoch when it aborted.
        let done = table.complete(&marker(2, 1, 0, false), Offset(8), 2_000);
        assert_eq!(done.map(|d| d.last_stable_offset), Some(Offset(9)));
        assert_eq!(table.first_open_txn(), None);
        assert_eq!(table.get(2).unwrap().epoch, 1);
        assert!(matches!(
            table.check(&transactional(2, 1, 2, 1)),
            Err(ProducerError::OutOfOrder { expected: 0, .. })
        ));
        assert!(matches!(
            table.check_marker(&marker(2, 0, 0, true)),
            Err(ProducerError::InvalidEpoch { current: 1, .. })
        ));
        // A producer first seen in a marker is known, with no batches.
        assert_eq!(
            table.complete(&marker(9, 4, 0, true), Offset(9), 2_000),
            None
        );
        assert!(table.get(9).unwrap().batches.is_empty());
    }

    /// Expiry never forgets a producer with an open transaction.
    #[test]
    fn open_transactions_do_not_expire() {
        let mut table = ProducerTable::default();
        let mut next = Offset::ZERO;
        produce(&mut table, &mut next, transactional(1, 0, 0, 1));
        produce(&mut table, &mut next, append(2, 0, 0, 1));
        assert_eq!(table.remove_expired(1_000_000, 10), 1);
        assert!(table.get(1).is_some());
    }

    /// Open transactions, coordinator epochs and producers without batches survive a
    /// snapshot; a snapshot of version 1 (before transactions) is still read.
    #[test]
    fn snapshots_keep_transactions_and_read_version_one() {
        let mut table = ProducerTable::default();
        let mut next = Offset::ZERO;
        produce(&mut table, &mut next, transactional(1, 0, 0, 2));
        produce(&mut table, &mut next, append(2, 0, 0, 2));
        table.complete(&marker(3, 0, 7, true), next, 1_000);
        let bytes = table.encode_snapshot(Offset(5));
        assert_eq!(
            ProducerTable::decode_snapshot(&bytes),
            Ok((Offset(5), table.clone()))
        );

        // Version 1 of producer 2 alone: the same bytes without the two transaction fields.
        let mut idempotent_only = ProducerTable::default();
        let mut next = Offset::ZERO;
        produce(&mut idempotent_only, &mut next, append(2, 0, 0, 2));
        let v2 = idempotent_only.encode_snapshot(Offset(2));
        let fields_at = SNAPSHOT_HEADER_BYTES + 8 + 2 + 8;
        let mut v1 = v2[..fields_at].to_vec();
        v1.extend_from_slice(&v2[fields_at + 12..]);
        v1[..2].copy_from_slice(&SNAPSHOT_VERSION_BEFORE_TRANSACTIONS.to_be_bytes());
        let crc = crc32c::crc32c(&v1[6..]);
        v1[2..6].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            ProducerTable::decode_snapshot(&v1),
            Ok((Offset(2), idempotent_only))
        );
    }
}
