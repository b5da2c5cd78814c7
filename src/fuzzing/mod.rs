//! Entry points for fuzzing: each takes arbitrary bytes, drives the code the broker runs on
//! hostile input, and asserts what must hold for every input.
//!
//! The cargo-fuzz targets in `tests/fuzz` are one-line calls into these functions, and
//! `tests/fuzz_replay.rs` replays the committed seeds and crash inputs through the same
//! functions on stable Rust, so a crash that was fixed stays fixed without libFuzzer. Nothing
//! in the broker calls this module. Invariants checked for every input: no panic, no
//! allocation far beyond the input (libFuzzer's `-malloc_limit_mb` enforces that part), and
//! the consistency assertions written next to each driver.

mod sasl;
pub mod seeds;
mod segment;

pub use sasl::sasl_exchange;
pub use segment::segment_recovery;

use crate::ids::Offset;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;

use crate::group::state::subscription_topics;
use crate::limits::REQUEST_BYTES_MAX;
use crate::partition::first_record_at_or_after;
use crate::protocol::record_batch::{self, LOG_OVERHEAD_BYTES};
use crate::protocol::{decode_request, request_frame_length, RequestBody, SUPPORTED_APIS};

/// A fuzz target's body: runs one input, panicking on a broken invariant.
pub type Target = fn(&[u8]);

/// The fuzz targets, by the name of their cargo-fuzz binary and seed directory.
pub const TARGETS: [(&str, Target); 5] = [
    ("request_stream", request_stream),
    ("request_body", request_body),
    ("record_batch", record_batch_input),
    ("segment_recovery", segment_recovery),
    ("sasl_exchange", sasl_exchange),
];

/// A byte stream as a client sends it: length-prefixed frames, each framed the way the
/// connection reader frames it (at the default `socket.request.max.bytes`) and decoded the way
/// the dispatcher decodes it. Stops at the first refused length, as the broker closes there.
pub fn request_stream(data: &[u8]) {
    let mut rest = Bytes::copy_from_slice(data);
    while let Some(prefix) = rest.first_chunk::<4>() {
        let Ok(length) = request_frame_length(*prefix, REQUEST_BYTES_MAX) else {
            return;
        };
        assert!(length <= REQUEST_BYTES_MAX);
        if rest.len() < 4 + length {
            return;
        }
        rest.advance(4);
        check_request(rest.split_to(length));
    }
}

/// One request body of a served API and version: `data[0]` picks the API from the version
/// table, `data[1]` the version within its range, and the rest is the body after a well-formed
/// header, so that mutations land in the body decoders rather than in the header.
pub fn request_body(data: &[u8]) {
    let [api_pick, version_pick, body @ ..] = data else {
        return;
    };
    let range = &SUPPORTED_APIS[usize::from(*api_pick) % SUPPORTED_APIS.len()];
    let versions = (range.version_max - range.version_min + 1) as u8;
    let version = range.version_min + i16::from(version_pick % versions);
    check_request(request_frame(range.api_key, version, body));
}

/// A request frame (without its length prefix) with a fixed header and `body`.
pub fn request_frame(api_key: ApiKey, version: i16, body: &[u8]) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(0x0102_0304)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut frame = BytesMut::new();
    header
        .encode(&mut frame, api_key.request_header_version(version))
        .expect("a default header encodes at every header version");
    frame.put_slice(body);
    frame.freeze()
}

/// Decodes one frame as the dispatcher does, then runs the pure work handlers do on the parts
/// of the body that are bytes within bytes (record sets, consumer subscriptions).
fn check_request(frame: Bytes) {
    let fixed: Option<[u8; 8]> = frame.first_chunk::<8>().copied();
    let decoded = decode_request(frame);
    let request = match decoded {
        Ok(request) => request,
        Err(error) => {
            let correlation_id = fixed.map(|f| i32::from_be_bytes([f[4], f[5], f[6], f[7]]));
            if let Some(id) = error.correlation_id() {
                assert_eq!(Some(id), correlation_id, "{error}");
            }
            let _ = error.to_string();
            return;
        }
    };
    let fixed = fixed.expect("a decoded frame holds a fixed header");
    assert_eq!(
        request.api_key as i16,
        i16::from_be_bytes([fixed[0], fixed[1]])
    );
    assert_eq!(request.header.request_api_key, request.api_key as i16);
    assert_eq!(
        request.header.request_api_version,
        i16::from_be_bytes([fixed[2], fixed[3]])
    );
    match request.body {
        RequestBody::Decoded(RequestKind::Produce(produce)) => {
            for topic in &produce.topic_data {
                for partition in &topic.partition_data {
                    if let Some(records) = &partition.records {
                        check_records(records);
                    }
                }
            }
        }
        RequestBody::Decoded(RequestKind::JoinGroup(join)) => {
            for protocol in &join.protocols {
                let _ = subscription_topics(&protocol.metadata);
            }
        }
        _ => {}
    }
}

/// Flag bits of [`record_batch_input`]'s first byte.
pub(crate) const FIX_LENGTH: u8 = 0x01;
pub(crate) const FIX_CRC: u8 = 0x02;
/// Where a v2 batch keeps its CRC-32C, and where the bytes it covers start.
const CRC_FIELD: std::ops::Range<usize> = 17..21;

/// A Produce record set. `data[0]` holds flags: bit 0 rewrites `batchLength` to the input's
/// length and bit 1 recomputes the CRC, so that mutations reach the checks behind them (counts,
/// codecs, the record decoder) instead of all failing the checksum. The rest is the set.
pub fn record_batch_input(data: &[u8]) {
    if let [flags, records @ ..] = data {
        check_records(&Bytes::from(fix_batch(*flags, records)));
    }
}

