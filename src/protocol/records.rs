//! The records inside one v2 batch: reading them, and rewriting a batch with some of them gone.
//!
//! The broker stores batches verbatim and reads no record on the produce or fetch path. Two
//! things need the records: log compaction, which keeps the latest record of each key and
//! rewrites batches the way Kafka's cleaner does (`MemoryRecords.filterTo`), and the refusal of
//! keyless records on compacted topics (KIP-467). Both live here, pure: bytes in, bytes out.
//!
//! Invariants:
//! - Every function is total on any input: malformed bytes give a `RecordsError`, never a
//!   panic. A record count is trusted for no allocation beyond the bytes that hold the records,
//!   and the codecs bound their output by `DECOMPRESSED_BYTES_MAX`.
//! - A rewritten batch keeps its offset range, base timestamp, producer fields, leader epoch
//!   and attributes; its records are the kept records' bytes, copied, never re-encoded. Record
//!   offsets and timestamps are deltas from the batch's base, so they come out unchanged and the
//!   log only grows sparse.
//! - A record's key and value are slices of the one decompressed buffer, never copies.
//!
//! A record on the wire (Kafka's `DefaultRecord`): length (varint), attributes (int8),
//! timestampDelta (varlong), offsetDelta (varint), key length (varint, -1 for null) and key,
//! value length (varint, -1 for null) and value, header count (varint), and per header a key
//! length (varint) and key, a value length (varint, -1 for null) and value.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use crate::ids::Offset;
use crate::limits::RECORD_BATCH_HEADER_BYTES;
use crate::protocol::record_batch::{
    self, BatchError, BatchSummary, Compression, TimestampType, ATTRIBUTE_CONTROL,
    ATTRIBUTE_LOG_APPEND_TIME, ATTRIBUTE_TRANSACTIONAL, ERROR_CORRUPT_MESSAGE,
    ERROR_INVALID_RECORD, LOG_OVERHEAD_BYTES, MAGIC_V2,
};

/// Most bytes of a varint (int32) and of a varlong (int64), as Kafka's `ByteUtils` reads them.
const VARINT_BYTES_MAX: usize = 5;
const VARLONG_BYTES_MAX: usize = 10;
/// A batch header's fields when there is no producer, or no timestamp.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;
const NO_SEQUENCE: i32 = -1;
const NO_TIMESTAMP: i64 = -1;

/// One record of a batch, as compaction and produce validation need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    /// Offset of the record minus the batch's base offset.
    pub offset_delta: i32,
    /// Timestamp of the record minus the batch's base timestamp (CreateTime batches).
    pub timestamp_delta: i64,
    /// The key; `None` is a null key, which a compacted topic refuses.
    pub key: Option<Bytes>,
    /// Whether the value is null: a tombstone, which compaction keeps only for a while.
    pub value_is_null: bool,
    /// The whole record as encoded, its length prefix included: what a rewrite copies.
    pub encoded: Bytes,
}

impl RecordView {
    /// The record's offset in a batch whose base offset is `base_offset`.
    pub fn offset(&self, base_offset: i64) -> i64 {
        base_offset.wrapping_add(i64::from(self.offset_delta))
    }

    /// The record's timestamp in a batch whose base timestamp is `base_timestamp`; it wraps as
    /// Kafka's Java reader does.
    pub fn timestamp(&self, base_timestamp: i64) -> i64 {
        base_timestamp.wrapping_add(self.timestamp_delta)
    }
}

/// What [`retain`] leaves of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retained {
    /// Every record stays: keep the batch as it is, byte for byte.
    All,
    /// Some records stay: the rewritten batch that holds them.
    Some(Bytes),
    /// No record stays. A caller that must keep the producer's state (Kafka keeps the last batch
    /// of a live producer) writes [`empty_batch`] in its place.
    None,
}

