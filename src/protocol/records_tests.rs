//! Tests of `records`: batches built with kafka-protocol's encoder (an independent
//! implementation of the format) and byte by byte (`record_batch::hand_built`), read back with
//! kafka-protocol's decoder.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KCompression, Record, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KTimestampType,
};
use rand::{Rng, SeedableRng};

use super::*;
use crate::protocol::record_batch::{
    hand_built, set_log_append_time, set_producer, update_crc, validate,
};

const CODECS: [KCompression; 5] = [
    KCompression::None,
    KCompression::Gzip,
    KCompression::Snappy,
    KCompression::Lz4,
    KCompression::Zstd,
];

/// Record `offset` of a producer's batch: keyless every fourth, a tombstone every fifth, two
/// headers (one with a null value) every third; timestamps go up and down.
fn record(offset: i64) -> Record {
    let headers = if offset % 3 == 0 {
        vec![
            (
                StrBytes::from_static_str("trace"),
                Some(Bytes::from(format!("t{offset}"))),
            ),
            (StrBytes::from_static_str("none"), None),
        ]
    } else {
        Vec::new()
    };
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 9,
        producer_id: 4321,
        producer_epoch: 5,
        timestamp_type: KTimestampType::Creation,
        offset,
        sequence: 100 + offset as i32,
        timestamp: 50_000 + (offset % 4) * 1_000 - offset,
        key: (offset % 4 != 1).then(|| Bytes::from(format!("key-{}", offset % 3))),
        value: (offset % 5 != 2).then(|| Bytes::from(vec![b'a' + offset as u8; 40])),
        headers: headers.into_iter().collect(),
    }
}

fn encode(records: &[Record], compression: KCompression) -> BytesMut {
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(&mut batch, records, &options).expect("encode");
    batch
}

fn batch_of(count: i64, compression: KCompression) -> BytesMut {
    let records: Vec<Record> = (0..count).map(record).collect();
    encode(&records, compression)
}

fn decode(batch: &[u8]) -> Vec<Record> {
    RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(batch))
        .expect("the decoder reads the batch")
        .records
}

/// parse() gives every record's deltas, key and tombstone flag for every codec, and the
/// records' encoded bytes are the uncompressed records section, in order.
#[test]
fn parse_reads_every_codec() {
    for codec in CODECS {
        let batch = batch_of(12, codec);
        let summary = validate(&batch).unwrap();
        let views = parse(&batch).unwrap_or_else(|error| panic!("{codec:?}: {error}"));
        let expected = decode(&batch);
        assert_eq!(views.len(), expected.len());
        for (view, record) in views.iter().zip(&expected) {
            assert_eq!(view.offset(summary.base_offset), record.offset);
            assert_eq!(view.timestamp(summary.base_timestamp), record.timestamp);
            assert_eq!(view.key, record.key, "{codec:?}");
            assert_eq!(view.value_is_null, record.value.is_none());
        }
        if codec == KCompression::None {
            let encoded: Vec<u8> = views.iter().flat_map(|v| v.encoded.to_vec()).collect();
            assert_eq!(&encoded[..], &batch[RECORD_BATCH_HEADER_BYTES..]);
        }
    }
}

/// keyless_records() names exactly the records with a null key, by index in the batch.
#[test]
fn keyless_records_are_named_by_index() {
    for codec in CODECS {
        let batch = batch_of(12, codec);
        assert_eq!(keyless_records(&batch).unwrap(), vec![1, 5, 9], "{codec:?}");
    }
    let keyed: Vec<Record> = (0..4)
        .map(|offset| Record {
            key: Some(Bytes::from_static(b"k")),
            ..record(offset)
        })
        .collect();
    assert_eq!(
        keyless_records(&encode(&keyed, KCompression::Lz4)).unwrap(),
        Vec::<usize>::new()
    );
}