/// `records` with its length field and CRC rewritten as `flags` ask.
fn fix_batch(flags: u8, records: &[u8]) -> Vec<u8> {
    let mut records = records.to_vec();
    if flags & FIX_LENGTH != 0 && records.len() >= LOG_OVERHEAD_BYTES {
        let length = (records.len() - LOG_OVERHEAD_BYTES) as i32;
        records[8..LOG_OVERHEAD_BYTES].copy_from_slice(&length.to_be_bytes());
    }
    if flags & FIX_CRC != 0 && records.len() >= CRC_FIELD.end {
        let crc = crc32c::crc32c(&records[CRC_FIELD.end..]);
        records[CRC_FIELD].copy_from_slice(&crc.to_be_bytes());
    }
    records
}

/// What the broker does with a Produce record set: split it by length fields, validate each
/// batch, patch the fields it patches on append, and decode (decompressing) the records as
/// ListOffsets by timestamp and log replay do.
fn check_records(records: &Bytes) {
    for span in record_batch::batches(records) {
        let Ok((start, len)) = span else {
            return;
        };
        assert!(start + len <= records.len());
        let batch = records.slice(start..start + len);
        let Ok(summary) = record_batch::validate_produced(&batch) else {
            continue;
        };
        assert_eq!(summary.batch_bytes, batch.len());
        assert_eq!(summary.record_count, summary.last_offset_delta + 1);
        let mut patched = BytesMut::from(&batch[..]);
        record_batch::set_base_offset(&mut patched, 1 << 40);
        record_batch::set_partition_leader_epoch(&mut patched, 7);
        record_batch::set_log_append_time(&mut patched, 1_700_000_000_000);
        let again = record_batch::validate(&patched).expect("patching keeps a batch valid");
        assert_eq!(again.base_offset, 1 << 40);
        assert_eq!(again.record_count, summary.record_count);
        let _ = first_record_at_or_after(batch.clone(), i64::MIN, Offset(i64::MIN));
        let _ = RecordBatchDecoder::decode(&mut batch.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record_batch::{encode_plain_batch, PlainRecord};
    use kafka_protocol::records::Compression;

    fn from_hex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap())
            .collect()
    }

    fn decode_error(batch: &[u8]) -> String {
        match RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(batch)) {
            Ok(set) => panic!("decoded {} records", set.records.len()),
            Err(error) => format!("{error:#}"),
        }
    }

    /// Fuzz find (record_batch, oom): a snappy batch whose raw-snappy header claims ~800 MB
    /// made the record decoder (ListOffsets by timestamp) allocate that much before
    /// decompressing; it is now refused by its claim. (The find had 16 more bytes before the
    /// claim, which the crate skipped while it took the first 16 bytes of a raw snappy batch
    /// for a missing xerial header; see vendor/kafka-protocol/CORELOG_PATCH.md.)
    #[test]
    fn snappy_batch_claiming_gigabytes_is_refused() {
        let input = "ffffff69000102000000000000baffffff02e6f5ace2003200000004000068008b01e500cf00\
            018bcfe56804fffffffffffffffffffffff7ffff00000005baffffff02e6f5b4ff";
        let input = from_hex(input);
        let batch = fix_batch(input[0], &input[1..]);
        record_batch::validate(&batch).expect("the batch passes produce validation");
        let error = decode_error(&batch);
        assert!(error.contains("snappy batch claims"), "{error}");
        assert!(first_record_at_or_after(Bytes::from(batch), 0, Offset::ZERO).is_none());
        record_batch_input(&input);
    }

    /// A valid gzip batch that inflates past the decompression bound is refused instead of
    /// being inflated whole (a ~70 KB batch would otherwise cost 65 MB per decode).
    #[test]
    fn gzip_bomb_is_refused() {
        let value = Bytes::from(vec![0u8; 65 * 1024 * 1024]);
        let record = PlainRecord {
            timestamp: 1,
            key: None,
            value: Some(value),
        };
        let batch = encode_plain_batch([record], Compression::Gzip).unwrap();
        assert!(batch.len() < 1024 * 1024, "{} bytes", batch.len());
        record_batch::validate(&batch).expect("a valid producer batch");
        let error = decode_error(&batch);
        assert!(error.contains("decompresses to more than"), "{error}");
    }

    /// Fuzz find (record_batch, crash): a record whose timestamp delta added to a batch base
    /// timestamp near i64::MAX overflowed in the record decoder (a panic wherever overflow
    /// checks are on); the sum now wraps, as in Kafka's Java decoder.
    #[test]
    fn record_timestamp_overflow_wraps() {
        let input = from_hex(
            "ffffff690000000000000000ffbaffff0002c6f5ace20300000000047fffffffffffffffffff\
            118b24e56804ffffff7fffffffffffffffffffff000000054c04226940000000310034000100\
            004d000000ff2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a\
            2a2a2a2a2afffffffffffffffffffffffbffffffffffffffffffffffffffffffffffffffffff\
            00000a000000fff2ffffffffff6900ffffffffff00ff000016",
        );
        let batch = fix_batch(input[0], &input[1..]);
        record_batch::validate(&batch).expect("the batch passes produce validation");
        // Without the fix this panics where overflow checks are on (debug builds, fuzzing);
        // a release build wraps either way.
        let _ = RecordBatchDecoder::decode(&mut Bytes::from(batch));
        record_batch_input(&input);
    }
}
