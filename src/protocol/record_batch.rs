//! The Kafka v2 RecordBatch header: validation, splitting and in-place patching.
//!
//! The broker never decodes individual records on the hot path. It checks the 61-byte header
//! (lengths, magic, CRC-32C, counts), assigns offsets by patching `baseOffset`, and stores the
//! batch verbatim. Every function here is pure and total: any byte string from the network
//! yields `Ok` or a `BatchError`, never a panic.
//!
//! Error codes follow the Java broker: a wrong magic, an empty records field and inconsistent
//! counts are `InvalidRecordException` there (INVALID_RECORD, 87); a bad CRC or a length that
//! does not fit is `CorruptRecordException` (CORRUPT_MESSAGE, 2).

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::limits::RECORD_BATCH_HEADER_BYTES;

/// Bytes before `batchLength` ends: `baseOffset` (8) plus `batchLength` (4). `batchLength`
/// counts the bytes after it, so a whole batch is `batchLength + LOG_OVERHEAD_BYTES`.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Offset of the `attributes` field: the CRC covers everything from here to the end.
const CRC_START: usize = 21;
pub const MAGIC_V2: i8 = 2;
/// Offset of the magic byte, the same in message formats v0, v1 and v2.
const MAGIC_OFFSET: usize = 16;
const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
pub const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x08;
pub const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
pub const ATTRIBUTE_CONTROL: i16 = 0x20;

/// The v2 batch header exactly as it lies on the wire and on disk (big-endian, unaligned).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Debug, Clone, Copy)]
#[repr(C)]
pub struct BatchHeader {
    pub base_offset: I64,
    pub batch_length: I32,
    pub partition_leader_epoch: I32,
    pub magic: i8,
    pub crc: U32,
    pub attributes: I16,
    pub last_offset_delta: I32,
    pub base_timestamp: I64,
    pub max_timestamp: I64,
    pub producer_id: I64,
    pub producer_epoch: I16,
    pub base_sequence: I32,
    pub record_count: I32,
}

const _: () = assert!(std::mem::size_of::<BatchHeader>() == RECORD_BATCH_HEADER_BYTES);

/// Codec of a batch's records (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// `attributes` with its codec bits set to `codec`'s.
pub fn with_compression(attributes: i16, codec: Compression) -> i16 {
    let bits = match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    };
    (attributes & !ATTRIBUTE_COMPRESSION_MASK) | bits
}

/// Meaning of the batch timestamps (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// What the broker needs to know about one validated batch, read from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSummary {
    pub batch_bytes: usize,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub record_count: i32,
    pub compression: Compression,
    pub timestamp_type: TimestampType,
    pub is_transactional: bool,
    pub is_control: bool,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub partition_leader_epoch: i32,
    pub base_offset: i64,
}

/// Why a batch was refused. `error_code` gives the Kafka error the Java broker answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("records field is empty")]
    Empty,
    #[error("batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("batch length {0} is inconsistent with the header or the buffer")]
    InvalidLength(i64),
    #[error("unsupported magic {0}, only v2 record batches are accepted")]
    InvalidMagic(i8),
    #[error("crc mismatch: header says {expected:#010x}, computed {computed:#010x}")]
    CrcMismatch { expected: u32, computed: u32 },
    #[error("unknown compression codec {0}")]
    InvalidCompression(i16),
    #[error("record count {record_count} inconsistent with last offset delta {last_offset_delta}")]
    InvalidCount {
        record_count: i32,
        last_offset_delta: i32,
    },
}

/// Kafka error code CORRUPT_MESSAGE.
pub const ERROR_CORRUPT_MESSAGE: i16 = 2;
/// Kafka error code INVALID_RECORD.
pub const ERROR_INVALID_RECORD: i16 = 87;

impl BatchError {
    /// The Kafka error code the Java broker sends for the same fault in a Produce (v3+).
    pub fn error_code(&self) -> i16 {
        match self {
            BatchError::Empty
            | BatchError::InvalidMagic(_)
            | BatchError::InvalidCount { .. }
            | BatchError::InvalidCompression(_) => ERROR_INVALID_RECORD,
            BatchError::Truncated { .. }
            | BatchError::InvalidLength(_)
            | BatchError::CrcMismatch { .. } => ERROR_CORRUPT_MESSAGE,
        }
    }
}