/// Checks what Kafka's cleaner keeps of a rewritten batch: the header fields but the count,
/// length, CRC and (CreateTime) max timestamp, and the kept records with their original
/// offsets, timestamps, keys, values and headers.
fn assert_rewritten(original: &[u8], rewritten: &[u8], kept: &[usize]) {
    let before = validate(original).unwrap();
    let after = validate(rewritten).expect("a rewritten batch is valid");
    let expected: Vec<Record> = decode(original)
        .into_iter()
        .enumerate()
        .filter(|(index, _)| kept.contains(index))
        .map(|(_, record)| record)
        .collect();
    let records = decode(rewritten);
    assert_eq!(records, expected);
    assert_eq!(after.record_count as usize, kept.len());
    assert_eq!(after.batch_bytes, rewritten.len());
    let unchanged = |s: &BatchSummary| {
        (
            s.base_offset,
            s.last_offset_delta,
            s.base_timestamp,
            s.producer_id,
            s.producer_epoch,
            s.base_sequence,
            s.partition_leader_epoch,
            s.compression,
            s.timestamp_type,
            s.is_transactional,
            s.is_control,
        )
    };
    assert_eq!(unchanged(&after), unchanged(&before));
    let max_timestamp = match before.timestamp_type {
        TimestampType::CreateTime => records.iter().map(|r| r.timestamp).max().unwrap(),
        TimestampType::LogAppendTime => before.max_timestamp,
    };
    assert_eq!(after.max_timestamp, max_timestamp);
}

/// retain() answers All when it keeps every record, None when it keeps none, and otherwise a
/// batch of the kept records, with every codec.
#[test]
fn retain_all_some_none_with_every_codec() {
    for codec in CODECS {
        let batch = batch_of(12, codec);
        assert_eq!(retain(&batch, |_, _| true).unwrap(), Retained::All);
        assert_eq!(retain(&batch, |_, _| false).unwrap(), Retained::None);
        // Keep the last record of each key and every keyless one, as compaction would.
        let views = parse(&batch).unwrap();
        let last_of_key = |index: usize, view: &RecordView| {
            view.key.is_none() || views[index + 1..].iter().all(|later| later.key != view.key)
        };
        let Retained::Some(rewritten) = retain(&batch, last_of_key).unwrap() else {
            panic!("{codec:?}: some records are dropped");
        };
        let kept: Vec<usize> = (0..12).filter(|&i| last_of_key(i, &views[i])).collect();
        assert_eq!(kept, vec![1, 5, 6, 9, 10, 11]);
        assert_eq!(
            validate(&rewritten).unwrap().compression,
            validate(&batch).unwrap().compression
        );
        assert_rewritten(&batch, &rewritten, &kept);
        // A rewritten batch can be rewritten again (the cleaner's next pass).
        let Retained::Some(again) = retain(&rewritten, |index, _| index == 0).unwrap() else {
            panic!("one record is kept");
        };
        assert_rewritten(&batch, &again, &[1]);
    }
}

/// The max timestamp of a CreateTime batch becomes the kept records' largest, even when the
/// batch's largest was dropped; the base timestamp stays, so every timestamp delta holds.
#[test]
fn create_time_max_timestamp_is_recomputed() {
    let batch = batch_of(8, KCompression::None);
    let summary = validate(&batch).unwrap();
    let views = parse(&batch).unwrap();
    let largest = (0..8).max_by_key(|&i| views[i].timestamp_delta).unwrap();
    let Retained::Some(rewritten) = retain(&batch, |index, _| index != largest).unwrap() else {
        panic!("seven records are kept");
    };
    let after = validate(&rewritten).unwrap();
    assert!(after.max_timestamp < summary.max_timestamp);
    assert_eq!(after.base_timestamp, summary.base_timestamp);
    let kept: Vec<usize> = (0..8).filter(|&i| i != largest).collect();
    assert_rewritten(&batch, &rewritten, &kept);
}

