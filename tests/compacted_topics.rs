//! Produce to compacted topics against the real broker: a record without a key is refused
//! (KIP-467), as Kafka's `LogValidator` refuses it, and nothing of the refused batch is written.

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{FetchResponse, ProduceResponse};
use kafka_protocol::records::{Compression, RecordBatchDecoder};

const FETCH_VERSION: i16 = 12;
const INVALID_RECORD: i16 = 87;

/// Produces `records` to partition 0 of `topic` with acks=all at Produce `version`.
fn produce_at(
    conn: &mut RawConn,
    topic: &str,
    records: Bytes,
    version: i16,
) -> PartitionProduceResponse {
    let response: ProduceResponse = conn.request(&produce_request(topic, 0, records, -1), version);
    response.responses[0].partition_responses[0].clone()
}

/// The high watermark of partition 0 of `topic` and the keys of every record it holds.
fn keys_and_high_watermark(conn: &mut RawConn, topic: &str) -> (Vec<Option<Bytes>>, i64) {
    let response: FetchResponse =
        conn.request(&fetch_request(topic, 0, 0, 0, 1, 1 << 20), FETCH_VERSION);
    let data = single_partition(&response);
    assert_eq!(data.error_code, 0, "fetch {topic}");
    let mut records = data.records.clone().unwrap_or_default();
    let mut keys = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut records).expect("stored batches decode") {
        keys.extend(set.records.into_iter().map(|record| record.key));
    }
    (keys, data.high_watermark)
}

/// A mixed batch: keyed records around keyless ones at indices 1 and 3.
fn mixed_batch(compression: Compression) -> Bytes {
    let records: [(Option<&[u8]>, &[u8]); 5] = [
        (Some(b"a"), b"1"),
        (None, b"2"),
        (Some(b"b"), b"3"),
        (None, b"4"),
        (Some(b"c"), b"5"),
    ];
    keyed_record_batch(&records, now_ms(), compression)
}

/// On a topic with cleanup.policy=compact, a batch whose records all have keys is accepted; a
/// batch with keyless records among keyed ones (uncompressed or compressed) is INVALID_RECORD,
/// naming each keyless record by its index in the batch from Produce v8 with Kafka's messages,
/// and none of its records becomes readable: the next batch lands where the refused one would
/// have.
#[test]
fn compacted_topic_refuses_records_without_a_key() {
    let broker = Broker::start(1, &[]);
    create_topic_with_configs(broker.port, "table", 1, &[("cleanup.policy", "compact")]);
    let mut conn = RawConn::connect(broker.port);
    let keyed: [(Option<&[u8]>, &[u8]); 2] = [(Some(b"x"), b"1"), (Some(b"y"), b"2")];
    let accepted = produce_at(
        &mut conn,
        "table",
        keyed_record_batch(&keyed, now_ms(), Compression::Lz4),
        9,
    );
    assert_eq!((accepted.error_code, accepted.base_offset), (0, 0));
    assert!(accepted.record_errors.is_empty());

    let per_record = "Compacted topic cannot accept message without key in topic partition table-0";
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let refused = produce_at(&mut conn, "table", mixed_batch(compression), 9);
        assert_eq!(refused.error_code, INVALID_RECORD, "{compression:?}");
        assert_eq!(refused.base_offset, -1);
        let errors: Vec<(i32, Option<String>)> = refused
            .record_errors
            .iter()
            .map(|e| {
                (
                    e.batch_index,
                    e.batch_index_error_message.as_ref().map(|m| m.to_string()),
                )
            })
            .collect();
        let expected = vec![
            (1, Some(per_record.to_string())),
            (3, Some(per_record.to_string())),
        ];
        assert_eq!(errors, expected, "{compression:?}");
        let message = format!(
            "One or more records have been rejected due to 2 record errors in total, and only \
             showing the first three errors at most: [RecordError(batchIndex=1, \
             message='{per_record}'), RecordError(batchIndex=3, message='{per_record}')]"
        );
        assert_eq!(refused.error_message.as_deref(), Some(message.as_str()));
    }
    // Before v8 the response has no record errors: the code alone says it.
    let refused = produce_at(&mut conn, "table", mixed_batch(Compression::Snappy), 7);
    assert_eq!(refused.error_code, INVALID_RECORD);
    assert!(refused.record_errors.is_empty());

    let (keys, high_watermark) = keys_and_high_watermark(&mut conn, "table");
    assert_eq!(
        high_watermark, 2,
        "nothing of the refused batches was written"
    );
    let expected: Vec<Option<Bytes>> = vec![
        Some(Bytes::from_static(b"x")),
        Some(Bytes::from_static(b"y")),
    ];
    assert_eq!(keys, expected);
    let next = produce_at(
        &mut conn,
        "table",
        keyed_record_batch(&keyed, now_ms(), Compression::None),
        9,
    );
    assert_eq!((next.error_code, next.base_offset), (0, 2));
}

/// "compact,delete" compacts too, so it refuses a keyless record; "delete" takes it.
#[test]
fn only_policies_with_compact_refuse_keyless_records() {
    let broker = Broker::start(1, &[]);
    create_topic_with_configs(
        broker.port,
        "both",
        1,
        &[("cleanup.policy", "delete,compact")],
    );
    create_topic_with_configs(broker.port, "plain", 1, &[("cleanup.policy", "delete")]);
    let mut conn = RawConn::connect(broker.port);
    let keyless: [(Option<&[u8]>, &[u8]); 1] = [(None, b"v")];
    let batch = keyed_record_batch(&keyless, now_ms(), Compression::None);
    let refused = produce_at(&mut conn, "both", batch.clone(), 9);
    assert_eq!(refused.error_code, INVALID_RECORD);
    assert_eq!(refused.record_errors.len(), 1);
    assert_eq!(refused.record_errors[0].batch_index, 0);
    let accepted = produce_at(&mut conn, "plain", batch, 9);
    assert_eq!((accepted.error_code, accepted.base_offset), (0, 0));
}
