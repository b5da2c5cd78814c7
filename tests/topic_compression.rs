//! A topic's `compression.type` against the real broker: batches that come in another codec
//! are stored recompressed into the topic's (the records, their offsets and the producer
//! fields unchanged), `producer` stores every batch as sent, and a value Kafka does not know
//! for a topic is refused.

mod common;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, FetchResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];
const INVALID_CONFIG: i16 = 40;

/// The codec bits of each stored batch of partition 0 of `topic`, and every record value.
fn stored(conn: &mut RawConn, topic: &str) -> (Vec<i16>, Vec<Bytes>) {
    let response: FetchResponse = conn.request(&fetch_request(topic, 0, 0, 0, 1, 8 << 20), 12);
    let data = single_partition(&response);
    assert_eq!(data.error_code, 0, "fetch {topic}");
    let mut records = data.records.clone().unwrap_or_default();
    let (batches, _) = parse_batches(&records);
    let codecs = batches.iter().map(BatchInfo::compression).collect();
    let mut values = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut records).expect("stored batches decode") {
        values.extend(set.records.into_iter().filter_map(|record| record.value));
    }
    (codecs, values)
}

/// On a topic with `compression.type` gzip, snappy, lz4, zstd or uncompressed, a batch in
/// each of the five codecs is stored in the topic's, at the offsets it was given, its records
/// as sent; an idempotent producer's batch keeps its producer fields (its retry is answered
/// as a duplicate). On a `producer` topic every batch keeps its own codec. The metric counts
/// the batches recompressed.
#[test]
fn batches_are_stored_in_the_topic_codec() {
    let broker = Broker::start(1, &[]);
    let mut conn = RawConn::connect(broker.port);
    let topics: [(&str, Option<i16>); 6] = [
        ("producer", None),
        ("uncompressed", Some(0)),
        ("gzip", Some(1)),
        ("snappy", Some(2)),
        ("lz4", Some(3)),
        ("zstd", Some(4)),
    ];
    for (codec, stored_as) in topics {
        let topic = format!("stored-{codec}");
        create_topic_with_configs(broker.port, &topic, 1, &[("compression.type", codec)]);
        let mut sent = Vec::new();
        for (index, compression) in CODECS.into_iter().enumerate() {
            let values: Vec<Vec<u8>> = (0..3)
                .map(|i| format!("{codec}-{index}-{i}-").repeat(20).into_bytes())
                .collect();
            let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            let batch = record_batch(&slices, now_ms(), compression);
            assert_eq!(
                produce(&mut conn, &topic, 0, batch),
                (0, 3 * index as i64),
                "{topic}: {compression:?}"
            );
            sent.extend(values.into_iter().map(Bytes::from));
        }
        // An idempotent producer's batch, and its retry.
        let batch = record_batch(&[b"idempotent"], now_ms(), Compression::Gzip);
        let batch = with_producer(&batch, 7, 0, 0, 0);
        assert_eq!(produce(&mut conn, &topic, 0, batch.clone()), (0, 15));
        assert_eq!(
            produce(&mut conn, &topic, 0, batch),
            (0, 15),
            "{topic}: a retry"
        );
        sent.push(Bytes::from_static(b"idempotent"));

        let (codecs, values) = stored(&mut conn, &topic);
        assert_eq!(values, sent, "{topic}: the records as sent");
        let expected: Vec<i16> = match stored_as {
            Some(bits) => vec![bits; 6],
            None => vec![0, 1, 2, 3, 4, 1],
        };
        assert_eq!(codecs, expected, "{topic}: the codecs stored");
    }
    let (status, body) = http_get(broker.admin_port(), "/metrics");
    assert!(status.contains("200"), "{status}");
    let recompressed = |topic: &str| {
        let family = format!("corelog_partition_recompressed_batches_total{{topic=\"{topic}\"");
        sample(&body, &family)
    };
    assert_eq!(recompressed("stored-producer"), Some(0.0));
    // The four batches in another codec, and the idempotent gzip batch twice: a retry is
    // recompressed before it is found a duplicate (as Kafka validates before its producer
    // state check).
    assert_eq!(recompressed("stored-zstd"), Some(6.0));
    assert_eq!(recompressed("stored-gzip"), Some(4.0));
}