/// A transactional batch keeps its transactional bit and producer fields; a LogAppendTime batch
/// keeps its timestamp type and its max timestamp, the append time.
#[test]
fn transactional_and_log_append_time_batches() {
    for codec in [KCompression::None, KCompression::Zstd] {
        let mut batch = batch_of(6, codec);
        set_producer(&mut batch, 4321, 5, 100, ATTRIBUTE_TRANSACTIONAL);
        let Retained::Some(rewritten) = retain(&batch, |index, _| index % 2 == 0).unwrap() else {
            panic!("half the records are kept");
        };
        assert!(validate(&rewritten).unwrap().is_transactional);
        assert_rewritten(&batch, &rewritten, &[0, 2, 4]);

        let mut batch = batch_of(6, codec);
        set_log_append_time(&mut batch, 1_700_000_000_000);
        let Retained::Some(rewritten) = retain(&batch, |index, _| index >= 4).unwrap() else {
            panic!("two records are kept");
        };
        let after = validate(&rewritten).unwrap();
        assert_eq!(after.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(after.max_timestamp, 1_700_000_000_000);
        assert_rewritten(&batch, &rewritten, &[4, 5]);
    }
}

/// A rewritten uncompressed batch holds the kept records' bytes exactly as written in the
/// original, checked against a batch built byte by byte from Kafka's format.
#[test]
fn kept_records_are_copied_byte_for_byte() {
    let headers: &[(&str, Option<&[u8]>)] = &[("h", Some(b"v")), ("n", None)];
    let records = [
        hand_built::Record {
            timestamp: 1_000,
            key: Some(b"a"),
            value: Some(b"1"),
            headers,
        },
        hand_built::Record {
            timestamp: 3_000,
            key: Some(b"b"),
            value: None,
            headers: &[],
        },
        hand_built::Record {
            timestamp: 2_000,
            key: None,
            value: Some(b"3"),
            headers,
        },
    ];
    let batch = hand_built::batch(&records);
    let Retained::Some(rewritten) = retain(&batch, |index, _| index != 1).unwrap() else {
        panic!("two records are kept");
    };
    let mut expected = BytesMut::new();
    for (delta, record) in records.iter().enumerate().filter(|(delta, _)| *delta != 1) {
        let fields = hand_built::fields(record, 1_000, delta as i32);
        hand_built::put_varlong(&mut expected, fields.len() as i64);
        expected.put_slice(&fields);
    }
    assert_eq!(&rewritten[RECORD_BATCH_HEADER_BYTES..], &expected[..]);
    assert_eq!(&rewritten[..8], &batch[..8], "base offset");
    let after = validate(&rewritten).unwrap();
    assert_eq!((after.record_count, after.last_offset_delta), (2, 2));
    assert_eq!((after.base_timestamp, after.max_timestamp), (1_000, 2_000));
    assert_rewritten(&batch, &rewritten, &[0, 2]);
}

/// The empty batch is Kafka's `writeEmptyHeader`: the offset range and producer fields of the
/// original, no records, no compression, both timestamps the original's max timestamp, and the
/// timestamp type, transactional and control bits carried over.
#[test]
fn empty_batch_keeps_offsets_and_producer() {
    let mut batch = batch_of(6, KCompression::Snappy);
    set_producer(&mut batch, 4321, 5, 100, ATTRIBUTE_TRANSACTIONAL);
    set_log_append_time(&mut batch, 1_700_000_000_000);
    let before = validate(&batch).unwrap();
    let empty = empty_batch(&before);
    let after = validate(&empty).expect("the empty batch is valid");
    assert_eq!(empty.len(), RECORD_BATCH_HEADER_BYTES);
    assert_eq!(after.record_count, 0);
    assert_eq!(after.compression, Compression::None);
    assert_eq!(after.base_timestamp, before.max_timestamp);
    assert_eq!(after.max_timestamp, before.max_timestamp);
    let same = |s: &BatchSummary| {
        (
            s.base_offset,
            s.last_offset_delta,
            s.producer_id,
            s.producer_epoch,
            s.base_sequence,
            s.partition_leader_epoch,
            s.timestamp_type,
            s.is_transactional,
            s.is_control,
        )
    };
    assert_eq!(same(&after), same(&before));
    assert!(decode(&empty).is_empty());
    assert_eq!(parse(&empty).unwrap(), Vec::new());

    let control = BatchSummary {
        is_control: true,
        timestamp_type: TimestampType::CreateTime,
        ..before
    };
    let after = validate(&empty_batch(&control)).unwrap();
    assert!(after.is_control && after.is_transactional);
    assert_eq!(after.timestamp_type, TimestampType::CreateTime);
}

/// A batch holding one record of `fields` with a valid header and CRC.
fn one_record(fields: &[u8]) -> Bytes {
    hand_built::batch_of_fields(&[BytesMut::from(fields)], &[1_000])
}

/// Malformed records are errors, not panics: varints cut off or too long, lengths that run
/// past the record, negative lengths, records whose fields do not fill their length.
#[test]
fn malformed_records_are_errors() {
    let good = [0u8, 0, 0, 2, b'k', 2, b'v', 0]; // attributes, ts 0, offset 0, "k", "v", none
    let record_fault = |fields: &[u8]| match parse(&one_record(fields)) {
        Err(RecordsError::Record { index: 0, fault }) => fault,
        other => panic!("{fields:?}: {other:?}"),
    };
    assert_eq!(
        parse(&one_record(&good)).unwrap()[0].key.as_deref(),
        Some(&b"k"[..])
    );
    assert_eq!(record_fault(&good[..5]), RecordFault::Truncated);
    assert_eq!(
        record_fault(&[0, 0x80]),
        RecordFault::Truncated,
        "a varlong cut off"
    );
    let overlong = [0u8, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0, 0, 0];
    assert_eq!(record_fault(&overlong), RecordFault::OverlongVarint);
    let key_beyond = [0u8, 0, 0, 40, b'k', 2, b'v', 0]; // key length 20
    assert_eq!(record_fault(&key_beyond), RecordFault::Truncated);
    let negative_key = [0u8, 0, 0, 3, 2, b'v', 0]; // key length -2
    assert!(matches!(
        record_fault(&negative_key),
        RecordFault::InvalidLength { field: "key", .. }
    ));
    let null_header_key = [0u8, 0, 0, 0, 0, 2, 1, 0];
    assert!(matches!(
        record_fault(&null_header_key),
        RecordFault::InvalidLength {
            field: "header key",
            ..
        }
    ));
    let negative_headers = [0u8, 0, 0, 0, 0, 1];
    assert!(matches!(
        record_fault(&negative_headers),
        RecordFault::InvalidLength {
            field: "header count",
            ..
        }
    ));
    let mut longer = good.to_vec();
    longer.push(7);
    assert_eq!(
        record_fault(&longer),
        RecordFault::SizeMismatch { size: 9, read: 8 }
    );
}

/// A record length that lies, a count beyond the records present (up to i32::MAX, which must
/// not be allocated for), and bytes after the last record are errors.
#[test]
fn lying_lengths_and_counts_are_errors() {
    let good = [0u8, 0, 0, 2, b'k', 2, b'v', 0];
    let mut batch = BytesMut::from(&one_record(&good)[..]);
    batch[RECORD_BATCH_HEADER_BYTES] = 100; // record length 50, beyond the section
    update_crc(&mut batch);
    assert!(matches!(
        parse(&batch),
        Err(RecordsError::Record {
            index: 0,
            fault: RecordFault::Truncated
        })
    ));

    for count in [2, i32::MAX] {
        let mut batch = BytesMut::from(&one_record(&good)[..]);
        let h = record_batch::header_mut(&mut batch).unwrap();
        h.record_count.set(count);
        h.last_offset_delta.set(count - 1);
        update_crc(&mut batch);
        assert!(
            matches!(parse(&batch), Err(RecordsError::Record { index: 1, .. })),
            "count {count}"
        );
        assert!(keyless_records(&batch).is_err());
        assert!(retain(&batch, |_, _| true).is_err());
    }

    let mut batch = BytesMut::from(&one_record(&good)[..]);
    batch.put_u8(0);
    let length = batch.len() - LOG_OVERHEAD_BYTES;
    record_batch::header_mut(&mut batch)
        .unwrap()
        .batch_length
        .set(length as i32);
    update_crc(&mut batch);
    assert_eq!(parse(&batch), Err(RecordsError::TrailingBytes(1)));

    let mut corrupt = batch_of(3, KCompression::Gzip);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    update_crc(&mut corrupt);
    let error = parse(&corrupt).unwrap_err();
    assert!(matches!(error, RecordsError::Decompress(_)), "{error}");
    assert_eq!(error.error_code(), ERROR_CORRUPT_MESSAGE);
    corrupt[last] ^= 0xff;
    let error = parse(&corrupt).unwrap_err();
    assert!(matches!(
        error,
        RecordsError::Batch(BatchError::CrcMismatch { .. })
    ));
}

/// Random corruptions of real batches, with the CRC made right again so that they reach the
/// record reader, never panic; whatever parses, retain rewrites into a batch the decoder reads.
#[test]
fn random_corruption_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7ec0);
    let originals: Vec<BytesMut> = CODECS.iter().map(|&codec| batch_of(6, codec)).collect();
    for round in 0..20_000 {
        let original = &originals[round % originals.len()];
        let mut batch = original.to_vec();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(RECORD_BATCH_HEADER_BYTES - 4..batch.len());
            batch[at] = rng.gen();
        }
        update_crc(&mut batch);
        let _ = keyless_records(&batch);
        if let Ok(Retained::Some(rewritten)) = retain(&batch, |index, _| index % 2 == 1) {
            validate(&rewritten).expect("a rewrite is valid");
            parse(&rewritten).expect("a rewrite parses");
        }
    }
}