/// What is wrong inside one record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordFault {
    #[error("ends inside a field")]
    Truncated,
    #[error("has a varint longer than Kafka's format allows")]
    OverlongVarint,
    #[error("has a {field} length of {length}")]
    InvalidLength { field: &'static str, length: i64 },
    #[error("declares {size} bytes but its fields take {read}")]
    SizeMismatch { size: usize, read: usize },
}

/// Why the records of a batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("records do not decompress: {0}")]
    Decompress(String),
    #[error("record {index} {fault}")]
    Record { index: usize, fault: RecordFault },
    #[error("{0} bytes follow the batch's last record")]
    TrailingBytes(usize),
    #[error("rewritten batch of {0} bytes exceeds a batch length field")]
    TooLarge(usize),
}

impl RecordsError {
    /// The Kafka error code for a produced batch refused for this fault. A malformed record is
    /// Kafka's `InvalidRecordException` (INVALID_RECORD); records that do not decompress are
    /// corrupt (CORRUPT_MESSAGE).
    pub fn error_code(&self) -> i16 {
        match self {
            RecordsError::Batch(error) => error.error_code(),
            RecordsError::Decompress(_) => ERROR_CORRUPT_MESSAGE,
            RecordsError::Record { .. }
            | RecordsError::TrailingBytes(_)
            | RecordsError::TooLarge(_) => ERROR_INVALID_RECORD,
        }
    }
}

/// The records of one whole v2 batch, in order, after checking the batch as
/// [`record_batch::validate`] does. The records section is decompressed (or, uncompressed,
/// copied) once; every key and `encoded` is a slice of that one buffer. The batch must hold
/// exactly its declared count of records and nothing after them.
pub fn parse(batch: &[u8]) -> Result<Vec<RecordView>, RecordsError> {
    let (summary, section) = open(batch)?;
    read_all(&summary, section)
}

fn read_all(summary: &BatchSummary, section: Bytes) -> Result<Vec<RecordView>, RecordsError> {
    // A record takes at least one byte: the count bounds nothing beyond the input.
    let capacity = (summary.record_count as usize).min(section.len());
    let mut records = Vec::with_capacity(capacity);
    for record in Reader::new(section, summary.record_count) {
        records.push(record?);
    }
    Ok(records)
}

/// Indices, within the batch, of its records whose key is null: the records Kafka refuses on a
/// compacted topic (KIP-467 reports each by this index).
pub fn keyless_records(batch: &[u8]) -> Result<Vec<usize>, RecordsError> {
    let (summary, section) = open(batch)?;
    let mut keyless = Vec::new();
    for (index, record) in Reader::new(section, summary.record_count).enumerate() {
        if record?.key.is_none() {
            keyless.push(index);
        }
    }
    Ok(keyless)
}

/// Keeps the records of `batch` for which `keep(index, record)` is true, as Kafka's cleaner
/// does: see [`Retained`]. A rewritten batch keeps the header of `batch` except for its record
/// count, length, CRC and (CreateTime) max timestamp, which become the kept records'; its
/// records are re-compressed with the batch's codec.
pub fn retain(
    batch: &[u8],
    mut keep: impl FnMut(usize, &RecordView) -> bool,
) -> Result<Retained, RecordsError> {
    let (summary, section) = open(batch)?;
    let records = read_all(&summary, section)?;
    let mut kept = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        if keep(index, record) {
            kept.push(record);
        }
    }
    if kept.len() == records.len() {
        return Ok(Retained::All);
    }
    if kept.is_empty() {
        return Ok(Retained::None);
    }
    rewrite(batch, &summary, &kept).map(Retained::Some)
}