/// `compression.type` takes Kafka's topic values only: `none` (a producer's word) and unknown
/// codecs are INVALID_CONFIG.
#[test]
fn unknown_compression_types_are_refused() {
    let broker = Broker::start(1, &[]);
    for value in ["none", "brotli", "ZSTD", ""] {
        let config =
            kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("compression.type"))
                .with_value(Some(StrBytes::from_string(value.to_string())));
        let topic = kafka_protocol::messages::create_topics_request::CreatableTopic::default()
            .with_name(topic_name("refused"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![config]);
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(30_000);
        let response: CreateTopicsResponse = RawConn::connect(broker.port).request(&request, 5);
        assert_eq!(
            response.topics[0].error_code, INVALID_CONFIG,
            "compression.type={value:?}"
        );
    }
}

/// Batches recompressed off the shard keep their place: an idempotent producer's produce
/// requests pipelined on one connection into a zstd topic, every other one sent in zstd
/// (stored as it is) and the rest uncompressed or in gzip (recompressed on the shard's helper
/// thread), are all accepted in the order sent, at consecutive offsets (a batch overtaking
/// another would be OUT_OF_ORDER_SEQUENCE), and read back in that order; and so they are on a
/// partition owned by the other shard than the connection's.
#[test]
fn recompressed_batches_keep_their_order() {
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
    let broker = Broker::start_with(Launch::default(), &[]);
    let topic = "ordered-zstd";
    create_topic_with_configs(broker.port, topic, 2, &[("compression.type", "zstd")]);
    let mut conn = RawConn::connect(broker.port);
    for partition in 0..2 {
        let mut sent = Vec::new();
        let mut correlation_ids = Vec::new();
        let producer_id = 40 + i64::from(partition);
        for index in 0..40 {
            let compression = match index % 4 {
                1 => Compression::None,
                3 => Compression::Gzip,
                _ => Compression::Zstd,
            };
            let values: Vec<Vec<u8>> = (0..3)
                .map(|i| {
                    format!("{partition}-{index}-{i}-")
                        .repeat(2000)
                        .into_bytes()
                })
                .collect();
            let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            let batch = record_batch(&slices, now_ms(), compression);
            let batch = with_producer(&batch, producer_id, 0, 3 * index, 0);
            let request = produce_request(topic, partition, batch, -1);
            correlation_ids.push(conn.send_request(&request, 9).expect("send"));
            sent.extend(values.into_iter().map(Bytes::from));
        }
        for (index, correlation_id) in correlation_ids.into_iter().enumerate() {
            let response = conn
                .recv_response::<ProduceRequest>(correlation_id, 9)
                .expect("a response");
            let response: ProduceResponse = response;
            let answer = &response.responses[0].partition_responses[0];
            assert_eq!(
                (answer.error_code, answer.base_offset),
                (0, 3 * index as i64),
                "partition {partition}, batch {index}"
            );
        }
        let mut values = Vec::new();
        let mut offset = 0;
        while values.len() < sent.len() {
            let request = fetch_request(topic, partition, offset, 0, 1, 8 << 20);
            let response: FetchResponse = conn.request(&request, 12);
            let data = single_partition(&response);
            let mut records = data.records.clone().unwrap_or_default();
            let (batches, _) = parse_batches(&records);
            assert!(batches.iter().all(|batch| batch.compression() == 4));
            for set in RecordBatchDecoder::decode_all(&mut records).expect("decode") {
                for record in set.records.into_iter().filter(|r| r.offset >= offset) {
                    values.extend(record.value);
                }
            }
            offset = batches.last().expect("batches").last_offset() + 1;
        }
        assert_eq!(
            values, sent,
            "partition {partition}: the records in the order sent"
        );
    }
}