/// The header of `bytes`, if it holds at least 61 bytes.
pub fn header(bytes: &[u8]) -> Option<&BatchHeader> {
    let prefix = bytes.get(..RECORD_BATCH_HEADER_BYTES)?;
    BatchHeader::ref_from_bytes(prefix).ok()
}

/// The header of `bytes` to patch, if it holds at least 61 bytes. A patch of any field from
/// `attributes` on must be followed by [`update_crc`].
pub fn header_mut(bytes: &mut [u8]) -> Option<&mut BatchHeader> {
    let prefix = bytes.get_mut(..RECORD_BATCH_HEADER_BYTES)?;
    BatchHeader::mut_from_bytes(prefix).ok()
}

/// Recomputes the CRC-32C of a whole batch after its covered bytes changed.
pub fn update_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    header_mut(batch)
        .expect("update_crc on a whole batch")
        .crc
        .set(crc);
}

/// Size of the whole batch that starts at `bytes[0]`, as its length field declares, checked
/// only for being at least a header: the caller compares it with what it holds.
pub fn declared_batch_bytes(bytes: &[u8]) -> Result<usize, BatchError> {
    let Some(length_field) = bytes.get(8..LOG_OVERHEAD_BYTES) else {
        return Err(BatchError::Truncated {
            needed: LOG_OVERHEAD_BYTES,
            available: bytes.len(),
        });
    };
    let batch_length = i32::from_be_bytes(length_field.try_into().expect("4 bytes"));
    let total = i64::from(batch_length) + LOG_OVERHEAD_BYTES as i64;
    if total < RECORD_BATCH_HEADER_BYTES as i64 {
        return Err(BatchError::InvalidLength(i64::from(batch_length)));
    }
    Ok(total as usize)
}

/// The magic byte sits at the same place in every message format, and Kafka refuses an old
/// format (INVALID_RECORD) before it looks at sizes or checksums laid out for v2. Input too
/// short to hold a magic byte passes here and fails the length checks.
fn check_magic(batch: &[u8]) -> Result<(), BatchError> {
    match batch.get(MAGIC_OFFSET) {
        Some(&magic) if magic as i8 != MAGIC_V2 => Err(BatchError::InvalidMagic(magic as i8)),
        _ => Ok(()),
    }
}

/// Validates one whole batch as it may lie in a log: `batch` must be exactly one batch, no more,
/// no less. Its record count may be below `lastOffsetDelta + 1`, down to zero: log compaction
/// removes records from a batch but keeps its offset range (and Kafka's cleaner keeps an empty
/// batch for a producer's last one). A batch from a client must pass [`validate_produced`].
pub fn validate(batch: &[u8]) -> Result<BatchSummary, BatchError> {
    if batch.is_empty() {
        return Err(BatchError::Empty);
    }
    check_magic(batch)?;
    let batch_bytes = declared_batch_bytes(batch)?;
    if batch.len() < RECORD_BATCH_HEADER_BYTES || batch_bytes > batch.len() {
        let needed = batch_bytes.max(RECORD_BATCH_HEADER_BYTES);
        return Err(BatchError::Truncated {
            needed,
            available: batch.len(),
        });
    }
    if batch_bytes != batch.len() {
        return Err(BatchError::InvalidLength(
            batch_bytes as i64 - LOG_OVERHEAD_BYTES as i64,
        ));
    }
    let h = header(batch).expect("length checked above");
    if h.magic != MAGIC_V2 {
        return Err(BatchError::InvalidMagic(h.magic));
    }
    let computed = crc32c::crc32c(&batch[CRC_START..]);
    if computed != h.crc.get() {
        return Err(BatchError::CrcMismatch {
            expected: h.crc.get(),
            computed,
        });
    }
    summarize(h, batch_bytes)
}