/// The batch with no records that Kafka's cleaner writes in place of a producer's last batch
/// when it keeps none of its records, so that the producer's id, epoch and last sequence
/// survive cleaning (`DefaultRecordBatch.writeEmptyHeader`): the same base offset, last offset
/// delta, producer fields, leader epoch and timestamp type, transactional and control bits; no
/// compression, no records; first and max timestamp both the original's max timestamp.
pub fn empty_batch(summary: &BatchSummary) -> Bytes {
    let mut attributes = 0;
    if summary.timestamp_type == TimestampType::LogAppendTime {
        attributes |= ATTRIBUTE_LOG_APPEND_TIME;
    }
    if summary.is_transactional {
        attributes |= ATTRIBUTE_TRANSACTIONAL;
    }
    if summary.is_control {
        attributes |= ATTRIBUTE_CONTROL;
    }
    let mut batch = BytesMut::zeroed(RECORD_BATCH_HEADER_BYTES);
    let h = record_batch::header_mut(&mut batch).expect("a header's worth of bytes");
    h.base_offset.set(summary.base_offset);
    h.batch_length
        .set((RECORD_BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32);
    h.partition_leader_epoch.set(summary.partition_leader_epoch);
    h.magic = MAGIC_V2;
    h.attributes.set(attributes);
    h.last_offset_delta.set(summary.last_offset_delta);
    h.base_timestamp.set(summary.max_timestamp);
    h.max_timestamp.set(summary.max_timestamp);
    h.producer_id.set(summary.producer_id);
    h.producer_epoch.set(summary.producer_epoch);
    h.base_sequence.set(summary.base_sequence);
    h.record_count.set(0);
    record_batch::update_crc(&mut batch);
    batch.freeze()
}

/// The empty batch a replica's compaction leaves in place of a run of removed batches of one
/// leader epoch, `[base_offset, last_offset]`, so that the replica's log stays without gaps
/// and says in which epoch every offset was written (see `partition::cleaner`): no producer,
/// no records, no timestamp.
pub fn filler(base_offset: Offset, last_offset: Offset, partition_leader_epoch: i32) -> Bytes {
    let last_offset_delta = i32::try_from(last_offset.get() - base_offset.get())
        .expect("a run of removed batches within one segment group");
    empty_batch(&BatchSummary {
        batch_bytes: RECORD_BATCH_HEADER_BYTES,
        last_offset_delta,
        base_timestamp: NO_TIMESTAMP,
        max_timestamp: NO_TIMESTAMP,
        record_count: 0,
        compression: Compression::None,
        timestamp_type: TimestampType::CreateTime,
        is_transactional: false,
        is_control: false,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        base_sequence: NO_SEQUENCE,
        partition_leader_epoch,
        base_offset: base_offset.get(),
    })
}

/// Whether `batch` is a filler (see `filler`): no records, no producer, not a control batch.
pub fn is_filler(header: &record_batch::BatchHeader) -> bool {
    header.record_count.get() == 0
        && header.producer_id.get() == NO_PRODUCER_ID
        && header.attributes.get() & ATTRIBUTE_CONTROL == 0
}

/// The batch's header facts and its records section, decompressed.
fn open(batch: &[u8]) -> Result<(BatchSummary, Bytes), RecordsError> {
    let summary = record_batch::validate(batch)?;
    let section = decompress(summary.compression, &batch[RECORD_BATCH_HEADER_BYTES..])?;
    Ok((summary, section))
}

fn decompress(compression: Compression, section: &[u8]) -> Result<Bytes, RecordsError> {
    let mut input = section;
    fn take(out: &mut Bytes) -> anyhow::Result<Bytes> {
        Ok(std::mem::take(out))
    }
    let result = match compression {
        Compression::None => return Ok(Bytes::copy_from_slice(section)),
        Compression::Gzip => Gzip::decompress(&mut input, take),
        Compression::Snappy => Snappy::decompress(&mut input, take),
        Compression::Lz4 => Lz4::decompress(&mut input, take),
        Compression::Zstd => Zstd::decompress(&mut input, take),
    };
    result.map_err(|error| RecordsError::Decompress(format!("{error:#}")))
}

/// `kept` records' bytes behind the header of `batch`, compressed with its codec, and the
/// header's count, length, max timestamp and CRC made theirs.
fn rewrite(
    batch: &[u8],
    summary: &BatchSummary,
    kept: &[&RecordView],
) -> Result<Bytes, RecordsError> {
    let mut out = BytesMut::with_capacity(batch.len());
    out.put_slice(&batch[..RECORD_BATCH_HEADER_BYTES]);
    compress_into(&mut out, summary.compression, |records| {
        for record in kept {
            records.put_slice(&record.encoded);
        }
    })?;
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD_BYTES)
        .map_err(|_| RecordsError::TooLarge(out.len()))?;
    let max_timestamp = match summary.timestamp_type {
        TimestampType::CreateTime => kept
            .iter()
            .map(|record| record.timestamp(summary.base_timestamp))
            .max()
            .expect("a rewrite keeps at least one record"),
        TimestampType::LogAppendTime => summary.max_timestamp,
    };
    let h = record_batch::header_mut(&mut out).expect("the header was copied");
    h.batch_length.set(batch_length);
    h.record_count.set(kept.len() as i32);
    h.max_timestamp.set(max_timestamp);
    record_batch::update_crc(&mut out);
    Ok(out.freeze())
}