/// A filler is a valid empty batch of its range and epoch, with no producer and no
/// timestamp, told apart from a producer's empty batch and from control batches.
#[test]
fn a_filler_covers_its_range_in_its_epoch() {
    let filler = filler(Offset(100), Offset(141), 7);
    let summary = validate(&filler).expect("a filler is a valid batch");
    assert_eq!(
        (
            summary.base_offset,
            summary.last_offset_delta,
            summary.record_count
        ),
        (100, 41, 0)
    );
    assert_eq!(summary.partition_leader_epoch, 7);
    assert_eq!((summary.producer_id, summary.max_timestamp), (-1, -1));
    assert!(parse(&filler).unwrap().is_empty());
    let header = crate::protocol::record_batch::header(&filler).unwrap();
    assert!(is_filler(header));
    let mut emptied = validate(&batch_of(3, KCompression::None)).unwrap();
    emptied.producer_id = 5;
    let producers_empty = empty_batch(&emptied);
    let header = crate::protocol::record_batch::header(&producers_empty).unwrap();
    assert!(!is_filler(header), "a producer's empty batch is its own");
}

/// Recompression keeps every record byte for byte in any codec, the header but for the codec
/// bits, length and CRC; the same codec gives the batch back as it was.
#[test]
fn recompress_moves_records_between_every_pair_of_codecs() {
    let ours = |codec: KCompression| match codec {
        KCompression::None => Compression::None,
        KCompression::Gzip => Compression::Gzip,
        KCompression::Snappy => Compression::Snappy,
        KCompression::Lz4 => Compression::Lz4,
        KCompression::Zstd => Compression::Zstd,
    };
    for from in CODECS {
        let original = batch_of(6, from);
        let before = validate(&original).unwrap();
        for to in CODECS {
            let recompressed = recompress(&original, ours(to)).unwrap();
            let after = validate(&recompressed).expect("a recompressed batch is valid");
            assert_eq!(after.compression, ours(to));
            assert_eq!(
                (
                    after.base_offset,
                    after.last_offset_delta,
                    after.record_count
                ),
                (
                    before.base_offset,
                    before.last_offset_delta,
                    before.record_count
                )
            );
            assert_eq!(parse(&recompressed).unwrap(), parse(&original).unwrap());
            assert_eq!(
                decode(&recompressed),
                decode(&original),
                "{from:?} -> {to:?}"
            );
            if from == to {
                assert_eq!(&recompressed[..], &original[..]);
            }
        }
    }
}