fn summarize(h: &BatchHeader, batch_bytes: usize) -> Result<BatchSummary, BatchError> {
    let attributes = h.attributes.get();
    let compression = match attributes & ATTRIBUTE_COMPRESSION_MASK {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        other => return Err(BatchError::InvalidCompression(other)),
    };
    let record_count = h.record_count.get();
    let last_offset_delta = h.last_offset_delta.get();
    // A batch holds at most one record per offset of its range; i64 avoids overflow.
    if record_count < 0
        || last_offset_delta < 0
        || i64::from(record_count) > i64::from(last_offset_delta) + 1
    {
        return Err(BatchError::InvalidCount {
            record_count,
            last_offset_delta,
        });
    }
    let timestamp_type = if attributes & ATTRIBUTE_LOG_APPEND_TIME != 0 {
        TimestampType::LogAppendTime
    } else {
        TimestampType::CreateTime
    };
    Ok(BatchSummary {
        batch_bytes,
        last_offset_delta,
        base_timestamp: h.base_timestamp.get(),
        max_timestamp: h.max_timestamp.get(),
        record_count,
        compression,
        timestamp_type,
        is_transactional: attributes & ATTRIBUTE_TRANSACTIONAL != 0,
        is_control: attributes & ATTRIBUTE_CONTROL != 0,
        producer_id: h.producer_id.get(),
        producer_epoch: h.producer_epoch.get(),
        base_sequence: h.base_sequence.get(),
        partition_leader_epoch: h.partition_leader_epoch.get(),
        base_offset: h.base_offset.get(),
    })
}

/// Validates one batch a client produced. Beyond [`validate`], Kafka's `LogValidator` requires
/// of a client's batch (`AppendOrigin.CLIENT`) at least one record and one record per offset of
/// its range: only the log cleaner makes a batch sparse.
pub fn validate_produced(batch: &[u8]) -> Result<BatchSummary, BatchError> {
    let summary = validate(batch)?;
    if summary.record_count == 0 || summary.record_count != summary.last_offset_delta + 1 {
        return Err(BatchError::InvalidCount {
            record_count: summary.record_count,
            last_offset_delta: summary.last_offset_delta,
        });
    }
    Ok(summary)
}

/// Splits a concatenation of batches into `(start, len)` ranges by their length fields only
/// (validate each range separately). An empty input yields `Err(Empty)`; a trailing partial
/// batch yields one `Err` and ends the iteration.
pub fn batches(records: &[u8]) -> impl Iterator<Item = Result<(usize, usize), BatchError>> + '_ {
    let mut position = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        if records.is_empty() {
            done = true;
            return Some(Err(BatchError::Empty));
        }
        if position == records.len() {
            done = true;
            return None;
        }
        let rest = &records[position..];
        let item = match check_magic(rest).and_then(|()| declared_batch_bytes(rest)) {
            Ok(len) if len <= rest.len() => Ok((position, len)),
            Ok(len) => Err(BatchError::Truncated {
                needed: len,
                available: rest.len(),
            }),
            Err(error) => Err(error),
        };
        match item {
            Ok((_, len)) => position += len,
            Err(_) => done = true,
        }
        Some(item)
    })
}

/// Sets `baseOffset`. The CRC does not cover it, so it stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    let h = header_mut(batch).expect("set_base_offset on a validated batch");
    h.base_offset.set(base_offset);
}

/// Sets `partitionLeaderEpoch`. The CRC does not cover it, so it stays valid.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    let h = header_mut(batch).expect("set_partition_leader_epoch on a validated batch");
    h.partition_leader_epoch.set(epoch);
}

/// Marks the batch LogAppendTime with `max_timestamp = timestamp` and recomputes the CRC, as
/// the Java broker does for topics with `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) {
    let h = header_mut(batch).expect("set_log_append_time on a validated batch");
    let attributes = h.attributes.get() | ATTRIBUTE_LOG_APPEND_TIME;
    h.attributes.set(attributes);
    h.max_timestamp.set(timestamp);
    update_crc(batch);
}

/// One plain record for [`encode_plain_batch`]: CreateTime timestamp, optional key and value.
pub struct PlainRecord {
    pub timestamp: i64,
    pub key: Option<bytes::Bytes>,
    pub value: Option<bytes::Bytes>,
}

/// Encodes `records` as one v2 batch with base offset 0 and no producer id, the way a
/// non-idempotent client sends it. The metadata log, the load generator, tests and benches
/// build their batches here.
pub fn encode_plain_batch(
    records: impl IntoIterator<Item = PlainRecord>,
    compression: kafka_protocol::records::Compression,
) -> anyhow::Result<bytes::BytesMut> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(index, plain)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: kafka_protocol::records::TimestampType::Creation,
            offset: index as i64,
            // The encoder starts a new batch whenever offset - sequence changes; counting up
            // from -1 keeps one batch whose base sequence is -1 (no sequence).
            sequence: index as i32 - 1,
            timestamp: plain.timestamp,
            key: plain.key,
            value: plain.value,
            headers: Default::default(),
        })
        .collect();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    let mut buffer = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buffer, &records, &options)?;
    Ok(buffer)
}