/// Appends to `out` the records `write` puts, compressed with `codec`.
fn compress_into(
    out: &mut BytesMut,
    codec: Compression,
    write: impl FnOnce(&mut BytesMut),
) -> Result<(), RecordsError> {
    let write = |records: &mut BytesMut| -> anyhow::Result<()> {
        write(records);
        Ok(())
    };
    let compressed = match codec {
        Compression::None => write(out),
        Compression::Gzip => Gzip::compress(out, write),
        Compression::Snappy => Snappy::compress(out, write),
        Compression::Lz4 => Lz4::compress(out, write),
        Compression::Zstd => Zstd::compress(out, write),
    };
    // The codecs fail only on I/O errors of an in-memory writer.
    compressed.map_err(|error| RecordsError::Decompress(format!("recompressing: {error:#}")))
}

/// The batch with its records in `codec` instead of the one they came in (a topic's
/// `compression.type`, as Kafka's broker recompresses): the same header but for the codec
/// bits, the length and the CRC; the records byte for byte as they were, decompressed.
pub fn recompress(batch: &[u8], codec: Compression) -> Result<Bytes, RecordsError> {
    let (summary, section) = open(batch)?;
    if summary.compression == codec {
        return Ok(Bytes::copy_from_slice(batch));
    }
    // Check the records before storing them in a codec a reader will trust.
    read_all(&summary, section.clone())?;
    let mut out = BytesMut::with_capacity(RECORD_BATCH_HEADER_BYTES + section.len());
    out.put_slice(&batch[..RECORD_BATCH_HEADER_BYTES]);
    compress_into(&mut out, codec, |records| records.put_slice(&section))?;
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD_BYTES)
        .map_err(|_| RecordsError::TooLarge(out.len()))?;
    let h = record_batch::header_mut(&mut out).expect("the header was copied");
    let attributes = h.attributes.get();
    h.attributes
        .set(record_batch::with_compression(attributes, codec));
    h.batch_length.set(batch_length);
    record_batch::update_crc(&mut out);
    Ok(out.freeze())
}

/// Reads `count` records from a decompressed records section, then checks nothing follows.
struct Reader {
    section: Bytes,
    position: usize,
    index: usize,
    count: usize,
    failed: bool,
}

impl Reader {
    fn new(section: Bytes, count: i32) -> Reader {
        Reader {
            section,
            position: 0,
            index: 0,
            count: count.max(0) as usize,
            failed: false,
        }
    }