/// Makes `batch` one of producer `producer_id` at `epoch` from sequence `sequence`, with the
/// attribute bits `attributes` added (`ATTRIBUTE_TRANSACTIONAL`, ...), and recomputes the CRC,
/// which covers these fields: the group coordinator's transactional offset commits, and what
/// tests send as idempotent or transactional clients.
pub fn set_producer(
    batch: &mut [u8],
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    attributes: i16,
) {
    let h = header_mut(batch).expect("set_producer on a whole batch");
    h.attributes.set(h.attributes.get() | attributes);
    h.producer_id.set(producer_id);
    h.producer_epoch.set(epoch);
    h.base_sequence.set(sequence);
    update_crc(batch);
}

/// Batches built byte by byte from Kafka's record format (the Java client's `DefaultRecord`
/// and `DefaultRecordBatch`), independent of any encoder, for tests of the record decoder and
/// of the code that reads records.
#[cfg(test)]
pub(crate) mod hand_built {
    use bytes::{BufMut, Bytes, BytesMut};

    use super::{CRC_START, LOG_OVERHEAD_BYTES, MAGIC_V2};
    use crate::limits::RECORD_BATCH_HEADER_BYTES;

    /// A record's fields; `headers` are (key, value) pairs.
    pub struct Record<'a> {
        pub timestamp: i64,
        pub key: Option<&'a [u8]>,
        pub value: Option<&'a [u8]>,
        pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    }

    /// Kafka's zigzag varlong (`ByteUtils.writeVarlong`). For an int32 it writes the same bytes
    /// as `writeVarint`, so it serves the varint fields too.
    pub fn put_varlong(out: &mut BytesMut, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            out.put_u8(zigzag as u8 | 0x80);
            zigzag >>= 7;
        }
        out.put_u8(zigzag as u8);
    }

    fn put_bytes(out: &mut BytesMut, bytes: Option<&[u8]>) {
        match bytes {
            None => put_varlong(out, -1),
            Some(bytes) => {
                put_varlong(out, bytes.len() as i64);
                out.put_slice(bytes);
            }
        }
    }

    /// The fields of one record after its length: attributes (int8), timestampDelta
    /// (varlong), offsetDelta (varint), key and value (varint length, bytes), header count
    /// (varint), each header's key and value (varint length, bytes).
    pub fn fields(record: &Record, base_timestamp: i64, offset_delta: i32) -> BytesMut {
        let mut fields = BytesMut::new();
        fields.put_i8(0);
        put_varlong(&mut fields, record.timestamp.wrapping_sub(base_timestamp));
        put_varlong(&mut fields, i64::from(offset_delta));
        put_bytes(&mut fields, record.key);
        put_bytes(&mut fields, record.value);
        put_varlong(&mut fields, record.headers.len() as i64);
        for (key, value) in record.headers {
            put_bytes(&mut fields, Some(key.as_bytes()));
            put_bytes(&mut fields, *value);
        }
        fields
    }

    /// An uncompressed batch at base offset 0 without a producer id, whose base timestamp is
    /// the first record's (as Kafka's producer stamps it) and whose records are `fields`, each
    /// preceded by its length (varint).
    pub fn batch_of_fields(fields: &[BytesMut], timestamps: &[i64]) -> Bytes {
        let mut body = BytesMut::new();
        for record in fields {
            put_varlong(&mut body, record.len() as i64);
            body.put_slice(record);
        }
        let count = fields.len() as i32;
        let length = RECORD_BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len();
        let mut batch = BytesMut::new();
        batch.put_i64(0); // baseOffset
        batch.put_i32(length as i32); // batchLength
        batch.put_i32(-1); // partitionLeaderEpoch
        batch.put_i8(MAGIC_V2);
        batch.put_u32(0); // crc, set below
        batch.put_i16(0); // attributes: no compression, CreateTime
        batch.put_i32(count - 1); // lastOffsetDelta
        batch.put_i64(timestamps[0]); // baseTimestamp
        batch.put_i64(timestamps.iter().copied().max().unwrap_or(-1)); // maxTimestamp
        batch.put_i64(-1); // producerId
        batch.put_i16(-1); // producerEpoch
        batch.put_i32(-1); // baseSequence
        batch.put_i32(count); // records count
        batch.put_slice(&body);
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        // The CRC field lies just before the bytes it covers.
        batch[CRC_START - 4..CRC_START].copy_from_slice(&crc.to_be_bytes());
        batch.freeze()
    }

    /// The batch of `records` at offsets 0...
    pub fn batch(records: &[Record]) -> Bytes {
        let timestamps: Vec<i64> = records.iter().map(|record| record.timestamp).collect();
        let fields: Vec<BytesMut> = records
            .iter()
            .enumerate()
            .map(|(delta, record)| fields(record, timestamps[0], delta as i32))
            .collect();
        batch_of_fields(&fields, &timestamps)
    }

    /// Two records in one batch whose timestamps, 1234 and 999999999999 ms, lie further apart
    /// than an int32 holds: the second record's timestamp delta needs a 6-byte varlong.
    pub fn wide_timestamps() -> Bytes {
        batch(&[
            Record {
                timestamp: 1234,
                key: None,
                value: Some(b"early"),
                headers: &[],
            },
            Record {
                timestamp: 999_999_999_999,
                key: Some(b"key"),
                value: Some(b"late"),
                headers: &[("header", Some(b"value")), ("empty", None)],
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression as KCompression, Record, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType as KTimestampType,
    };
    use rand::{Rng, SeedableRng};

    fn record(offset: i64, timestamp: i64) -> Record {
        Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 7,
            producer_id: 1234,
            producer_epoch: 3,
            timestamp_type: KTimestampType::Creation,
            offset,
            sequence: 10 + offset as i32,
            timestamp,
            key: Some(Bytes::from(format!("key-{offset}"))),
            value: Some(Bytes::from(vec![b'v'; 100 + offset as usize])),
            headers: Default::default(),
        }
    }

    /// Encodes `count` records at offsets 0.. with kafka-protocol's encoder (an independent
    /// implementation of the format).
    pub(crate) fn encode_batch(count: i64, compression: KCompression) -> BytesMut {
        let records: Vec<Record> = (0..count).map(|i| record(i, 1_000 + i * 10)).collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encode");
        buf
    }

    /// validate() accepts real batches of every codec and reports their header fields.
    #[test]
    fn validate_accepts_encoder_batches_of_every_codec() {
        let codecs = [
            (KCompression::None, Compression::None),
            (KCompression::Gzip, Compression::Gzip),
            (KCompression::Snappy, Compression::Snappy),
            (KCompression::Lz4, Compression::Lz4),
            (KCompression::Zstd, Compression::Zstd),
        ];
        for (codec, expected) in codecs {
            let batch = encode_batch(5, codec);
            let summary = validate(&batch).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(summary.batch_bytes, batch.len());
            assert_eq!(summary.compression, expected);
            assert_eq!(summary.record_count, 5);
            assert_eq!(summary.last_offset_delta, 4);
            assert_eq!(summary.base_offset, 0);
            assert_eq!(summary.base_timestamp, 1_000);
            assert_eq!(summary.max_timestamp, 1_040);
            assert_eq!(summary.producer_id, 1234);
            assert_eq!(summary.producer_epoch, 3);
            assert_eq!(summary.base_sequence, 10);
            assert_eq!(summary.partition_leader_epoch, 7);
            assert_eq!(summary.timestamp_type, TimestampType::CreateTime);
            assert!(!summary.is_transactional && !summary.is_control);
        }
    }

    /// A single flipped bit anywhere the CRC covers is reported as CORRUPT_MESSAGE.
    #[test]
    fn flipped_bit_in_crc_range_is_corrupt() {
        let batch = encode_batch(3, KCompression::None);
        for position in CRC_START..batch.len() {
            let mut copy = batch.clone();
            copy[position] ^= 0x10;
            let error = validate(&copy).expect_err("flipped bit must be caught");
            assert_eq!(
                error.error_code(),
                ERROR_CORRUPT_MESSAGE,
                "at {position}: {error}"
            );
        }
    }

    /// Wrong magic, empty input and count mismatches map to INVALID_RECORD like the Java broker.
    #[test]
    fn invalid_record_cases() {
        assert_eq!(
            validate(&[]).unwrap_err().error_code(),
            ERROR_INVALID_RECORD
        );
        let mut batch = encode_batch(2, KCompression::None);
        batch[16] = 1;
        assert_eq!(validate(&batch).unwrap_err(), BatchError::InvalidMagic(1));
        assert_eq!(
            BatchError::InvalidMagic(1).error_code(),
            ERROR_INVALID_RECORD
        );

        let mut batch = encode_batch(2, KCompression::None);
        header_mut(&mut batch).unwrap().record_count.set(3);
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        header_mut(&mut batch).unwrap().crc.set(crc);
        let error = validate(&batch).unwrap_err();
        assert!(
            matches!(
                error,
                BatchError::InvalidCount {
                    record_count: 3,
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(error.error_code(), ERROR_INVALID_RECORD);
    }

    /// A stored batch may hold fewer records than its offset range (down to none), as log
    /// compaction leaves it; a produced batch must hold one per offset, as Kafka requires.
    #[test]
    fn sparse_batches_are_valid_in_a_log_but_not_from_a_client() {
        for count in [0, 1, 2] {
            let mut batch = encode_batch(3, KCompression::None);
            header_mut(&mut batch).unwrap().record_count.set(count);
            update_crc(&mut batch);
            let summary = validate(&batch).expect("a sparse batch is valid in a log");
            assert_eq!(
                (summary.record_count, summary.last_offset_delta),
                (count, 2)
            );
            let error = validate_produced(&batch).unwrap_err();
            assert!(matches!(error, BatchError::InvalidCount { .. }), "{error}");
            assert_eq!(error.error_code(), ERROR_INVALID_RECORD);
        }
        let batch = encode_batch(3, KCompression::None);
        assert_eq!(validate_produced(&batch), validate(&batch));
    }

    /// Truncated batches and length fields that disagree with the buffer are CORRUPT_MESSAGE.
    #[test]
    fn truncation_and_length_mismatch_are_corrupt() {
        let batch = encode_batch(2, KCompression::None);
        for cut in 1..batch.len() {
            let error = validate(&batch[..cut]).unwrap_err();
            assert_eq!(
                error.error_code(),
                ERROR_CORRUPT_MESSAGE,
                "cut {cut}: {error}"
            );
        }
        let mut longer = batch.to_vec();
        longer.push(0);
        assert!(matches!(
            validate(&longer),
            Err(BatchError::InvalidLength(_))
        ));
    }

    /// batches() splits a concatenation and reports a trailing partial batch as an error.
    #[test]
    fn batches_splits_concatenation() {
        let first = encode_batch(1, KCompression::None);
        let second = encode_batch(4, KCompression::Lz4);
        let mut all = first.to_vec();
        all.extend_from_slice(&second);
        let ranges: Vec<_> = batches(&all).collect::<Result<_, _>>().unwrap();
        assert_eq!(ranges, vec![(0, first.len()), (first.len(), second.len())]);
        for (start, len) in ranges {
            validate(&all[start..start + len]).unwrap();
        }
        all.extend_from_slice(&first[..30]);
        let results: Vec<_> = batches(&all).collect();
        assert_eq!(results.len(), 3);
        assert!(matches!(results[2], Err(BatchError::Truncated { .. })));
        assert_eq!(
            batches(&[]).collect::<Vec<_>>(),
            vec![Err(BatchError::Empty)]
        );
    }

    /// Offset and epoch patches keep the CRC valid; LogAppendTime recomputes it.
    #[test]
    fn mutators_keep_batch_valid() {
        let mut batch = encode_batch(3, KCompression::Gzip);
        set_base_offset(&mut batch, 1 << 40);
        set_partition_leader_epoch(&mut batch, 99);
        set_log_append_time(&mut batch, 5_000_000);
        let summary = validate(&batch).unwrap();
        assert_eq!(summary.base_offset, 1 << 40);
        assert_eq!(summary.partition_leader_epoch, 99);
        assert_eq!(summary.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(summary.max_timestamp, 5_000_000);
        assert_eq!(summary.compression, Compression::Gzip);
    }

    /// Random bytes, random truncations and random corruptions of real batches never panic.
    #[test]
    fn random_input_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let good = encode_batch(4, KCompression::Snappy);
        for _ in 0..20_000 {
            let mut bytes: Vec<u8> = match rng.gen_range(0..3) {
                0 => (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
                1 => good[..rng.gen_range(0..=good.len())].to_vec(),
                _ => good.to_vec(),
            };
            for _ in 0..rng.gen_range(0..4) {
                if !bytes.is_empty() {
                    let at = rng.gen_range(0..bytes.len());
                    bytes[at] = rng.gen();
                }
            }
            let _ = validate(&bytes);
            for (start, len) in batches(&bytes).flatten() {
                let _ = validate(&bytes[start..start + len]);
            }
        }
    }

    /// A record's timestamp delta is a varlong: a batch holding records stamped 1234 and
    /// 999999999999 ms (a delta beyond 32 bits), built from Kafka's format byte by byte,
    /// decodes to exactly those timestamps, offsets, keys, values and headers, with the later
    /// record first too (a negative delta, as a producer writes when clocks step back); and
    /// the plain-batch encoder writes the same bytes the format does.
    #[test]
    fn timestamp_deltas_are_varlongs() {
        use kafka_protocol::records::RecordBatchDecoder;
        let batch = hand_built::wide_timestamps();
        let summary = validate(&batch).expect("a valid batch");
        assert_eq!(summary.max_timestamp, 999_999_999_999);
        let decoded = RecordBatchDecoder::decode(&mut batch.clone()).expect("decode");
        let read: Vec<(i64, i64)> = decoded
            .records
            .iter()
            .map(|record| (record.offset, record.timestamp))
            .collect();
        assert_eq!(read, vec![(0, 1234), (1, 999_999_999_999)]);
        let late = &decoded.records[1];
        assert_eq!(late.key.as_deref(), Some(&b"key"[..]));
        assert_eq!(late.value.as_deref(), Some(&b"late"[..]));
        let headers: Vec<(String, Option<Vec<u8>>)> = late
            .headers
            .iter()
            .map(|(key, value)| (key.to_string(), value.as_ref().map(|v| v.to_vec())))
            .collect();
        let expected = vec![
            ("header".to_string(), Some(b"value".to_vec())),
            ("empty".to_string(), None),
        ];
        assert_eq!(headers, expected);

        let record = |timestamp, value: &'static [u8]| hand_built::Record {
            timestamp,
            key: None,
            value: Some(value),
            headers: &[],
        };
        let backwards = hand_built::batch(&[record(999_999_999_999, b"a"), record(1234, b"b")]);
        let decoded = RecordBatchDecoder::decode(&mut backwards.clone()).expect("decode");
        let times: Vec<i64> = decoded.records.iter().map(|r| r.timestamp).collect();
        assert_eq!(times, vec![999_999_999_999, 1234]);

        let plain = |timestamp, value: &'static [u8]| PlainRecord {
            timestamp,
            key: None,
            value: Some(Bytes::from_static(value)),
        };
        let encoded = encode_plain_batch(
            [plain(1234, b"a"), plain(999_999_999_999, b"b")],
            KCompression::None,
        )
        .expect("the encoder takes timestamps far apart");
        let by_hand = hand_built::batch(&[record(1234, b"a"), record(999_999_999_999, b"b")]);
        assert_eq!(
            &encoded[..],
            &by_hand[..],
            "encoder bytes are Kafka's format"
        );
    }

    /// A varint longer than 5 bytes is refused, as Kafka's `ByteUtils` refuses it, instead of
    /// being read short and leaving its last byte to be read as the next field; so is a record
    /// whose fields do not fill its length (Kafka's "Invalid record size").
    #[test]
    fn overlong_varints_and_record_sizes_are_refused() {
        use bytes::BufMut;
        use kafka_protocol::records::RecordBatchDecoder;
        let decode = |fields: BytesMut| {
            let batch = hand_built::batch_of_fields(&[fields], &[1234]);
            validate(&batch).expect("the header is valid");
            RecordBatchDecoder::decode(&mut batch.clone()).map(|set| set.records.len())
        };
        let mut fields = BytesMut::new();
        fields.put_i8(0); // attributes
        fields.put_u8(0); // timestampDelta 0
        fields.put_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]); // offsetDelta 0 in 6 bytes
        fields.put_slice(&[0x00, 0x00, 0x00]); // empty key, empty value, no headers
        assert!(decode(fields).is_err(), "a 6-byte varint");

        let mut fields = BytesMut::new();
        fields.put_i8(0);
        fields.put_slice(&[0x80; 10]); // timestampDelta continuing past 10 bytes
        fields.put_slice(&[0x00; 5]);
        assert!(decode(fields).is_err(), "an 11-byte varlong");

        let record = hand_built::Record {
            timestamp: 1234,
            key: None,
            value: Some(b"v"),
            headers: &[],
        };
        let exact = hand_built::fields(&record, 1234, 0);
        assert_eq!(decode(exact.clone()).expect("an exact record"), 1);
        let mut longer = exact;
        longer.put_u8(0);
        assert!(decode(longer).is_err(), "a byte beyond the fields");
    }
}