    fn next_record(&mut self) -> Result<RecordView, RecordsError> {
        let index = self.index;
        let fault = |fault| RecordsError::Record { index, fault };
        let mut cursor = Cursor {
            bytes: &self.section,
            position: self.position,
        };
        let size = cursor.varint().map_err(fault)?;
        let size = usize::try_from(size).map_err(|_| {
            fault(RecordFault::InvalidLength {
                field: "record",
                length: i64::from(size),
            })
        })?;
        let fields_start = cursor.position;
        let end = fields_start
            .checked_add(size)
            .filter(|&end| end <= self.section.len())
            .ok_or_else(|| fault(RecordFault::Truncated))?;
        let record = read_fields(&self.section, fields_start, end).map_err(fault)?;
        let encoded = self.section.slice(self.position..end);
        self.position = end;
        Ok(RecordView { encoded, ..record })
    }
}

impl Iterator for Reader {
    type Item = Result<RecordView, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.index == self.count {
            // Kafka's "Incorrect declared batch size, records still remaining in file".
            let trailing = self.section.len() - self.position;
            self.failed = true;
            return (trailing != 0).then_some(Err(RecordsError::TrailingBytes(trailing)));
        }
        let record = self.next_record();
        self.index += 1;
        self.failed = record.is_err();
        Some(record)
    }
}

/// The fields of the record in `section[start..end]` (after its length), which they must fill
/// exactly, as Kafka's `DefaultRecord.readFrom` requires. `encoded` is left empty.
fn read_fields(section: &Bytes, start: usize, end: usize) -> Result<RecordView, RecordFault> {
    let mut cursor = Cursor {
        bytes: &section[..end],
        position: start,
    };
    cursor.take(1)?; // attributes: unused in v2
    let timestamp_delta = cursor.varlong()?;
    let offset_delta = cursor.varint()?;
    let key = cursor.nullable("key")?.map(|range| section.slice(range));
    let value_is_null = cursor.nullable("value")?.is_none();
    let header_count = cursor.varint()?;
    if header_count < 0 {
        let length = i64::from(header_count);
        return Err(RecordFault::InvalidLength {
            field: "header count",
            length,
        });
    }
    for _ in 0..header_count {
        if cursor.nullable("header key")?.is_none() {
            let length = -1;
            return Err(RecordFault::InvalidLength {
                field: "header key",
                length,
            });
        }
        cursor.nullable("header value")?;
    }
    if cursor.position != end {
        return Err(RecordFault::SizeMismatch {
            size: end - start,
            read: cursor.position - start,
        });
    }
    Ok(RecordView {
        offset_delta,
        timestamp_delta,
        key,
        value_is_null,
        encoded: Bytes::new(),
    })
}

/// A read position in bytes that end where the record ends: a field that runs past the record
/// is `Truncated`, even when the section holds more.
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Cursor<'_> {
    fn take(&mut self, length: usize) -> Result<std::ops::Range<usize>, RecordFault> {
        let start = self.position;
        let end = start
            .checked_add(length)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(RecordFault::Truncated)?;
        self.position = end;
        Ok(start..end)
    }

    /// An unsigned LEB128 of at most `bytes_max` bytes; bits beyond 64 are dropped, as Java's
    /// shifts drop them.
    fn unsigned(&mut self, bytes_max: usize) -> Result<u64, RecordFault> {
        let mut value = 0u64;
        for index in 0..bytes_max {
            let byte = *self
                .bytes
                .get(self.position)
                .ok_or(RecordFault::Truncated)?;
            self.position += 1;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordFault::OverlongVarint)
    }

    fn varint(&mut self) -> Result<i32, RecordFault> {
        let zigzag = self.unsigned(VARINT_BYTES_MAX)? as u32;
        Ok((zigzag >> 1) as i32 ^ -((zigzag & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, RecordFault> {
        let zigzag = self.unsigned(VARLONG_BYTES_MAX)?;
        Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
    }

    /// A varint length and that many bytes; length -1 is null (`None`).
    fn nullable(
        &mut self,
        field: &'static str,
    ) -> Result<Option<std::ops::Range<usize>>, RecordFault> {
        match self.varint()? {
            -1 => Ok(None),
            length if length < 0 => Err(RecordFault::InvalidLength {
                field,
                length: i64::from(length),
            }),
            length => self.take(length as usize).map(Some),
        }
    }
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
